"""The one conversion of any PIL image to 8-bit RGB, used by training, evaluation and prediction alike.

Transparency is composited onto white (as transformers' `convert_to_rgb`); 16-bit, 32-bit integer and
float images are scaled to 0..255 rather than clipped, so a 16-bit pixel of 40000 becomes 156
(40000 / 257), not 255.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB for any PIL mode: alpha composited on white, 16-bit/32-bit/float scaled to 0..255."""
    if img.mode in _DEEP_MODES:
        x = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and x.max(initial=0) > 255):
            x = x / 257.0
        elif img.mode == "F" and x.max(initial=0) <= 1.0:
            x = x * 255.0
        grey = np.clip(np.round(x), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))
    if {"A", "a"} & set(img.getbands()) or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")
