"""Per-image transforms: decoding to RGB, the eval transform and the host-side training augmentation.

Every record's image (PIL image, encoded bytes, a {"bytes", "path"} dict, a file path or a uint8 array)
goes through `load_rgb`: decode, EXIF orientation, conversion of every PIL mode to 8-bit RGB (alpha is
composited on white; 16-bit and float images are scaled to 0..255). Evaluation is
`Preprocessing.to_uint8` of that image. Training (`augment`) is random-resized-crop to the model input
size with the preprocessing's resample filter, horizontal flip, RandAugment/TrivialAugment, colour
jitter and random erasing, all driven by one `np.random.Generator` per record (deterministic given the
record's seed). Outputs are uint8 [H, W, 3].
"""
from __future__ import annotations

import io
import logging
import math
import os
from concurrent import futures
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from vitjax.data import policies
from vitjax.errors import BadValue
from vitjax.images import to_rgb
from vitjax.data.records import SubsetSource

def open_image(value: Any) -> Any:
    """A lazily opened PIL image from encoded bytes, an HF {"bytes", "path"} dict or a path;
    anything else (a PIL image, an array) is returned as it is."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return Image.open(io.BytesIO(value))
    if isinstance(value, (str, os.PathLike)):
        return Image.open(value)
    return value


def load_rgb(image: Any, name: str, draft_size: int | None = None) -> Image.Image:
    """Decodes a record's image to an EXIF-oriented RGB PIL image; errors name the record.

    `draft_size`: let JPEGs decode at 1/2, 1/4 or 1/8 scale while both sides stay >= draft_size
    (much faster for large photos; used where the image is resized down once anyway).
    """
    try:
        if isinstance(image, np.ndarray):
            array = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
            img = Image.fromarray(array)
        else:
            image = open_image(image)
            if not isinstance(image, Image.Image):
                raise TypeError(f"unsupported image type {type(image).__name__}")
            if draft_size and image.format == "JPEG":
                image.draft(None, (draft_size, draft_size))
            image.load()
            img = ImageOps.exif_transpose(image)
        return to_rgb(img)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files.
        raise BadValue(
            f"Cannot decode image {name}: {type(e).__name__}: {e}. Fix or remove the file, or set "
            "config.data.skip_corrupt=True to skip unreadable images (they are listed in a warning).") from e


def is_readable(record_source, index: int) -> bool:
    """True when the record's image decodes (JPEGs decoded at reduced size, to be quick)."""
    raw = record_source[index]["image"]
    try:
        image = open_image(raw)
        if isinstance(image, Image.Image) and image is not raw:  # opened here from bytes or a path
            with image as img:
                img.draft("RGB", (64, 64))
                img.load()
        return True
    except Exception:  # noqa: BLE001 - any failure means unreadable.
        return False


def without_corrupt(records, where: str, threads: int = 8):
    """`records` minus the images that do not decode, with a warning listing the skipped ones."""
    with futures.ThreadPoolExecutor(threads) as pool:
        ok = np.fromiter(pool.map(lambda i: is_readable(records, i), range(len(records))), bool, len(records))
    if ok.all():
        return records
    bad = [records.describe(i) for i in np.flatnonzero(~ok)]
    logging.warning("skip_corrupt: skipping %d unreadable image(s) of %s: %s", len(bad), where, bad)
    if not ok.any():
        raise BadValue(f"{where}: none of its {len(records)} images can be decoded (e.g. {bad[0]}).")
    return SubsetSource(records, np.flatnonzero(ok))


def squash(img: Image.Image, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resizes to (H, W) = size ignoring the aspect ratio: the cached/device-side training image."""
    return np.asarray(img.resize((size[1], size[0]), resample=resample), np.uint8)


def crop_box(height: int, width: int, rng: np.random.Generator, scale, ratio) -> tuple[int, int, int, int]:
    """Random-resized-crop box (top, left, h, w): area in `scale`, log-uniform aspect in `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height  # Fallback: the largest central crop with an aspect ratio inside `ratio`.
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def color_jitter(img: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Brightness, contrast and saturation factors in [1-s, 1+s], applied in random order."""
    enhancers = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
    for i in rng.permutation(len(enhancers)):
        img = enhancers[i](img).enhance(rng.uniform(max(0.0, 1 - strength), 1 + strength))
    return img


def random_erasing(x: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """With probability `prob`, fills one rectangle (2%..1/3 of the area, aspect 0.3..3.3) with noise."""
    if rng.random() >= prob:
        return x
    height, width = x.shape[:2]
    for _ in range(10):
        target = height * width * rng.uniform(0.02, 1 / 3)
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
        h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < h < height and 0 < w < width:
            top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            x = x.copy()
            x[top:top + h, left:left + w] = rng.integers(0, 256, size=(h, w, x.shape[2]), dtype=np.uint8)
            return x
    return x


def augment(img: Image.Image, rng: np.random.Generator, aug, size: tuple[int, int] | None,
            resample: int) -> np.ndarray:
    """The host-side training augmentation of one RGB image; `size=None` skips crop and flip
    (the device-side path, which crops and flips on the accelerator)."""
    if size is not None:
        top, left, h, w = crop_box(img.height, img.width, rng, aug.crop_scale, aug.crop_ratio)
        img = img.resize((size[1], size[0]), resample=resample, box=(left, top, left + w, top + h))
        if rng.random() < aug.hflip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if aug.policy == "randaugment":
        img = policies.rand_augment(img, rng, aug.randaugment_num_ops, aug.randaugment_magnitude)
    elif aug.policy == "trivialaugment":
        img = policies.trivial_augment(img, rng)
    elif aug.policy != "none":
        raise BadValue(f"config.data.augment.policy={aug.policy!r}: use 'none', 'randaugment' or "
                       "'trivialaugment'.")
    if aug.color_jitter > 0:
        img = color_jitter(img, rng, aug.color_jitter)
    x = np.asarray(img, np.uint8)
    if aug.random_erasing > 0:
        x = random_erasing(x, rng, aug.random_erasing)
    return x
