"""Resume: a run interrupted (Ctrl-C) mid-epoch and run again equals an uninterrupted run."""

from __future__ import annotations

import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from train_helpers import colour_folder, tiny_config
from vitjax import modes, parallel


def _weights(workdir):
    return load_file(os.path.join(workdir, "best", "model.safetensors"))


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    data = colour_folder(str(tmp_path / "data"), per_class=24)
    config = tiny_config(f"folder:{data}", batch_size=8, epochs=3)
    config.model.dropout_rate = 0.1  # per-step randomness must also line up after resume
    config.data.augment.hflip = 0.5

    straight = modes.train(config, str(tmp_path / "straight"))

    real = parallel.global_batch
    calls = {"n": 0}

    def interrupt_at_the_tenth_batch(local, mesh):
        # 7 train batches (epoch 1), 1 validation batch, train batch 8, then Ctrl-C while
        # batch 9 is being drawn: step 8 is done, mid-epoch 2.
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(local, mesh)

    monkeypatch.setattr(parallel, "global_batch", interrupt_at_the_tenth_batch)
    workdir = str(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        modes.train(config, workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["7", "8"]
    monkeypatch.setattr(parallel, "global_batch", real)
    resumed = modes.train(config, workdir)

    assert resumed["steps"] == straight["steps"] == 21
    assert len(resumed["history"]) == len(straight["history"]) == 3
    for a, b in zip(resumed["history"], straight["history"]):
        for key in a:
            if key.endswith(("images_per_s",)):
                continue
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    ours, theirs = _weights(workdir), _weights(str(tmp_path / "straight"))
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)
