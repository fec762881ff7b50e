"""Geometric transforms applied identically to an image and its dense targets (masks, boxes).

A `View` is the region of the source image that becomes the model input (top, left, height, width in
source pixels) and whether the result is mirrored. Training draws one per record with `random_view`
(the random-resized-crop box of `transforms.crop_box` and a horizontal flip); evaluation uses
`full_view`, the whole image squashed to the input size, so targets near the borders are never cut
away. The same view is then applied to the image (the preprocessing's resample filter), to a label
mask (nearest neighbour, so no label is ever blended) and to boxes (scaled, clipped; boxes left without
area are dropped). `photometric` adds the pixel-only augmentations that leave targets unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

from vitjax.data import transforms
from vitjax.errors import BadValue


@dataclasses.dataclass(frozen=True)
class View:
    """Source region (top, left, height, width) resized to the input size, then mirrored if `flip`."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False

    @property
    def pil_box(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.left + self.width, self.top + self.height


def full_view(height: int, width: int) -> View:
    """The whole image, not mirrored: the evaluation view."""
    return View(0, 0, height, width)


def random_view(height: int, width: int, rng: np.random.Generator, aug) -> View:
    """A random-resized-crop box (`aug.crop_scale`, `aug.crop_ratio`) and a flip with `aug.hflip`."""
    top, left, h, w = transforms.crop_box(height, width, rng, aug.crop_scale, aug.crop_ratio)
    return View(top, left, h, w, flip=bool(rng.random() < aug.hflip))


def load_mask(value: Any, name: str) -> np.ndarray:
    """A label mask (PNG in mode L, P, I or I;16; bytes, {"bytes","path"}, path, PIL or array) as
    int32 [H, W] class indices; palette masks keep their indices, colour (RGB) masks are an error."""
    try:
        value = transforms.open_image(value)
        if isinstance(value, Image.Image):
            if value.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise BadValue(f"mode {value.mode} is not a mask of class indices")
            value = np.asarray(value)
        mask = np.asarray(value)
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer) and mask.dtype != bool:
            raise BadValue(f"expected a 2-D integer array, got {mask.dtype} {mask.shape}")
        return mask.astype(np.int32)
    except Exception as e:  # PIL raises many kinds for bad files.
        raise BadValue(f"Cannot read the label mask {name}: {type(e).__name__}: {e}. A mask is a "
                       "single-channel PNG (mode L, P or I) of class indices, one pixel per image "
                       "pixel.") from e


def apply_to_image(img: Image.Image, view: View, size: tuple[int, int], resample: int) -> np.ndarray:
    """uint8 [H, W, 3] at (H, W) = size from the view's region of `img`."""
    out = np.asarray(img.resize((size[1], size[0]), resample=resample, box=view.pil_box), np.uint8)
    return np.ascontiguousarray(out[:, ::-1]) if view.flip else out


def apply_to_mask(mask: np.ndarray, view: View, size: tuple[int, int]) -> np.ndarray:
    """int32 [H, W] at size from the view's region of `mask`, nearest neighbour."""
    img = Image.fromarray(np.ascontiguousarray(mask, np.int32))  # mode "I"
    out = np.asarray(img.resize((size[1], size[0]), resample=Image.Resampling.NEAREST, box=view.pil_box),
                     np.int32)
    return np.ascontiguousarray(out[:, ::-1]) if view.flip else out


def apply_to_boxes(boxes: np.ndarray, view: View, size: tuple[int, int],
                   min_size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, kept): xyxy pixel boxes [N, 4] mapped into the (H, W) = size output and clipped to it;
    `kept` (bool [N]) is False for boxes narrower or lower than `min_size` output pixels after clipping."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    sx, sy = size[1] / view.width, size[0] / view.height
    x = np.clip((boxes[:, [0, 2]] - view.left) * sx, 0, size[1])
    y = np.clip((boxes[:, [1, 3]] - view.top) * sy, 0, size[0])
    if view.flip:
        x = size[1] - x[:, ::-1]
    out = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    kept = (out[:, 2] - out[:, 0] >= min_size) & (out[:, 3] - out[:, 1] >= min_size)
    return out, kept


def photometric(x: np.ndarray, rng: np.random.Generator, aug) -> np.ndarray:
    """Colour jitter and random erasing of uint8 [H, W, 3] (pixel-only: the targets stay valid).

    The RandAugment/TrivialAugment policies move pixels (shear, rotate, translate) and would need the
    same move on the targets, so they are refused here."""
    if aug.policy != "none":
        raise BadValue(f"config.data.augment.policy={aug.policy!r} moves pixels without moving masks or "
                       "boxes; tasks with dense targets support only 'none' (use color_jitter instead).")
    if aug.color_jitter > 0:
        x = np.asarray(transforms.color_jitter(Image.fromarray(x), rng, aug.color_jitter), np.uint8)
    if aug.random_erasing > 0:
        x = transforms.random_erasing(x, rng, aug.random_erasing)
    return x
