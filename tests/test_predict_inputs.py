"""Predict on a folder with broken files: every input gets predictions or an error naming it (a
truncated JPEG, a text file named .jpg, a decompression bomb), and the readable ones are predicted."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
from PIL import Image

from vitjax import modes
from vitjax.api import Classifier
from vitjax.models.vit import ViTSpec


def test_every_input_gets_a_result_or_a_named_error(tmp_path, monkeypatch, caplog):
    model = Classifier.from_scratch(ViTSpec(image_size=16, patch_size=4, hidden_size=32, num_layers=1,
                                            num_heads=2, mlp_dim=64), {0: "a", 1: "b"})
    model_dir = model.save_pretrained(str(tmp_path / "model"))
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("1_good.png", "3_good.jpg", "6_good.png"):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(photos / name)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photos / "2_truncated.jpg")
    data = (photos / "2_truncated.jpg").read_bytes()
    (photos / "2_truncated.jpg").write_bytes(data[: len(data) // 2])
    (photos / "4_text.jpg").write_text("not an image")
    Image.new("L", (100, 100)).save(photos / "5_bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x100 = 10000 pixels: over twice the limit
    out = tmp_path / "predictions"
    with caplog.at_level(logging.WARNING):
        records = modes.predict(None, None, model_dir, [str(photos)], 2, str(out))
    assert [os.path.basename(r["file"]) for r in records] == sorted(os.listdir(photos))
    by_name = {os.path.basename(r["file"]): r for r in records}
    for name in ("1_good.png", "3_good.jpg", "6_good.png"):
        assert "error" not in by_name[name] and len(by_name[name]) > 1  # the task's prediction fields
    assert by_name["2_truncated.jpg"]["error"].startswith(f"{photos}/2_truncated.jpg: cannot decode the image (OSError")
    assert by_name["4_text.jpg"]["error"].startswith(f"{photos}/4_text.jpg: cannot decode the image")
    assert by_name["5_bomb.png"]["error"].startswith(f"{photos}/5_bomb.png: refused as a possible decompression bomb")
    assert json.loads((out / "predictions.json").read_text()) == records
    assert "3 of 6 input(s) could not be read" in caplog.text
