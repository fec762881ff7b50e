"""An image folder with several problems is reported in one run, grouped with the fixes; with
`skip_corrupt=True` training goes past all of them (an empty class folder dropped with a warning)."""

from __future__ import annotations

import logging
import os

import pytest

from test_data_fakes import data_config, make_folder, write_image
from train_helpers import tiny_config
from vitjax import errors, modes
from vitjax.data.sources import open_source


def _broken_folder(root):
    make_folder(root, {"": {"a": 8, "b": 8}})
    truncated = write_image(os.path.join(root, "a", "truncated.jpg"), 1, size=(64, 64))
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[: len(data) // 2])
    open(os.path.join(root, "a", "zero.jpg"), "wb").close()
    open(os.path.join(root, "b", "text.jpg"), "w").write("not an image, named .jpg")
    open(os.path.join(root, "b", "notes.txt"), "w").write("notes")
    open(os.path.join(root, "README"), "w").write("a file beside the class folders")
    os.makedirs(os.path.join(root, "c_empty"))
    return root


def test_every_problem_is_reported_in_one_run_grouped_with_its_fix(tmp_path):
    root = _broken_folder(str(tmp_path / "data"))
    with pytest.raises(errors.BadValue) as info:
        open_source(data_config(source=root))
    message = str(info.value)
    assert message.startswith(f"image folder {root} has 6 problem(s):\n")
    for line in ("1 files beside the class folders (move them into a class folder or remove them): "
                 f"{root}/README",
                 f"1 entries that are not image files (remove them or move them out of the class folders): "
                 f"{root}/b/notes.txt",
                 f"1 zero-byte files (copy them again): {root}/a/zero.jpg",
                 "2 images that cannot be decoded (truncated or not images) (copy them again or remove them): "
                 f"{root}/a/truncated.jpg, {root}/b/text.jpg",
                 f"1 class folders without images (add their images or delete the folders): {root}/c_empty"):
        assert f"\n  {line}" in message
    assert message.endswith("set config.data.skip_corrupt=True to train without them (they are then "
                            "listed in a warning).")


def test_skip_corrupt_trains_past_every_problem(tmp_path, caplog):
    root = _broken_folder(str(tmp_path / "data"))
    config = tiny_config(f"folder:{root}", batch_size=4, epochs=1, test_split="", export=False)
    config.data.skip_corrupt = True
    config.data.split_fractions = (0.5, 0.25, 0.25)
    with caplog.at_level(logging.WARNING):
        results = modes.train(config, str(tmp_path / "run"))
    assert results["class_names"] == ["a", "b"]  # the empty class folder dropped
    assert "leaving out 6 problem file(s)/folder(s)" in caplog.text and "c_empty" in caplog.text
    assert results["steps"] == 2  # 16 good images: 8 for training, 2 steps of 4
