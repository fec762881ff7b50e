"""Which kernel each backbone lever uses on this backend, from `config.model`.

Every lever computes the same function as the plain path (tests/test_fast_paths.py checks this on
CPU); "auto" picks the fast one on CUDA GPUs and the plain XLA one elsewhere, so CPU runs and the
tests stay exact:

  attention    "cudnn": cuDNN's fused flash attention, the tokens padded to a multiple of
               `attention_pad` inside the attention call (cuDNN rejects 197 tokens); needs a
               bfloat16/float16 compute dtype. "xla": XLA's attention, unpadded.
  patch_embed  "matmul": patches reshaped into rows, one matrix product. "conv": a strided conv.
  remat        off by default (a memory lever); `remat_policy` says what each block keeps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vitjax.errors import BadValue
from vitjax.models.vit import PATCH_EMBEDS, REMAT_POLICIES

ATTENTIONS = ("auto", "xla", "cudnn")
HALF_DTYPES = ("bfloat16", "float16")


def on_cuda_gpu() -> bool:
    return jax.default_backend() in ("gpu", "cuda")


def backbone_options(model_cfg, gpu: bool | None = None) -> dict:
    """The `ViT(...)` keyword arguments (dtype and the levers) for `config.model` on this backend
    (`gpu` overrides the detection, for tests). Raises ValueError naming the key on a bad value."""
    gpu = on_cuda_gpu() if gpu is None else gpu
    dtype = model_cfg.dtype
    attention = model_cfg.attention
    if attention not in ATTENTIONS:
        raise BadValue(f"config.model.attention={attention!r}; use one of {ATTENTIONS}.")
    if attention == "auto":
        attention = "cudnn" if gpu and dtype in HALF_DTYPES else "xla"
    if attention == "cudnn" and dtype not in HALF_DTYPES:
        raise BadValue(f"config.model.attention='cudnn' needs config.model.dtype in {HALF_DTYPES}, "
                       f"got {dtype!r}; set attention='xla' or a 16-bit dtype.")
    if model_cfg.attention_pad < 0:
        raise BadValue(f"config.model.attention_pad={model_cfg.attention_pad} must be >= 0 "
                       "(0 = no padding).")
    patch_embed = model_cfg.patch_embed
    if patch_embed == "auto":
        patch_embed = "matmul" if gpu else "conv"
    if patch_embed not in PATCH_EMBEDS:
        raise BadValue(f"config.model.patch_embed={patch_embed!r}; use 'auto' or one of {PATCH_EMBEDS}.")
    if model_cfg.remat_policy not in REMAT_POLICIES:
        raise BadValue(f"config.model.remat_policy={model_cfg.remat_policy!r}; use one of {REMAT_POLICIES}.")
    return dict(dtype=jnp.dtype(dtype), attention_impl=attention,
                attention_pad=model_cfg.attention_pad if attention == "cudnn" else 0,
                patch_embed=patch_embed, remat=model_cfg.remat, remat_policy=model_cfg.remat_policy)
