"""Transfer on real images: pretrain on digits 0-4, export, linear-probe digits 5-9 via the CLI.

The probe on pretrained features must beat chance (0.2) clearly; the slow test also checks it
beats the same probe on a randomly initialised backbone of the same shape (at this tiny scale
random ViT features are strong: the gap needs the larger pretraining).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from train_helpers import digits_folder, tiny_config
from vitjax import modes
from vitjax.api import Classifier
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.models.vit import ViTSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ["--config.optim.freeze=head_only", "--config.optim.lr=0.05", "--config.optim.warmup=0",
         "--config.train.epochs=15", "--config.train.eval_every=5 epochs",
         "--config.train.progress=False", "--config.compilation_cache="]


def _probe(checkpoint, data, workdir) -> float:
    cmd = [sys.executable, "-m", "vitjax.main", "--config", "configs/digits.py",
           "--workdir", str(workdir), f"--config.data.source=folder:{data}",
           f"--config.model.checkpoint={checkpoint}", *PROBE]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "frozen" in (workdir / "param_groups.txt").read_text()
    return json.load(open(workdir / "results.json"))["metrics"]["test"]["accuracy"]


def _pretrain(tmp_path, hidden, layers, epochs):
    """A tiny ViT trained on digits 0-4 and exported; returns (its best/ folder, digits 5-9)."""
    first = digits_folder(str(tmp_path / "digits_0_4"), range(5))
    second = digits_folder(str(tmp_path / "digits_5_9"), range(5, 10))
    config = tiny_config(f"folder:{first}", batch_size=32, epochs=epochs, test_split="")
    config.model.spec.update(hidden_size=hidden, num_layers=layers, mlp_dim=2 * hidden)
    config.task.label_smoothing = 0.1
    config.optim.lr = 2e-3
    pre = modes.train(config, str(tmp_path / "pretrain"))
    assert pre["metrics"]["validation"]["accuracy"] > 0.8
    return tmp_path / "pretrain" / "best", second, ViTSpec(**config.model.spec.to_dict())


def test_pretrained_features_transfer_to_new_digits(tmp_path):
    """Small enough for every run: the CLI probe of pretrained features is well above chance."""
    best, second, _ = _pretrain(tmp_path, hidden=48, layers=2, epochs=15)
    accuracy = _probe(best, second, tmp_path / "probe")
    print(f"TRANSFER head-only on digits 5-9: test accuracy {accuracy:.3f} (chance 0.2)")
    assert accuracy > 0.45


@pytest.mark.slow
def test_pretrained_features_beat_random_features(tmp_path):
    """A larger pretraining: the same probe on a random backbone of the same shape does worse."""
    best, second, spec = _pretrain(tmp_path, hidden=64, layers=3, epochs=25)
    Classifier.from_scratch(spec, {i: str(i) for i in range(5)}, Preprocessing.default(16),
                            seed=1).save_pretrained(tmp_path / "random")
    pretrained = _probe(best, second, tmp_path / "probe")
    random = _probe(tmp_path / "random", second, tmp_path / "probe_random")
    print(f"TRANSFER head-only on digits 5-9: test accuracy {pretrained:.3f} with features "
          f"pretrained on digits 0-4, {random:.3f} with a random backbone (chance 0.2)")
    assert pretrained > random + 0.05
