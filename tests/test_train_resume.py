"""Resume: a run interrupted (Ctrl-C) mid-step or mid-evaluation and run again equals a straight run."""

from __future__ import annotations

import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from train_helpers import colour_folder, tiny_config
from vitjax import modes, parallel
from vitjax.train import evaluation


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = colour_folder(str(root / "data"), per_class=24)
    config = tiny_config(f"folder:{data}", batch_size=8, epochs=3)
    config.model.dropout_rate = 0.1  # per-step randomness must also line up after resume
    config.data.augment.hflip = 0.5
    results = modes.train(config, str(root / "straight"))
    assert results["steps"] == 21  # 57 training images, batch 8: 7 steps an epoch
    return config, str(root / "straight"), results


def _interrupt_training_batch(monkeypatch, at: int):
    """Ctrl-C while the `at`-th training batch is put on the devices (prefetched ahead)."""
    real, calls = parallel.global_batch, {"n": 0}

    def put(local, mesh):
        if "valid" not in local:
            calls["n"] += 1
            if calls["n"] == at:
                raise KeyboardInterrupt
        return real(local, mesh)

    monkeypatch.setattr(parallel, "global_batch", put)


def _interrupt_evaluation(monkeypatch, at: int):
    """Ctrl-C during the `at`-th validation pass."""
    real, calls = evaluation.evaluate, {"n": 0}

    def evaluate(*args):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(evaluation, "evaluate", evaluate)


@pytest.mark.parametrize("where", ["mid_epoch", pytest.param("mid_evaluation", marks=pytest.mark.slow)])
def test_interrupted_run_resumes_to_the_same_result(straight, where, tmp_path, monkeypatch, caplog):
    config, straight_dir, expected = straight
    workdir = str(tmp_path / "resumed")
    with monkeypatch.context() as patch:
        if where == "mid_epoch":
            _interrupt_training_batch(patch, at=12)  # a few steps into epoch 2
        else:
            _interrupt_evaluation(patch, at=2)  # the evaluation after epoch 2 (step 14)
        with pytest.raises(KeyboardInterrupt):
            modes.train(config, workdir)
    saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert saved[0] == 7 and 7 < saved[-1] <= 14, saved

    with caplog.at_level("INFO", logger="vitjax"):
        resumed = modes.train(config, workdir)
    assert f"resumed from the checkpoint of step {saved[-1]}" in caplog.text
    assert resumed["steps"] == 21
    assert [h["step"] for h in resumed["history"]] == [7, 14, 21]
    for ours, theirs in zip(resumed["history"], expected["history"]):
        for key in theirs:
            if key.startswith("validation/"):
                assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key
    assert resumed["metrics"]["test"] == pytest.approx(expected["metrics"]["test"], rel=1e-5)
    ours = load_file(os.path.join(workdir, "best", "model.safetensors"))
    theirs = load_file(os.path.join(straight_dir, "best", "model.safetensors"))
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)
