"""Shared pieces of the training tests: a tiny from-scratch config and a generated image folder."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from vitjax.config import base_config

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230)}


def tiny_config(source: str, **train):
    """A 2-block ViT at 16 px from scratch, float32, in-process data: seconds per run on a CPU."""
    c = base_config("classification")
    c.model.spec = dict(image_size=16, patch_size=4, hidden_size=32, num_layers=2, num_heads=2,
                        mlp_dim=64)
    c.model.dtype = "float32"
    c.data.source = source
    c.data.workers = 0
    c.data.augment.crop_scale = (0.7, 1.0)
    c.data.augment.hflip = 0.0
    c.optim.lr = 3e-3
    c.optim.warmup = "10%"
    c.train.batch_size = 16
    c.train.epochs = 4
    c.train.eval_every = "1 epochs"
    c.train.log_every = 5
    c.train.progress = False
    c.compilation_cache = ""
    for key, value in train.items():
        c.train[key] = value
    return c


def colour_folder(root: str, per_class: int = 12, size: int = 24, seed: int = 0) -> str:
    """`root/<colour>/*.png`: noisy images whose dominant colour is the class."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            noise = rng.normal(0, 40, (size, size, 3))
            pixels = np.clip(np.array(rgb)[None, None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, name, f"{i:03d}.png"))
    return root


def digits_folder(root: str, classes, per_class: int | None = None) -> str:
    """scikit-learn's digit scans of `classes` written as `root/<digit>/*.png` (real images)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    for digit in classes:
        os.makedirs(os.path.join(root, str(digit)), exist_ok=True)
        images = digits.images[digits.target == digit][:per_class]
        for i, image in enumerate(images):
            grey = np.round(image * 255 / 16).astype(np.uint8)
            Image.fromarray(grey).resize((16, 16), Image.NEAREST).save(
                os.path.join(root, str(digit), f"{i:03d}.png"))
    return root


def export_without_data(workdir: str, data: str, output: str) -> str:
    """`modes.export(None, workdir, output)` with the data folder renamed away meanwhile: export
    must not read training images."""
    from vitjax import modes

    os.rename(data, data + ".hidden")
    try:
        return modes.export(None, workdir, output)
    finally:
        os.rename(data + ".hidden", data)


def csv_folder(root: str, count: int = 64, size: int = 16, seed: int = 0) -> str:
    """Noise images with a red left half and/or a blue right half; labels.csv names the colours."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    lines = ["image,labels"]
    for i in range(count):
        pixels = rng.normal(128, 30, (size, size, 3))
        present = [name for name in ("red", "blue") if rng.random() < 0.5]
        for name in present:
            half = slice(0, size // 2) if name == "red" else slice(size // 2, size)
            pixels[:, half] = np.array(COLOURS[name]) + rng.normal(0, 20, (size, size // 2, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(os.path.join(root, f"{i:03d}.png"))
        lines.append(f"{i:03d}.png,{';'.join(present)}")
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return root
