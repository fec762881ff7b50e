"""Which kernel each backbone lever uses on this backend, from `config.model`.

Every lever computes the same function as the plain path (tests/test_fast_paths.py checks this on
CPU); "auto" picks the fast one for the backend:

  attention    "cudnn": cuDNN's fused flash attention, the tokens padded to a multiple of
               `attention_pad` inside the attention call (cuDNN rejects 197 tokens); needs a
               bfloat16/float16 compute dtype. "xla": `jax.nn.dot_product_attention`'s XLA path,
               unpadded. "einsum": attention spelled out (two einsums and a softmax), "auto" on CPU:
               its backward is ~3x faster there than the "xla" one's (bench/NOTES.md).
  patch_embed  "matmul": patches reshaped into rows, one matrix product. "conv": a strided conv.
  remat        off by default (a memory lever); `remat_policy` says what each block keeps.

`keep_host_buffers()` is the host-memory choice for CPU runs, made once before JAX starts.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys

import jax
import jax.numpy as jnp

from vitjax.errors import BadValue
from vitjax.models.vit import PATCH_EMBEDS, REMAT_POLICIES

ATTENTIONS = ("auto", "xla", "cudnn", "einsum")
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
        attention = ("cudnn" if dtype in HALF_DTYPES else "xla") if gpu else "einsum"
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


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm7_plugin", "libtpu")


def cpu_only_host() -> bool:
    """Whether JAX will run on the CPU: `JAX_PLATFORMS` / `jax_platforms` says so, or no accelerator
    plugin is installed. Answers without starting a backend."""
    platforms = jax.config.jax_platforms
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    return not any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)


def keep_host_buffers() -> bool:
    """On a glibc CPU host, keep freed heap memory for reuse instead of returning it to the system;
    call before JAX starts its threads (the CLI does, first thing). Returns whether it applied.

    XLA:CPU allocates each execution's scratch buffer anew (209 MB for the digits demo's train step)
    and glibc serves blocks over 32 MB, and any block of a thread's secondary arena over 64 MB, with a
    fresh `mmap`: every step then page-faults all of it (51k faults, about half of the step's time).
    One arena and no `mmap` make the scratch a reused part of the heap (0 faults per step); the heap
    does not shrink below its peak (trimmed above 1 GiB free at its top).
    """
    if not (sys.platform.startswith("linux") and cpu_only_host()):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        options = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30))
        return all(libc.mallopt(option, value) == 1 for option, value in options)
    except (OSError, AttributeError):  # not glibc
        return False
