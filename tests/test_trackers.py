"""Experiment trackers against the real thing, nothing leaving the machine: a local MLflow tracking
store (SQLite) with its model registry, and Weights & Biases in offline mode (its run file read
back with wandb's own protobuf records). TensorBoard stays the default."""
import glob
import importlib.util
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from hf_oracle import pixels
from doc_blocks import set_flag, vitjax_args
from train_helpers import colour_folder, tiny_config
from vitjax import config as config_lib
from vitjax.api import load_pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--config.model.spec.image_size=16", "--config.model.spec.hidden_size=32", "--config.model.spec.num_layers=2",
         "--config.model.spec.num_heads=2", "--config.model.spec.mlp_dim=64", "--config.train.epochs=2",
         "--config.train.batch_size=16", "--config.optim.warmup=0", "--config.train.eval_every=1 epochs",
         "--config.train.progress=False", "--config.compilation_cache="]
AVAILABLE = [name for name in ("mlflow", "wandb") if importlib.util.find_spec(name)]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A tiny run reporting to every installed tracker, then the same command again (it resumes the
    finished run: the tracker runs must be continued, not duplicated)."""
    if not AVAILABLE:
        pytest.skip("neither mlflow nor wandb is installed (pip install 'vitjax[mlflow,wandb]')")
    root = tmp_path_factory.mktemp("trackers")
    data = colour_folder(str(root / "data"), per_class=8)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb_dir"),
           "WANDB_SILENT": "true"}
    # The docs' command (docs/lora-sweeps-trackers.md), on a tiny ViT and a generated folder; run from the tmp folder, where
    # MLflow's default artifact root (./mlruns) lands.
    args = vitjax_args("docs/lora-sweeps-trackers.md", "python -m vitjax.main --config configs/digits.py")
    for flag, value in (("--config", os.path.join(REPO, "configs", "digits.py")), ("--workdir", str(root / "run")),
                        ("--config.train.report_to", f"tensorboard,{','.join(AVAILABLE)}"),
                        ("--config.trackers.mlflow_tracking_uri", f"sqlite:///{root}/mlflow.db"),
                        ("--config.trackers.registered_model", "colours")):
        args = set_flag(args, flag, value)
    cmd = [sys.executable, "-m", "vitjax.main", *args, f"--config.data.source=folder:{data}", *SMALL]
    for _ in range(2):
        out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in open(root / "run" / "metrics.jsonl")]
    return root, json.load(open(root / "run" / "results.json")), records


def test_mlflow_holds_metrics_params_artifacts_and_the_registered_model(tracked, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    root, results, records = tracked
    uri = f"sqlite:///{root}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow's default would be ./mlflow.db here
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("vitjax")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the second command continued it
    run = runs[0]
    assert run.data.params["optim.lr"] == "0.002" and run.data.params["train.epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "validation/accuracy")
    expected = [(r["step"], r["accuracy"]) for r in records if r["split"] == "validation"]
    assert sorted({(m.step, m.value) for m in history}) == expected
    assert run.data.metrics["best/test/accuracy"] == pytest.approx(results["metrics"]["test"]["accuracy"])
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"learning_curves.png", "results.json", "config.json", "validation", "test", "best"} <= listed
    version = client.get_model_version("colours", "1")
    assert version.run_id == run.info.run_id
    downloaded = mlflow.artifacts.download_artifacts("models:/colours/1", dst_path=str(root / "registered"),
                                                     tracking_uri=uri)
    x = pixels(2, 16, 16)
    np.testing.assert_allclose(load_pretrained(downloaded).logits(x),
                               load_pretrained(root / "run" / "best").logits(x), rtol=1e-6, atol=1e-6)


def _wandb_records(path):
    """The protobuf records of an offline run file (W&B's leveldb-style log: 32 KiB blocks of
    chunks, each `crc32 | length | type` then data; types 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, out, parts = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length, kind) == (0, 0):
            pos += left
            continue
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            out.append(record)
            parts = b""
    return out


def test_wandb_offline_run_holds_metrics_config_and_artifacts(tracked):
    pytest.importorskip("wandb")
    root, results, records = tracked
    run_id = json.loads((root / "run" / "trackers.json").read_text())["wandb"]
    files = sorted(glob.glob(str(root / "wandb_dir" / "wandb" / f"offline-run-*-{run_id}" / f"run-{run_id}.wandb")))
    assert len(files) == 2  # the second command continued the same run id
    logged, config, summary, artifacts = {}, {}, {}, {}
    for record in _wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
            if "validation/accuracy" in items:
                logged[items["_step"]] = items["validation/accuracy"]
        elif kind == "run":  # the resolved config comes with the run record
            config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "summary":
            summary.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in record.summary.update})
        elif kind == "artifact":
            artifacts[record.artifact.type] = {c.path for c in record.artifact.manifest.contents}
    assert sorted(logged.items()) == [(r["step"], r["accuracy"]) for r in records if r["split"] == "validation"]
    assert config["optim"]["lr"] == 0.002, sorted(config)
    assert summary["best/test/accuracy"] == pytest.approx(results["metrics"]["test"]["accuracy"])
    assert {"model.safetensors", "config.json"} <= artifacts["model"]
    assert {"learning_curves.png", "results.json", "validation/report.json"} <= artifacts["evaluation"]


def test_tensorboard_is_the_default_and_can_be_left_out(tmp_path):
    assert config_lib.base_config().train.report_to == "tensorboard"
    config = tiny_config("demo:digits")
    config.train.report_to = "tensorboard,comet"
    with pytest.raises(ValueError, match=r"'comet' is not a tracker; use any of tensorboard, mlflow, wandb"):
        config_lib.validate(config)
