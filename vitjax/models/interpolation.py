"""Resize a grid of embeddings over the patch grid, matching PyTorch's `F.interpolate`.

transformers' `interpolate_pos_encoding=True` (ViT, DeiT) and DINOv2's forward resize the patch part of
the position embeddings with `torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`
(no antialiasing). `jax.image.resize` differs (Keys a=-0.5, antialiasing when shrinking), so the
interpolation is written here as two small matrices built with numpy (PyTorch's cubic convolution,
a=-0.75, border taps clamped), applied along each grid axis. The same code runs on numpy arrays
(checkpoint loading, `vitjax.checkpoints.posemb`) and inside jit (the backbone's forward).

Methods (`METHODS`): "bicubic" and "bilinear" as above; "bicubic_aa" is `antialias=True` bicubic (timm's
`resample_abs_pos_embed`, DINOv2 with registers): PIL's separable filter (cubic a=-0.5, support widened
when shrinking, taps outside the input dropped and the weights renormalised).
"""
from __future__ import annotations

import numpy as np

_CUBIC_A = -0.75  # PyTorch's bicubic coefficient.
_CUBIC_A_ANTIALIAS = -0.5  # PyTorch's antialiased bicubic (as PIL).
METHODS = ("bicubic", "bilinear", "bicubic_aa")


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
    elif method == "bicubic_aa":
        matrix = _antialias_matrix(in_size, out_size)
    else:
        raise ValueError(f"posemb resize method={method!r}; use one of {METHODS}")
    return matrix


def _antialias_cubic(x: np.ndarray) -> np.ndarray:
    a, x = _CUBIC_A_ANTIALIAS, np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def _antialias_matrix(in_size: int, out_size: int) -> np.ndarray:
    """PyTorch's `_upsample_bicubic2d_aa` weights (PIL's `precompute_coeffs`) as an [out, in] matrix."""
    scale = in_size / out_size
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        weights = _antialias_cubic((np.arange(lo, hi) - center + 0.5) * inv)
        matrix[i, lo:hi] = weights / weights.sum()
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
