"""The feature cache: a frozen backbone's outputs computed once train the head (or the top blocks) to
the very weights the ordinary run reaches over images, with resume, reports and export unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from doc_blocks import set_flag, vitjax_args
from train_helpers import colour_folder, tiny_config
from vitjax import modes, parallel
from vitjax.api import Classifier
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.models.vit import ViTSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRESETS = {"head_only": {}, "last_n_blocks": {"last_n_blocks": 1}}


def _config(data: str, freeze: str, cache: str, **extra):
    config = tiny_config(f"folder:{data}", batch_size=8, epochs=3, **extra)
    config.optim.freeze = freeze
    config.optim.update(PRESETS[freeze])
    config.optim.lr = 3e-2
    # No augmentation: the images an uncached step sees are the ones the cache saw.
    config.data.augment.crop_scale = (1.0, 1.0)
    config.data.augment.crop_ratio = (1.0, 1.0)
    config.train.feature_cache = cache
    return config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return colour_folder(str(tmp_path_factory.mktemp("fc") / "data"), per_class=16)


def _exported(workdir: str) -> dict:
    return load_file(os.path.join(workdir, "best", "model.safetensors"))


@pytest.mark.parametrize("freeze", sorted(PRESETS))
def test_cached_run_exports_the_weights_of_the_run_over_images(data, freeze, tmp_path, caplog):
    with caplog.at_level("INFO", logger="vitjax"):
        cached = modes.train(_config(data, freeze, "on"), str(tmp_path / "cached"))
    assert "feature cache: training" in caplog.text
    plain = modes.train(_config(data, freeze, "off"), str(tmp_path / "plain"))
    ours, theirs = _exported(str(tmp_path / "cached")), _exported(str(tmp_path / "plain"))
    assert ours.keys() == theirs.keys()
    moved = [n for n in theirs if "classifier" in n or "layer.1." in n]
    assert moved and all(not np.allclose(theirs[n], 0) for n in moved if "classifier" in n)
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-4, atol=2e-5, err_msg=name)
    assert [h["step"] for h in cached["history"]] == [h["step"] for h in plain["history"]]
    for key in ("accuracy", "loss"):
        assert cached["metrics"]["test"][key] == pytest.approx(plain["metrics"]["test"][key], abs=1e-4)
    assert os.path.exists(os.path.join(tmp_path, "cached", "validation", "per_class.csv"))


def test_views_on_disk_are_reused_and_an_interrupted_run_resumes(data, tmp_path, monkeypatch, caplog):
    config = _config(data, "head_only", "on", early_stopping_patience=5)
    config.data.augment.crop_scale = (0.5, 1.0)  # augmented views now differ
    config.train.feature_cache_views = 2
    config.data.cache, config.data.cache_dir = "disk", str(tmp_path / "cache")
    straight = modes.train(config, str(tmp_path / "straight"))
    files = sorted(os.listdir(tmp_path / "cache"))
    assert any(f.startswith("vitjax-features-train-") and f.endswith(".json") for f in files)

    real, calls = parallel.global_batch, {"n": 0}

    def put(local, mesh):  # Ctrl-C while the 9th training batch goes to the devices
        if "valid" not in local:
            calls["n"] += 1
            if calls["n"] == 9:
                raise KeyboardInterrupt
        return real(local, mesh)

    workdir = str(tmp_path / "resumed")
    with monkeypatch.context() as patch:
        patch.setattr(parallel, "global_batch", put)
        with pytest.raises(KeyboardInterrupt):
            modes.train(config, workdir)
    caplog.clear()  # only what the resumed run logs counts below
    with caplog.at_level("INFO", logger="vitjax"):
        resumed = modes.train(config, workdir)
    assert "resumed from the checkpoint of step" in caplog.text
    assert "through the frozen part" not in caplog.text  # the views came from disk
    assert sorted(os.listdir(tmp_path / "cache")) == files
    assert resumed["metrics"]["test"] == pytest.approx(straight["metrics"]["test"], rel=1e-5)
    ours, theirs = _exported(workdir), _exported(str(tmp_path / "straight"))
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_on_names_what_stops_it_and_auto_falls_back(data, tmp_path, caplog):
    config = _config(data, "head_only", "on")
    config.data.augment.mixup_alpha = 0.2
    with pytest.raises(modes.UserError, match="mixup_alpha/cutmix_alpha mix images"):
        modes.train(config, str(tmp_path / "on"))
    config = _config(data, "head_only", "auto")
    config.optim.freeze = "full"
    with caplog.at_level("INFO", logger="vitjax"):
        modes.train(config, str(tmp_path / "auto"))
    assert "feature cache off: config.optim.freeze='full' trains the embeddings" in caplog.text
    config = _config(data, "head_only", "auto")
    config.data.augment.hflip = 0.5
    caplog.clear()
    with caplog.at_level("INFO", logger="vitjax"):
        modes.train(config, str(tmp_path / "augmented"))
    assert "feature cache off: the training images are augmented" in caplog.text


def test_linear_probe_config_from_the_command_line(data, tmp_path):
    """configs/linear_probe.py as docs/training.md runs it, on a local tiny checkpoint."""
    spec = ViTSpec(image_size=16, patch_size=4, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64)
    Classifier.from_scratch(spec, {0: "a", 1: "b"}, Preprocessing.default(16), seed=0).save_pretrained(
        tmp_path / "checkpoint")
    args = vitjax_args("docs/training.md", "python -m vitjax.main --config configs/linear_probe.py")
    args = set_flag(set_flag(args, "--config.data.source", f"folder:{data}"), "--workdir", str(tmp_path / "probe"))
    cmd = [sys.executable, "-m", "vitjax.main", *args,
           f"--config.model.checkpoint={tmp_path / 'checkpoint'}",
           f"--config.data.cache_dir={tmp_path / 'cache'}", "--config.train.epochs=10",
           "--config.train.progress=False", "--config.compilation_cache="]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "feature cache: training the head" in out.stderr
    with open(tmp_path / "probe" / "results.json", encoding="utf-8") as f:
        assert json.load(f)["metrics"]["test"]["accuracy"] > 0.6  # 3 colours: chance is 1/3
    assert os.path.isfile(tmp_path / "probe" / "best" / "model.safetensors")
