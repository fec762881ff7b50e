"""The plugin example of docs/tasks.md, `examples/regression_task.py` with `examples/regression_config.py`, run
as a user runs it: `python -m vitjax.main` with the plugin named by file path and two data worker
processes, from a local tiny backbone-only checkpoint (standing in for the hub id), then evaluated and
used to predict."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from doc_blocks import set_flag, vitjax_args
from hf_oracle import TINY, make

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def brightness_folder(root: str, count: int = 64, size: int = 32, seed: int = 0) -> str:
    """`root/*.png`: noisy grey images; `root/targets.csv`: image,target = the mean brightness."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    rows = []
    for i in range(count):
        level = rng.uniform(20, 235)
        image = np.clip(rng.normal(level, 10, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, f"{i:03d}.png"))
        rows.append({"image": f"{i:03d}.png", "target": f"{image.mean():.3f}"})
    with open(os.path.join(root, "targets.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "target"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def cli(mode: str, workdir, data, checkpoint, *extra):
    args = vitjax_args("docs/tasks.md", "python -m vitjax.main --config examples/regression_config.py")
    args = set_flag(set_flag(args, "--workdir", str(workdir)), "--config.data.source", f"folder:{data}")
    return subprocess.run(
        [sys.executable, "-m", "vitjax.main", "--mode", mode, *args, "--config.data.workers=2",
         f"--config.model.checkpoint={checkpoint}", "--config.model.dtype=float32",
         "--config.train.batch_size=8", "--config.train.epochs=3", "--config.optim.lr=1e-3",
         "--config.train.progress=False", "--config.compilation_cache=", *extra],
        capture_output=True, text=True, timeout=900, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("regression")
    data = brightness_folder(str(root / "data"))
    checkpoint = root / "vit"  # backbone only: the task has no classes and a head of its own
    make("ViTModel", "ViTConfig", **TINY, image_size=32, intermediate_size=64).save_pretrained(checkpoint)
    out = cli("train", root / "run", data, checkpoint)
    assert out.returncode == 0, out.stderr[-4000:]
    return root, data, checkpoint, out


def test_the_regression_example_trains_with_data_workers(trained):
    root, _, _, out = trained
    with open(root / "run" / "results.json") as f:
        results = json.load(f)
    assert results["class_names"] == [] and np.isfinite(results["metrics"]["test"]["mae"])
    assert os.path.isfile(root / "run" / "test" / "report.json")
    assert os.path.isdir(root / "run" / "best_vitjax")
    assert "newly initialized by the task's head" in out.stderr and "head/regressor/kernel" in out.stderr


def test_the_regression_example_evaluates(trained):
    root, data, checkpoint, _ = trained
    out = cli("evaluate", root / "run", data, checkpoint, "--split=test")
    assert out.returncode == 0, out.stderr[-4000:]
    with open(root / "run" / "eval_test" / "report.json") as f:
        assert np.isfinite(json.load(f)["metrics"]["mae"])


def test_the_regression_example_predicts(trained, tmp_path):
    """The documented predict command: only the workdir (its saved config names the plugin file)."""
    root, data, _, _ = trained
    out = subprocess.run(
        [sys.executable, "-m", "vitjax.main", "--mode", "predict", "--workdir", str(root / "run"),
         "--inputs", data, "--output", str(tmp_path / "predictions")],
        capture_output=True, text=True, timeout=900, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    with open(tmp_path / "predictions" / "predictions.json") as f:
        records = json.load(f)
    assert len(records) == 64 and all(sorted(r) == ["file", "target"] for r in records)
    assert all(np.isfinite(r["target"]) for r in records)
