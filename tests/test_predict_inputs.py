"""Predict on a folder with broken files: every input gets predictions or an error naming it (a
truncated JPEG, a text file named .jpg, a decompression bomb), the readable ones are predicted, and
the command line exits with status 1, the count in its last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from vitjax import modes
from vitjax.api import Classifier
from vitjax.models.vit import ViTSpec


def test_every_input_gets_a_result_or_a_named_error(tmp_path, monkeypatch):
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
    records = modes.predict(None, None, model_dir, [str(photos)], 2, str(out))
    assert [os.path.basename(r["file"]) for r in records] == sorted(os.listdir(photos))
    by_name = {os.path.basename(r["file"]): r for r in records}
    for name in ("1_good.png", "3_good.jpg", "6_good.png"):
        assert "error" not in by_name[name] and len(by_name[name]) > 1  # the task's prediction fields
    assert by_name["2_truncated.jpg"]["error"].startswith(f"{photos}/2_truncated.jpg: cannot decode the image (OSError")
    assert by_name["4_text.jpg"]["error"].startswith(f"{photos}/4_text.jpg: cannot decode the image")
    assert by_name["5_bomb.png"]["error"].startswith(f"{photos}/5_bomb.png: refused as a possible decompression bomb")
    assert json.loads((out / "predictions.json").read_text()) == records
    assert modes.unreadable_inputs(records).startswith("3 of 6 input(s) could not be read")

    monkeypatch.undo()  # the command line's own limit: the 100x100 "bomb" is an ordinary image there
    cli = subprocess.run([sys.executable, "-m", "vitjax.main", "--mode", "predict", "--model", model_dir,
                          "--inputs", str(photos), "--output", str(tmp_path / "cli")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"})
    assert cli.returncode == 1, cli.stderr[-3000:]
    assert cli.stderr.strip().splitlines()[-1].startswith("vitjax: 2 of 6 input(s) could not be read")
    printed = json.loads((tmp_path / "cli" / "predictions.json").read_text())
    assert sum("error" in r for r in printed) == 2 and len(printed) == 6
    assert "6_good.png" in cli.stdout  # the readable ones are predicted and listed
