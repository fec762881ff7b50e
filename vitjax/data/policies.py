"""RandAugment and TrivialAugment on PIL images (our compact version of the published policies).

Each operation takes an image, a magnitude fraction in [0, 1] and a random sign, and returns an image.
RandAugment applies `num_ops` operations drawn uniformly, all at the configured magnitude (0..30);
TrivialAugment applies one operation at a magnitude drawn uniformly per image (wide ranges).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from vitjax.errors import BadValue

MAX_MAGNITUDE = 30
_FILL = (128, 128, 128)


def _affine(img: Image.Image, matrix) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR,
                         fillcolor=_FILL)


def _ops(wide: bool) -> dict[str, Callable[[Image.Image, float, float], Image.Image]]:
    """name -> op(img, fraction, sign). `wide` selects TrivialAugment's larger ranges."""
    shear, shift, degrees, enhance = (0.99, 32 / 224, 135.0, 0.99) if wide else (0.3, 0.45, 30.0, 0.9)
    return {
        "identity": lambda img, f, s: img,
        "autocontrast": lambda img, f, s: ImageOps.autocontrast(img),
        "equalize": lambda img, f, s: ImageOps.equalize(img),
        "rotate": lambda img, f, s: img.rotate(s * degrees * f, resample=Image.Resampling.BILINEAR,
                                               fillcolor=_FILL),
        "solarize": lambda img, f, s: ImageOps.solarize(img, int(round(255 * (1 - f)))),
        "posterize": lambda img, f, s: ImageOps.posterize(img, max(1, 8 - int(round((6 if wide else 4) * f)))),
        "color": lambda img, f, s: ImageEnhance.Color(img).enhance(1 + s * enhance * f),
        "contrast": lambda img, f, s: ImageEnhance.Contrast(img).enhance(1 + s * enhance * f),
        "brightness": lambda img, f, s: ImageEnhance.Brightness(img).enhance(1 + s * enhance * f),
        "sharpness": lambda img, f, s: ImageEnhance.Sharpness(img).enhance(1 + s * enhance * f),
        "shear_x": lambda img, f, s: _affine(img, (1, s * shear * f, 0, 0, 1, 0)),
        "shear_y": lambda img, f, s: _affine(img, (1, 0, 0, s * shear * f, 1, 0)),
        "translate_x": lambda img, f, s: _affine(img, (1, 0, s * shift * f * img.width, 0, 1, 0)),
        "translate_y": lambda img, f, s: _affine(img, (1, 0, 0, 0, 1, s * shift * f * img.height)),
    }


RAND_OPS = _ops(wide=False)
TRIVIAL_OPS = _ops(wide=True)


def _apply(img: Image.Image, ops: dict, name: str, fraction: float, rng: np.random.Generator) -> Image.Image:
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return ops[name](img, fraction, sign)


def rand_augment(img: Image.Image, rng: np.random.Generator, num_ops: int, magnitude: float) -> Image.Image:
    """RandAugment: `num_ops` uniformly drawn operations at `magnitude` (0..30)."""
    if not 0 <= magnitude <= MAX_MAGNITUDE:
        raise BadValue(f"config.data.augment.randaugment_magnitude must be in 0..{MAX_MAGNITUDE}, "
                       f"got {magnitude}.")
    names = list(RAND_OPS)
    for i in rng.integers(len(names), size=int(num_ops)):
        img = _apply(img, RAND_OPS, names[i], magnitude / MAX_MAGNITUDE, rng)
    return img


def trivial_augment(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """TrivialAugment: one uniformly drawn operation at a uniformly drawn magnitude."""
    names = list(TRIVIAL_OPS)
    name = names[rng.integers(len(names))]
    return _apply(img, TRIVIAL_OPS, name, rng.integers(MAX_MAGNITUDE + 1) / MAX_MAGNITUDE, rng)
