"""Resize position embeddings over the patch grid, matching PyTorch's `F.interpolate`.

transformers' `interpolate_pos_encoding=True` (ViT, DeiT) and DINOv2's forward resize the patch part of
the position embeddings with `torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`
(no antialiasing) and keep the CLS/distillation embeddings. `jax.image.resize` differs (Keys a=-0.5,
antialiasing when shrinking), so the interpolation is written here as two small matrices built with
numpy (PyTorch's cubic convolution, a=-0.75, border taps clamped), applied along each grid axis. The
same code runs on numpy arrays (checkpoint loading) and inside jit (the backbone's forward).
"""
from __future__ import annotations

import numpy as np

from vitjax.errors import BadValue



_CUBIC_A = -0.75  # PyTorch's bicubic coefficient.


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """The 4 tap weights for fractional offsets t in [0, 1), shape [..., 4]."""
    a = _CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def interpolation_matrix(in_size: int, out_size: int, method: str = "bicubic") -> np.ndarray:
    """[out_size, in_size] matrix M with M @ x == F.interpolate(x, out_size, mode, align_corners=False)."""
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    if method == "bicubic":
        base = np.floor(src)
        weights = _cubic_weights(src - base)
        for tap in range(4):
            idx = np.clip(base.astype(int) - 1 + tap, 0, in_size - 1)
            np.add.at(matrix, (rows, idx), weights[:, tap])
    elif method == "bilinear":
        src = np.maximum(src, 0.0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, in_size - 1)
        frac = src - lo
        np.add.at(matrix, (rows, lo), 1.0 - frac)
        np.add.at(matrix, (rows, hi), frac)
    else:
        raise ValueError(f"posemb resize method={method!r}; use 'bicubic' or 'bilinear'")
    return matrix


def resize_grid(grid, new_grid: tuple[int, int], method: str = "bicubic"):
    """Resize a [gh, gw, D] grid of embeddings (numpy or jax array) to [new_gh, new_gw, D]."""
    gh, gw = grid.shape[:2]
    rows = interpolation_matrix(gh, new_grid[0], method).astype(np.float32)
    cols = interpolation_matrix(gw, new_grid[1], method).astype(np.float32)
    if isinstance(grid, np.ndarray):
        return np.einsum("ih,jw,hwd->ijd", rows, cols, grid.astype(np.float32))
    import jax.numpy as jnp

    precision = "highest"
    out = jnp.einsum("ih,hwd->iwd", rows, grid.astype(jnp.float32), precision=precision)
    return jnp.einsum("jw,iwd->ijd", cols, out, precision=precision)


def resize_posemb(posemb: np.ndarray, num_prefix_tokens: int, old_grid: tuple[int, int],
                  new_grid: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize HF-layout position embeddings [1, prefix + gh*gw, D], keeping the prefix (CLS/distillation)."""
    expected = num_prefix_tokens + old_grid[0] * old_grid[1]
    if posemb.ndim != 3 or posemb.shape[1] != expected:
        raise BadValue(
            f"position embeddings of shape {tuple(posemb.shape)} do not fit {num_prefix_tokens} prefix token(s) "
            f"+ a {old_grid[0]}x{old_grid[1]} patch grid ({expected} positions); check image_size/patch_size."
        )
    if tuple(old_grid) == tuple(new_grid):
        return posemb
    dim = posemb.shape[-1]
    grid = resize_grid(posemb[0, num_prefix_tokens:].reshape(*old_grid, dim), new_grid, method)
    return np.concatenate([posemb[:, :num_prefix_tokens], grid.reshape(1, -1, dim)], axis=1).astype(posemb.dtype)
