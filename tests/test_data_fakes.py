"""Shared helpers for the data tests: a stand-in for `Preprocessing` and tiny generated image folders."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

from vitjax.data.config import default_config


@dataclasses.dataclass(frozen=True)
class FakePreprocessing:
    """The slice of the `Preprocessing` contract the data pipeline uses (resize to input_size)."""

    input_size: tuple[int, int] = (16, 16)
    resample: int = int(Image.Resampling.BILINEAR)

    def to_uint8(self, img: Image.Image) -> np.ndarray:
        img = img.convert("RGB").resize((self.input_size[1], self.input_size[0]), self.resample)
        return np.asarray(img, np.uint8)

    def normalize(self, x):
        return (x / 255.0 - 0.5) / 0.5


def data_config(**overrides):
    cfg = default_config()
    cfg.workers = 0
    cfg.read_threads = 2
    cfg.update_from_flattened_dict({k.replace("__", "."): v for k, v in overrides.items()})
    return cfg


def write_image(path: str, seed: int, size=(20, 24), fmt: str | None = None) -> str:
    """A small random RGB image file (JPEG/PNG by extension)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_folder(root: str, layout: dict[str, dict[str, int]]) -> str:
    """layout: split folder ("" for none) -> class -> number of images."""
    seed = 0
    for split, classes in layout.items():
        for cls, count in classes.items():
            for i in range(count):
                ext = ".png" if i % 2 else ".jpg"
                write_image(os.path.join(root, split, cls, f"img_{i:03d}{ext}"), seed)
                seed += 1
    return root
