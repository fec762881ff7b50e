"""Hostile and careless inputs, second round (issue 21): each gets one line naming the file and the fix,
or is handled, never a traceback, a hang or a silently wrong result; outputs are written whole or not
at all. In-process except one command line run (stdout that cannot encode a file name)."""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from vitjax import errors, main, modes, report
from vitjax.api import Classifier, load_pretrained
from vitjax.checkpoints.hf_export import write_folder
from vitjax.data import splits
from vitjax.models.vit import ViTSpec
from vitjax.train import setup
from vitjax.train.checkpointing import Checkpointer
from vitjax.train.early_stopping import EarlyStopping
from vitjax.train.writer import MetricWriter

SPEC = ViTSpec(image_size=16, patch_size=4, hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A from-scratch 10-way classifier saved in Hugging Face format."""
    path = tmp_path_factory.mktemp("model") / "best"
    return Classifier.from_scratch(SPEC, {i: f"c{i}" for i in range(10)}).save_pretrained(str(path))


def test_metrics_log_with_lines_vitjax_did_not_write_resumes(tmp_path):
    """A non-UTF-8 byte, a JSON list and a null step in metrics.jsonl: resume keeps them as they are
    (with a warning), drops the records after the resumed step and a last line cut by a kill."""
    path = tmp_path / "metrics.jsonl"
    record = lambda step: json.dumps({"step": step, "split": "train", "loss": 1.0}).encode() + b"\n"  # noqa: E731
    foreign = [b"\xff\xfe broken\n", b"[1, 2]\n", b'{"step": null}\n']
    path.write_bytes(record(1) + foreign[0] + record(2) + foreign[1] + foreign[2] + record(9) + b'{"step": 1')
    writer = MetricWriter(str(tmp_path), enabled=True, start_step=5, tensorboard=False)
    writer.write(6, {"loss": 0.5}, "train")
    writer.close()
    lines = path.read_bytes().splitlines(keepends=True)
    assert lines[:5] == [record(1), foreign[0], record(2), foreign[1], foreign[2]]
    assert [json.loads(line)["step"] for line in lines[5:]] == [6]


def test_npz_files_vitjax_cannot_use_are_one_line(tmp_path):
    """Object arrays (never unpickled), a file that is no zip (numpy's message would suggest
    allow_pickle), a single .npy, a missing tensor, a tensor of the wrong rank."""
    cases = {
        "objects": {"embedding/kernel": np.array([{"a": 1}], dtype=object)},
        "missing": {"embedding/kernel": np.zeros((4, 4, 3, 8), np.float32)},
        "ndim": {"embedding/kernel": np.zeros((4, 3, 8), np.float32)},
    }
    for name, arrays in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
    (tmp_path / "notzip.npz").write_bytes(b"not a zip archive " * 10)
    np.save(tmp_path / "single.npy", np.zeros(3))
    os.rename(tmp_path / "single.npy", tmp_path / "single.npz")
    expected = {"objects": r"is not a \.npz archive of numeric arrays \(vitjax never loads object arrays",
                "notzip": r"is not a \.npz archive", "single": r"is not a \.npz archive",
                "missing": r"tensor 'Transformer/posembed_input/pos_embedding' is missing",
                "ndim": r"tensor 'embedding/kernel' has shape \(4, 3, 8\), where vitjax reads a 4-d tensor"}
    for name, message in expected.items():
        with pytest.raises(errors.UserError, match=message) as raised:
            load_pretrained(tmp_path / f"{name}.npz")
        assert str(tmp_path / f"{name}.npz") in str(raised.value)
        assert "pickle=" not in str(raised.value) and "trust" not in str(raised.value)


def test_checkpoint_configs_that_do_not_fit_their_weights(model_dir, tmp_path):
    """id2label with keys that are no class indices; an id2label of 200,000 names on a 10-way head
    (it used to predict LABEL_0.. silently); a timm config.json over Hugging Face weights."""
    config = json.loads(open(os.path.join(model_dir, "config.json")).read())

    def with_config(name, **changes):
        folder = tmp_path / name
        folder.mkdir()
        for file in os.listdir(model_dir):
            os.symlink(os.path.join(model_dir, file), folder / file)
        (folder / "config.json").unlink()
        (folder / "config.json").write_text(json.dumps({**config, **changes}))
        return folder

    bad_keys = with_config("keys", id2label={"a": "x"})
    with pytest.raises(errors.UserError, match=r"keys/config\.json: id2label must map the class indices 0\.\.N-1"):
        load_pretrained(bad_keys)
    too_many = with_config("many", id2label={str(i): f"name{i}" for i in range(200_000)})
    with pytest.raises(errors.UserError, match=r"many: its config\.json names 200000 classes but the classifier "
                                               r"head in .*model\.safetensors has 10 outputs"):
        load_pretrained(too_many)
    assert load_pretrained(too_many, num_labels=10).id2label[0] == "LABEL_0"  # asked for by count: fine
    timm_config = with_config("timm", architecture="vit_tiny_patch16_224", model_args={"num_heads": 2})
    with pytest.raises(errors.UserError, match=r"timm/config\.json describes a timm model, but its weights have no "
                                               r"'patch_embed\.proj\.weight'.*different models"):
        load_pretrained(timm_config)


def test_a_data_split_file_of_another_shape_is_named(tmp_path):
    (tmp_path / splits.SPLIT_FILE).write_text('{"train": {}}')
    with pytest.raises(errors.UserError, match=r"data_split\.json is not a data split vitjax wrote.*train the run "
                                               r"again to rewrite it"):
        setup.recorded_dataset(str(tmp_path))


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_file_and_leaves_no_part_of_it(tmp_path, monkeypatch):
    """The final export's outputs (plots, reports, the model folder) on a full disk: one line naming
    the file and what to do; no empty or cut-off file is left behind."""
    from matplotlib.figure import Figure

    real_savefig = Figure.savefig

    def savefig_then_full(fig, path, **kwargs):  # a file begun, then the disk fills up
        with open(path, "wb") as f:
            f.write(b"\x89PNG")
        _disk_full()

    monkeypatch.setattr(Figure, "savefig", savefig_then_full)
    target = tmp_path / "test" / "confusion_matrix.png"
    target.parent.mkdir()
    with pytest.raises(errors.UserError, match=rf"could not write {target} \(No space left on device\); free "
                                               r"disk space .* and run the same command again"):
        report.plot_confusion_matrix(np.eye(2), ["a", "b"], target)
    assert os.listdir(target.parent) == []
    monkeypatch.setattr(Figure, "savefig", real_savefig)
    report.plot_confusion_matrix(np.eye(2), ["a", "b"], target)
    assert os.listdir(target.parent) == ["confusion_matrix.png"]

    monkeypatch.setattr("vitjax.checkpoints.hf_export.save_file", _disk_full)
    with pytest.raises(errors.UserError, match=rf"could not write {tmp_path / 'best'} \(No space left"):
        write_folder(tmp_path / "best", {}, {})
    assert sorted(os.listdir(tmp_path)) == ["test"]

    with pytest.raises(errors.UserError, match=r"^OSError: \[Errno 28\] No space left on device; free disk "
                                               r"space and run the same command again$"):
        modes._user_errors(_disk_full)()  # any other write of a mode


def test_messages_that_used_to_mislead(tmp_path, caplog):
    """The model card of a from-scratch model; early stopping on a tie; orbax's warning on a save
    between evaluations (an interruption); --help opens with what vitjax is."""
    card = report.write_model_card(tmp_path, {"base_checkpoint": None, "metrics": {}}).read_text()
    assert "Trained from scratch with vitjax" in card and "Fine-tuned" not in card
    assert "Fine-tuned with vitjax" in report.write_model_card(
        tmp_path, {"base_checkpoint": "google/vit-base-patch16-224", "metrics": {}}).read_text()

    stopper = EarlyStopping(mode="max", patience=2)
    assert [stopper.update(v) for v in (0.5, 0.5, 0.5)] == [False, False, True]
    assert stopper.why("accuracy").startswith("accuracy has not beaten its best, 0.5, by more than 0 in 2 "
                                              "evaluations (a tie is no improvement")

    ckpt = Checkpointer(str(tmp_path / "checkpoints"), metric="accuracy", mode="max")
    with caplog.at_level(logging.WARNING):
        ckpt.save(1, {"w": np.zeros(2, np.float32)}, {}, {})  # no metrics: as the SIGTERM save
        ckpt.close()
    assert "tracked_metric" not in caplog.text and ckpt.latest_step() == 1

    assert main.__doc__.startswith("vitjax: fine-tune Vision Transformers")


def test_export_of_a_workdir_without_checkpoints_is_one_line(tmp_path):
    """No orbax thread traceback at exit after "holds no checkpoint", and nothing created."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "data_split.json").write_text(json.dumps({"source": "demo:digits", "class_names": ["a", "b"],
                                                     "splits": {}}))
    code = ("import sys; sys.path.insert(0, 'tests'); from train_helpers import tiny_config; "
            "from vitjax import modes; "
            f"modes.export(tiny_config('demo:digits'), {str(run)!r}, None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert "holds no checkpoint; train first" in out.stderr
    assert "cannot schedule new futures" not in out.stderr and not (run / "checkpoints").exists(), out.stderr


def test_predict_reads_what_it_can_and_never_blocks(model_dir, tmp_path):
    """A FIFO named *.png in a folder and one given by name (either used to block forever), a path that
    does not exist (used to abort the whole run) and a file name that is not UTF-8, printed to a strict
    UTF-8 stdout: every readable image is predicted, the others get an error record."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(photos / "good.png")
    os.mkfifo(photos / "pipe.png")
    Image.new("RGB", (20, 20), (10, 10, 200)).save(os.fsencode(photos) + b"/caf\xe9.png")
    fifo, missing = str(tmp_path / "named_pipe.png"), str(tmp_path / "no_such.png")
    os.mkfifo(fifo)

    def hung(*_):
        raise TimeoutError("predict blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        records = modes.predict(None, None, model_dir, [str(photos), fifo, missing], 1, str(tmp_path / "out"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    errors_by_file = {os.path.basename(r["file"]): r.get("error") for r in records}
    assert sorted(errors_by_file) == sorted(["caf\udce9.png", "good.png", "named_pipe.png", "no_such.png"])
    assert errors_by_file["good.png"] is None and errors_by_file["caf\udce9.png"] is None
    assert errors_by_file["named_pipe.png"] == f"{fifo}: not a regular file"
    assert errors_by_file["no_such.png"] == f"{missing}: no such file"

    cli = subprocess.run([sys.executable, "-m", "vitjax.main", "--mode", "predict", "--model", model_dir,
                          "--inputs", f"{photos},{missing}", "--output", str(tmp_path / "cli")],
                         capture_output=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu",
                              "PYTHONIOENCODING": "utf-8:strict"})
    err = cli.stderr.decode()
    assert cli.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("vitjax: 1 of 3 input(s) could not be read")
    assert b"caf\\udce9.png" in cli.stdout and b"no_such.png" in cli.stdout
