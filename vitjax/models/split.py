"""A ViT cut in two at an encoder block, for a run whose lower part stays frozen (the feature cache).

`ViTBottom` is the frozen part: embeddings and blocks `0..cut-1`, returning {"hidden": tokens
[B, T, D]}. `ViTTop` is the part that trains: blocks `cut..` and the final norm over those tokens. `Passthrough` stands in for a backbone
that is frozen whole: its "output" is the cached feature dict itself. Both halves use the full
model's parameter paths (`embeddings/...`, `encoder/layer_NN/...`, `layernorm`), so they apply to
the full parameter tree (flax ignores the parameters a half does not use) and the trained tree is
the one checkpoints and the Hugging Face export already know.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vitjax.models.vit import Embeddings, Encoder, ViT, ViTSpec, final_features


class ViTBottom(nn.Module):
    """Embeddings + blocks `0..cut-1` in inference mode: images [B, H, W, C] -> {"hidden": [B, T, D]}."""

    spec: ViTSpec
    cut: int
    dtype: Any = jnp.float32
    attention_impl: str | None = None
    attention_pad: int = 0
    patch_embed: str = "conv"

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        del train  # frozen: always inference mode
        x, _ = Embeddings(self.spec, self.dtype, self.patch_embed, name="embeddings")(images.astype(self.dtype))
        if self.spec.pre_norm:
            x = nn.LayerNorm(self.spec.layer_norm_eps, dtype=self.dtype, param_dtype=jnp.float32,
                             name="pre_layernorm")(x)
        x, _ = Encoder(self.spec, self.dtype, self.attention_impl, self.attention_pad, stop=self.cut,
                       name="encoder")(x, True)
        return {"hidden": x}


class ViTTop(nn.Module):
    """Blocks `cut..` + the final norm and pooling: {"hidden": tokens [B, T, D]} -> the backbone's feature dict.

    `grid` is the patch grid of the images the tokens came from. Dropout and stochastic depth of
    these blocks run as in `ViT` (same per-block rates), when `train=True` and a 'dropout' rng is given.
    """

    spec: ViTSpec
    cut: int
    grid: tuple[int, int]
    dtype: Any = jnp.float32
    attention_impl: str | None = None
    attention_pad: int = 0
    remat: bool = False
    remat_policy: str = "nothing_saveable"

    @nn.compact
    def __call__(self, inputs: dict, *, train: bool):
        deterministic = not (train and self.has_rng("dropout"))
        x, _ = Encoder(self.spec, self.dtype, self.attention_impl, self.attention_pad, self.remat,
                       self.remat_policy, start=self.cut, name="encoder")(inputs["hidden"].astype(self.dtype),
                                                                          deterministic)
        return final_features(x, self.spec, self.grid, self.dtype)


class Passthrough(nn.Module):
    """The backbone of a model over cached features: returns the feature dict it is given."""

    @nn.compact
    def __call__(self, features, *, train: bool):
        del train
        return features


def split_backbone(backbone: ViT, cut: int | None, grid: tuple[int, int]) -> tuple[nn.Module, nn.Module]:
    """(bottom, top) of `backbone` cut before block `cut`; `cut=None` cuts after the final norm: the
    bottom is the whole backbone (run with train=False) and the top a `Passthrough`."""
    if cut is None:
        return backbone, Passthrough()
    kernels = dict(dtype=backbone.dtype, attention_impl=backbone.attention_impl,
                   attention_pad=backbone.attention_pad)
    return (ViTBottom(backbone.spec, cut, patch_embed=backbone.patch_embed, **kernels),
            ViTTop(backbone.spec, cut, grid, remat=backbone.remat, remat_policy=backbone.remat_policy,
                   **kernels))
