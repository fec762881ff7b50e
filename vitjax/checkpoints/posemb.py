"""Resize checkpoint-layout position embeddings [1, prefix + gh*gw, D] for another image size when a
checkpoint is loaded: the CLS/distillation embeddings are kept, the patch grid is interpolated as the
backbone does at run time (`vitjax.models.interpolation.resize_grid`; its `METHODS`).
"""
from __future__ import annotations

import numpy as np

from vitjax.errors import BadValue
from vitjax.models.interpolation import resize_grid


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
