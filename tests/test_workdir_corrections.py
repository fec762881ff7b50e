"""A workdir whose run saved no checkpoint yet accepts a corrected config or data split (nothing was
trained on the old ones); once a step is saved the refusal protects it."""

from __future__ import annotations

import json
import logging
import os

import pytest
from PIL import Image

from train_helpers import colour_folder, tiny_config
from vitjax import errors, modes
from vitjax.data import splits
from vitjax.train.checkpointing import has_checkpoints


def test_a_corrected_config_is_accepted_until_a_checkpoint_exists(tmp_path, caplog):
    workdir = str(tmp_path / "run")
    modes.prepare_workdir(tiny_config("demo:digits"), workdir, overwrite=False)
    corrected = tiny_config("demo:digits", epochs=9)
    with caplog.at_level(logging.WARNING):
        modes.prepare_workdir(corrected, workdir, overwrite=False)
    assert "holds no checkpoint yet: replacing its config (train.epochs: 4 -> 9)" in caplog.text
    assert json.load(open(os.path.join(workdir, "config.json")))["train"]["epochs"] == 9
    os.makedirs(os.path.join(workdir, "checkpoints", "2"))  # a committed step
    assert has_checkpoints(os.path.join(workdir, "checkpoints"))
    with pytest.raises(errors.BadValue, match=r"holds a run with a different config \(train\.epochs: 9 -> 4\)"):
        modes.prepare_workdir(tiny_config("demo:digits"), workdir, overwrite=False)


def test_a_corrected_data_split_is_accepted_until_a_checkpoint_exists(tmp_path):
    data = colour_folder(str(tmp_path / "data"), per_class=8)
    config = tiny_config(f"folder:{data}", batch_size=8, epochs=1, test_split="", export=False)
    workdir = str(tmp_path / "run")
    crash = RuntimeError("stopped before the first checkpoint")

    def fail(*args, **kwargs):
        raise crash

    from vitjax.train import loop
    real = loop._fit
    loop._fit = fail
    try:
        with pytest.raises(RuntimeError):
            modes.train(config, workdir)  # data_split.json written, no checkpoint
    finally:
        loop._fit = real
    assert os.path.isfile(os.path.join(workdir, splits.SPLIT_FILE))
    Image.new("RGB", (24, 24), (200, 20, 20)).save(os.path.join(data, "red", "new.png"))  # a corrected folder
    modes.train(config, workdir)
    recorded = json.load(open(os.path.join(workdir, splits.SPLIT_FILE)))
    assert sum(s["size"] for s in recorded["splits"].values()) == 25
    Image.new("RGB", (24, 24), (200, 20, 20)).save(os.path.join(data, "red", "newer.png"))
    with pytest.raises(errors.BadValue, match=r"The data split differs from the one recorded"):
        modes.train(config, workdir)  # now a checkpoint holds what was trained on the recorded split
