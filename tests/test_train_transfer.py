"""Transfer on real images: pretrain on digits 0-4, export, linear-probe digits 5-9 via the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from train_helpers import digits_folder, tiny_config
from vitjax import modes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pretrained_features_transfer_to_new_digits(tmp_path):
    first = digits_folder(str(tmp_path / "digits_0_4"), range(5))
    second = digits_folder(str(tmp_path / "digits_5_9"), range(5, 10))
    config = tiny_config(f"folder:{first}", batch_size=32, epochs=8, test_split="")
    config.model.spec.hidden_size = 48
    config.optim.lr = 2e-3
    pre = modes.train(config, str(tmp_path / "pretrain"))
    assert pre["metrics"]["validation"]["accuracy"] > 0.8

    workdir = tmp_path / "probe"
    cmd = [sys.executable, "-m", "vitjax.main", "--config", "configs/digits.py",
           "--workdir", str(workdir),
           f"--config.data.source=folder:{second}",
           f"--config.model.checkpoint={tmp_path / 'pretrain' / 'best'}",
           "--config.optim.freeze=head_only", "--config.optim.lr=0.02",
           "--config.optim.warmup=0", "--config.train.epochs=6",
           "--config.train.eval_every=3 epochs", "--config.train.progress=False",
           "--config.compilation_cache="]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.load(open(workdir / "results.json"))
    accuracy = results["metrics"]["test"]["accuracy"]
    print(f"TRANSFER head-only digits 5-9 test accuracy {accuracy:.3f} (chance 0.2)")
    assert accuracy > 0.6
    groups = (workdir / "param_groups.txt").read_text()
    assert "frozen" in groups.lower()
