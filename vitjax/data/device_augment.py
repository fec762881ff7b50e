"""Device-side augmentation (jit-able JAX functions taking an rng): random-resized-crop, flip, mixup/cutmix.

With `config.data.device_augment=True` the host ships uint8 images resized once to
`pipeline.train_image_size()`; `random_resized_crop` + `random_flip` produce the model input size on the
accelerator. `mixup_cutmix` mixes a batch with its reverse and returns soft targets. `train_transform`
builds the one function the train step calls, from `config.data`, so the trainer reads no data keys.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _crop_boxes(rng, batch: int, height: int, width: int, scale, ratio, attempts: int = 10):
    """Per-image (top, left, h, w) float boxes; the first of `attempts` draws that fits, else the whole image."""
    k_area, k_ratio, k_top, k_left = jax.random.split(rng, 4)
    area = height * width * jax.random.uniform(k_area, (batch, attempts), minval=scale[0], maxval=scale[1])
    aspect = jnp.exp(jax.random.uniform(k_ratio, (batch, attempts), minval=np.log(ratio[0]),
                                        maxval=np.log(ratio[1])))
    w = jnp.round(jnp.sqrt(area * aspect))
    h = jnp.round(jnp.sqrt(area / aspect))
    fits = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
    first = jnp.argmax(fits, axis=1)
    any_fit = fits.any(axis=1)
    h = jnp.where(any_fit, jnp.take_along_axis(h, first[:, None], 1)[:, 0], height)
    w = jnp.where(any_fit, jnp.take_along_axis(w, first[:, None], 1)[:, 0], width)
    top = jnp.floor(jax.random.uniform(k_top, (batch,)) * (height - h + 1))
    left = jnp.floor(jax.random.uniform(k_left, (batch,)) * (width - w + 1))
    return top, left, h, w


def _interpolation(start, length, out: int, size: int):
    """[out, size] bilinear weights sampling `length` pixels from `start` at `out` points (edges clamped)."""
    src = start + (jnp.arange(out) + 0.5) * (length / out) - 0.5
    src = jnp.clip(src, 0, size - 1)
    return jnp.maximum(0.0, 1.0 - jnp.abs(src[:, None] - jnp.arange(size)[None, :]))


@functools.partial(jax.jit, static_argnames=("out_size", "scale", "ratio"))
def random_resized_crop(rng, images, out_size: tuple[int, int], scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """[B, H, W, C] -> [B, *out_size, C] random crops (area in `scale`, aspect in `ratio`), bilinear,
    same dtype. Meant for the mild downscaling of the device path (images ~1.15x the output size)."""
    batch, height, width, _ = images.shape
    top, left, h, w = _crop_boxes(rng, batch, height, width, scale, ratio)
    wy = jax.vmap(lambda t, n: _interpolation(t, n, out_size[0], height))(top, h)
    wx = jax.vmap(lambda l, n: _interpolation(l, n, out_size[1], width))(left, w)
    out = jnp.einsum("boh,bhwc,bpw->bopc", wy, images.astype(jnp.float32), wx,
                     precision=jax.lax.Precision.HIGHEST)
    return _like(out, images.dtype)


@functools.partial(jax.jit, static_argnames=("prob",))
def random_flip(rng, images, prob: float = 0.5):
    """Flips each image of [B, H, W, C] left-right with probability `prob`."""
    flip = jax.random.uniform(rng, (images.shape[0],)) < prob
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


def _like(x, dtype):
    if jnp.issubdtype(dtype, jnp.integer):
        return jnp.clip(jnp.round(x), 0, 255).astype(dtype)
    return x.astype(dtype)


@functools.partial(jax.jit, static_argnames=("mixup_alpha", "cutmix_alpha", "prob"))
def mixup_cutmix(rng, images, onehot_labels, mixup_alpha: float, cutmix_alpha: float, prob: float = 1.0):
    """Mixes the batch with its reverse: Mixup (Beta(a, a) blend) or CutMix (a pasted box).

    With both alphas > 0, one of the two is chosen per batch (50/50); with probability 1 - prob the batch
    is left as is. Returns (images in their dtype, soft targets float32 [B, C] = lam * y + (1 - lam) * y_rev).
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, onehot_labels.astype(jnp.float32)
    k_apply, k_choose, k_mix, k_y, k_x = jax.random.split(rng, 5)
    batch, height, width = images.shape[:3]
    x = images.astype(jnp.float32)
    x_rev = x[::-1]
    y = onehot_labels.astype(jnp.float32)
    apply = jax.random.uniform(k_apply) < prob
    use_cutmix = (cutmix_alpha > 0) & ((mixup_alpha <= 0) | (jax.random.uniform(k_choose) < 0.5))
    alphas = jnp.maximum(jnp.asarray([mixup_alpha, cutmix_alpha], jnp.float32), 1e-3)
    lam_mix, lam_cut = jax.random.beta(k_mix, alphas, alphas)
    # CutMix box of area (1 - lam_cut), centred uniformly, clipped to the image.
    cut = jnp.sqrt(1.0 - lam_cut)
    cy, cx = jax.random.uniform(k_y) * height, jax.random.uniform(k_x) * width
    y0, y1 = jnp.clip(cy - cut * height / 2, 0, height), jnp.clip(cy + cut * height / 2, 0, height)
    x0, x1 = jnp.clip(cx - cut * width / 2, 0, width), jnp.clip(cx + cut * width / 2, 0, width)
    rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    box = (rows >= jnp.round(y0)) & (rows < jnp.round(y1)) & (cols >= jnp.round(x0)) & (cols < jnp.round(x1))
    lam_box = 1.0 - box.sum() / (height * width)
    lam = jnp.where(apply, jnp.where(use_cutmix, lam_box, lam_mix), 1.0)
    mixed_cut = jnp.where(box[None, :, :, None], x_rev, x)
    mixed_mix = lam_mix * x + (1 - lam_mix) * x_rev
    out = jnp.where(apply, jnp.where(use_cutmix, mixed_cut, mixed_mix), x)
    return _like(out, images.dtype), lam * y + (1 - lam) * y[::-1]


def train_transform(data_cfg, input_size: tuple[int, int], num_classes: int) -> Callable | None:
    """The device-side part of training augmentation as `fn(rng, batch) -> batch`, or None if nothing to do.

    It crops/flips to `input_size` when `data_cfg.device_augment`, and applies mixup/cutmix (turning
    "label" int32 [B] into soft targets float32 [B, num_classes]) when an alpha is > 0. jit-able.
    """
    aug = data_cfg.augment
    crop = bool(data_cfg.device_augment)
    mix = aug.mixup_alpha > 0 or aug.cutmix_alpha > 0
    if not crop and not mix:
        return None

    def fn(rng, batch: dict) -> dict:
        k_crop, k_flip, k_mix = jax.random.split(rng, 3)
        batch = dict(batch)
        images = batch["image"]
        if crop:
            images = random_resized_crop(k_crop, images, tuple(input_size), tuple(aug.crop_scale),
                                         tuple(aug.crop_ratio))
            images = random_flip(k_flip, images, float(aug.hflip))
        if mix:
            onehot = jax.nn.one_hot(batch["label"], num_classes)
            images, batch["label"] = mixup_cutmix(k_mix, images, onehot, float(aug.mixup_alpha),
                                                  float(aug.cutmix_alpha), float(aug.mixup_prob))
        batch["image"] = images
        return batch

    return fn
