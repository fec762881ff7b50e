"""The Flax Vision Transformer backbone (HF ViT, DeiT and DINOv2 families) and its `ViTSpec`.

Written in Flax **linen**: parameters are plain nested dicts (pytrees), which is what optax masks,
orbax checkpoints and `jit` sharding rules by parameter path work on directly, as in big_vision.
nnx would add mutable module objects that we would only split back into pytrees.

Parameter names follow the Hugging Face layout so the name table in
`vitjax/checkpoints/hf_names.py` stays readable, e.g. `embeddings/patch_embeddings/kernel`,
`encoder/layer_07/attention/query/kernel`, `layernorm/scale`.

A family is a set of flags on `ViTSpec` (the checkpoint modules in `vitjax/checkpoints/` set them):
  * "vit":    CLS token, pre-norm blocks, GELU MLP.
  * "deit":   + a distillation token after CLS (`distillation_token=True`).
  * "dinov2": + layer scale on both residual branches, optional SwiGLU MLP, a mask token in the
              checkpoint (kept as a parameter so exports round-trip; unused for classification).
  * "dinov2_with_registers": + `num_registers` tokens after CLS that carry no position embedding.
  * "siglip": no CLS token, tanh-GELU, attention-pooling ("map")
              head over all tokens (`pool="map"`).
  * "clip":   CLS token without patch bias, a layer norm before the encoder (`pre_norm`), none after it
              (`final_norm=False`), the pooled CLS token normed (`fc_norm`), quick-GELU.
  * "timm":   timm's `VisionTransformer`: any of the above flags, plus global average pooling
              (`pool="avg"`), register tokens with or without position embeddings, no class token.

Token order: [CLS][distillation][registers][patches]; `posemb_prefix` says which of the prefix tokens
carry a position embedding ("all", "cls" only, or "none" = timm's no_embed_class). `pool` reduces the
tokens to the "pooled" feature ("cls", "avg" over patches, "map" attention pooling), `fc_norm` norms it.

Position embeddings are stored for the grid of `spec.image_size`; an input of another size is run with
the embeddings resized (torch-matching bicubic) to its patch grid, as transformers does with
`interpolate_pos_encoding=True` (and always, for DINOv2).

Fast paths (the same function, other kernels; `vitjax/train/fast_paths.py` picks them per backend):
`attention_impl="einsum"` (attention spelled out: the fast backward on XLA:CPU), `attention_impl="cudnn"` with `attention_pad` (the token axis padded inside attention only, the padding
masked by sequence lengths: cuDNN's fused kernel rejects 197 tokens), `patch_embed="matmul"` (patches
reshaped into rows, one matrix product instead of a strided convolution), and `remat_policy`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vitjax.errors import BadValue
from vitjax.models.interpolation import resize_grid

FAMILIES = ("vit", "deit", "dinov2", "dinov2_with_registers", "siglip", "clip", "timm")
POSEMB_PREFIXES = ("all", "cls", "none")
POOLS = ("cls", "avg", "map")

# HF `hidden_act` strings -> activation functions. HF "gelu" is the exact (erf) GELU.
ACTIVATIONS = {
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": nn.relu,
    "silu": nn.silu,
    "swish": nn.silu,
}

PATCH_EMBEDS = ("conv", "matmul")
# Rematerialisation policies by name (`jax.checkpoint_policies`): what a block keeps for the backward pass.
REMAT_POLICIES = ("nothing_saveable", "dots_with_no_batch_dims_saveable", "dots_saveable")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise BadValue(f"expected an int or a (height, width) pair, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


@dataclasses.dataclass(frozen=True)
class ViTSpec:
    """The architecture of a ViT-family backbone (everything needed to build it, no weights)."""

    family: str = "vit"
    image_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    num_channels: int = 3
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0  # stochastic depth at the last block (linear from 0 at the first)
    distillation_token: bool = False  # DeiT
    layer_scale_init: float | None = None  # DINOv2 layer scale; None = no layer scale
    use_swiglu: bool = False  # DINOv2 giant's SwiGLU MLP
    use_mask_token: bool = False  # DINOv2 checkpoints carry one (unused by classification)
    class_token: bool = True
    num_registers: int = 0  # register tokens after CLS/distillation (DINOv2 with registers, timm reg*)
    posemb_prefix: str = "all"  # prefix tokens with a position embedding: "all", "cls" or "none"
    posemb_interpolation: str = "bicubic"  # resize of the posemb to another grid (`vitjax.models.interpolation.METHODS`)
    patch_bias: bool = True
    pre_norm: bool = False  # a layer norm before the encoder (CLIP)
    final_norm: bool = True  # the layer norm over all tokens after the encoder
    pool: str = "cls"  # the "pooled" feature: CLS token, "avg" of patch tokens, "map" attention pooling
    fc_norm: bool = False  # a layer norm on the pooled feature (timm fc_norm, CLIP post_layernorm)

    def __post_init__(self):
        object.__setattr__(self, "image_size", _pair(self.image_size))
        if self.family not in FAMILIES:
            raise BadValue(f"ViTSpec.family={self.family!r}; supported families: {', '.join(FAMILIES)}")
        if self.hidden_size % self.num_heads:
            raise BadValue(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise BadValue(f"hidden_act={self.hidden_act!r} is not supported; use one of {sorted(ACTIVATIONS)}")
        if min(self.image_size) < self.patch_size:
            raise BadValue(f"image_size={self.image_size} is smaller than patch_size={self.patch_size}")
        if self.posemb_prefix not in POSEMB_PREFIXES:
            raise BadValue(f"posemb_prefix={self.posemb_prefix!r}; use one of {POSEMB_PREFIXES}")
        if self.pool not in POOLS:
            raise BadValue(f"pool={self.pool!r}; use one of {POOLS}")
        if self.pool == "cls" and not self.class_token:
            raise BadValue("pool='cls' needs class_token=True; use pool='avg' or 'map'")
        if self.distillation_token and not self.class_token:
            raise BadValue("a distillation token needs class_token=True")

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (gh, gw) of `image_size` (edge pixels beyond whole patches are dropped, as in HF)."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: CLS, distillation (DeiT), registers."""
        return int(self.class_token) + int(self.distillation_token) + self.num_registers

    @property
    def num_posemb_prefix(self) -> int:
        """Prefix tokens that carry a position embedding (the first ones of the prefix)."""
        return {"all": self.num_prefix_tokens, "cls": int(self.class_token), "none": 0}[self.posemb_prefix]

    @property
    def swiglu_dim(self) -> int:
        """DINOv2's SwiGLU hidden width: two thirds of `mlp_dim`, rounded up to a multiple of 8."""
        return (int(self.mlp_dim * 2 / 3) + 7) // 8 * 8

    def replace(self, **changes) -> "ViTSpec":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf_config(cls, config: dict) -> "ViTSpec":
        """Build from a transformers `config.json` dict (model_type vit, deit or dinov2)."""
        family = config.get("model_type")
        if family not in FAMILIES:
            raise BadValue(
                f"config.json has model_type={family!r}; vitjax supports model_type in {list(FAMILIES)}. "
                "Pick a ViT, DeiT or DINOv2 checkpoint."
            )
        hidden = int(config.get("hidden_size", 768))
        if family == "dinov2":
            mlp_dim = int(hidden * config.get("mlp_ratio", 4))
        else:
            mlp_dim = int(config.get("intermediate_size", 3072))
        return cls(
            family=family,
            image_size=_pair(config.get("image_size", 224)),
            patch_size=int(config.get("patch_size", 16)),
            num_channels=int(config.get("num_channels", 3)),
            hidden_size=hidden,
            num_layers=int(config.get("num_hidden_layers", 12)),
            num_heads=int(config.get("num_attention_heads", 12)),
            mlp_dim=mlp_dim,
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-6 if family == "dinov2" else 1e-12)),
            qkv_bias=bool(config.get("qkv_bias", True)),
            hidden_act=config.get("hidden_act", "gelu"),
            hidden_dropout=float(config.get("hidden_dropout_prob", 0.0)),
            attention_dropout=float(config.get("attention_probs_dropout_prob", 0.0)),
            drop_path_rate=float(config.get("drop_path_rate", 0.0)),
            distillation_token=family == "deit",
            layer_scale_init=float(config.get("layerscale_value", 1.0)) if family == "dinov2" else None,
            use_swiglu=bool(config.get("use_swiglu_ffn", False)) if family == "dinov2" else False,
            use_mask_token=bool(config.get("use_mask_token", True)) if family == "dinov2" else False,
        )

    def to_hf_config(self) -> dict:
        """The architecture part of a transformers `config.json` (no labels, no `architectures`)."""
        h, w = self.image_size
        config = {
            "model_type": self.family,
            "image_size": h if h == w else [h, w],
            "patch_size": self.patch_size,
            "num_channels": self.num_channels,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "layer_norm_eps": self.layer_norm_eps,
            "qkv_bias": self.qkv_bias,
            "hidden_act": self.hidden_act,
            "hidden_dropout_prob": self.hidden_dropout,
            "attention_probs_dropout_prob": self.attention_dropout,
            "initializer_range": 0.02,
        }
        if self.family == "dinov2":
            ratio = self.mlp_dim / self.hidden_size
            config.update(
                mlp_ratio=int(ratio) if ratio.is_integer() else ratio,
                drop_path_rate=self.drop_path_rate,
                layerscale_value=self.layer_scale_init,
                use_swiglu_ffn=self.use_swiglu,
                use_mask_token=self.use_mask_token,
            )
        else:
            config.update(intermediate_size=self.mlp_dim, encoder_stride=self.patch_size)
        return config


def einsum_attention(q, k, v, on_probs=None):
    """Softmax attention over [B, T, N, H] spelled out as two einsums (softmax in float32), with an
    optional `on_probs(probs [B, N, T, T]) -> probs` (dropout; keeping them to explain a prediction).
    The same function as `jax.nn.dot_product_attention`; on XLA:CPU its
    backward runs ~3x faster: that function's XLA path vmaps over head groups, and the softmax
    backward it leaves behind is fused with a batched dot into one slow YNNPACK fusion (bench/NOTES.md)."""
    logits = jnp.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1]).astype(q.dtype)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    if on_probs is not None:
        probs = on_probs(probs)
    return jnp.einsum("bnts,bsnh->btnh", probs, v)


def padded_attention(q, k, v, *, implementation: str | None = None, pad_multiple: int = 0):
    """`jax.nn.dot_product_attention` over [B, T, N, H] with the token axis padded to a multiple of
    `pad_multiple` (0: unpadded). The padded keys are masked by `key_value_seq_lengths`, the padded
    queries by `query_seq_lengths` and dropped from the output, so the result equals the unpadded one.
    `implementation="einsum"` is `einsum_attention` (unpadded).
    """
    if implementation == "einsum":
        return einsum_attention(q, k, v)
    tokens = q.shape[1]
    padded = -(-tokens // pad_multiple) * pad_multiple if pad_multiple else tokens
    if padded == tokens:
        return jax.nn.dot_product_attention(q, k, v, implementation=implementation)
    pad = lambda t: jnp.pad(t, ((0, 0), (0, padded - tokens), (0, 0), (0, 0)))
    lengths = jnp.full((q.shape[0],), tokens, jnp.int32)
    out = jax.nn.dot_product_attention(pad(q), pad(k), pad(v), implementation=implementation,
                                       query_seq_lengths=lengths, key_value_seq_lengths=lengths)
    return out[:, :tokens]


class Attention(nn.Module):
    """Multi-head self-attention with HF's query/key/value/out projections.

    When the 'intermediates' collection is mutable (`apply(..., mutable=["intermediates"])`, as
    `vitjax.explain` runs it) the attention is spelled out and its probabilities [B, heads, T, T]
    are sown as `intermediates/.../attention/probabilities`; otherwise the fast kernels run and
    nothing is kept (the choice is made while tracing: the train and predict paths are unchanged).
    """

    spec: ViTSpec
    dtype: Any = jnp.float32
    attention_impl: str | None = None
    attention_pad: int = 0

    @nn.compact
    def __call__(self, x, deterministic: bool):
        spec = self.spec
        head_dim = spec.hidden_size // spec.num_heads
        dense = lambda name, bias: nn.Dense(spec.hidden_size, use_bias=bias, dtype=self.dtype,
                                            param_dtype=jnp.float32, name=name)
        split = lambda t: t.reshape(*t.shape[:-1], spec.num_heads, head_dim)  # [B, T, N, H]
        q = split(dense("query", spec.qkv_bias)(x))
        k = split(dense("key", spec.qkv_bias)(x))
        v = split(dense("value", spec.qkv_bias)(x))
        if self.is_mutable_collection("intermediates"):
            out = einsum_attention(q, k, v, self._keep)
        elif spec.attention_dropout > 0 and not deterministic:
            # jax.nn.dot_product_attention has no dropout: spell attention out when it is active.
            dropout = nn.Dropout(spec.attention_dropout)
            out = einsum_attention(q, k, v, lambda probs: dropout(probs, deterministic=False))
        else:
            out = padded_attention(q, k, v, implementation=self.attention_impl,
                                   pad_multiple=self.attention_pad)
        out = out.reshape(*out.shape[:-2], spec.hidden_size)
        return dense("out", True)(out)

    def _keep(self, probs):
        self.sow("intermediates", "probabilities", probs)
        return probs


class Mlp(nn.Module):
    """The feed-forward block: fc1 -> act -> fc2, or DINOv2's fused SwiGLU (weights_in -> weights_out)."""

    spec: ViTSpec
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        spec = self.spec
        dense = lambda features, name: nn.Dense(features, dtype=self.dtype, param_dtype=jnp.float32, name=name)
        if spec.use_swiglu:
            gate, up = jnp.split(dense(2 * spec.swiglu_dim, "weights_in")(x), 2, axis=-1)
            return dense(spec.hidden_size, "weights_out")(nn.silu(gate) * up)
        x = ACTIVATIONS[spec.hidden_act](dense(spec.mlp_dim, "fc1")(x))
        return dense(spec.hidden_size, "fc2")(x)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per example with probability `rate`."""

    rate: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        if self.rate == 0.0 or deterministic:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, 0).astype(x.dtype)


class Block(nn.Module):
    """One pre-norm transformer layer (HF ViTLayer / DeiTLayer / Dinov2Layer)."""

    spec: ViTSpec
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32
    attention_impl: str | None = None
    attention_pad: int = 0

    @nn.compact
    def __call__(self, x, deterministic: bool):
        spec = self.spec
        norm = lambda name: nn.LayerNorm(spec.layer_norm_eps, dtype=self.dtype, param_dtype=jnp.float32, name=name)
        dropout = nn.Dropout(spec.hidden_dropout)
        drop_path = DropPath(self.drop_path_rate)

        def branch(y, scale_name):
            y = dropout(y, deterministic=deterministic)
            if spec.layer_scale_init is not None:
                scale = self.param(scale_name, nn.initializers.constant(spec.layer_scale_init),
                                   (spec.hidden_size,), jnp.float32)
                y = y * scale.astype(y.dtype)
            return drop_path(y, deterministic)

        y = Attention(spec, self.dtype, self.attention_impl, self.attention_pad,
                      name="attention")(norm("layernorm_before")(x), deterministic)
        x = x + branch(y, "layer_scale1")
        y = Mlp(spec, self.dtype, name="mlp")(norm("layernorm_after")(x))
        return x + branch(y, "layer_scale2")


class PatchEmbed(nn.Module):
    """The patch projection: `kernel` [p, p, C, D] and `bias` [D] (the parameters of a strided conv),
    applied as that convolution ("conv") or as patches reshaped into rows times the flattened kernel
    ("matmul"). Returns [B, gh, gw, D]; edge pixels beyond whole patches are dropped, as in HF."""

    features: int
    patch_size: int
    dtype: Any = jnp.float32
    impl: str = "conv"
    use_bias: bool = True

    @nn.compact
    def __call__(self, images):
        if self.impl not in PATCH_EMBEDS:
            raise BadValue(f"patch_embed={self.impl!r}; use one of {PATCH_EMBEDS}")
        p, channels = self.patch_size, images.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (p, p, channels, self.features),
                            jnp.float32).astype(self.dtype)
        bias = (self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
                if self.use_bias else jnp.zeros((), self.dtype))
        images = images.astype(self.dtype)
        if self.impl == "conv":
            x = jax.lax.conv_general_dilated(images, kernel, (p, p), "VALID",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return x + bias
        batch, height, width = images.shape[:3]
        gh, gw = height // p, width // p
        rows = images[:, :gh * p, :gw * p].reshape(batch, gh, p, gw, p, channels)
        rows = rows.transpose(0, 1, 3, 2, 4, 5).reshape(batch, gh, gw, p * p * channels)
        return rows @ kernel.reshape(p * p * channels, self.features) + bias


class Embeddings(nn.Module):
    """Patch embedding, CLS / distillation / register tokens and position embeddings."""

    spec: ViTSpec
    dtype: Any = jnp.float32
    patch_embed: str = "conv"

    @nn.compact
    def __call__(self, images):
        spec = self.spec
        d = spec.hidden_size
        init = nn.initializers.truncated_normal(0.02)
        p = spec.patch_size
        x = PatchEmbed(d, p, self.dtype, self.patch_embed, spec.patch_bias, name="patch_embeddings")(images)
        batch, gh, gw, _ = x.shape
        x = x.reshape(batch, gh * gw, d)
        prefix = []
        if spec.class_token:
            prefix.append(self.param("cls_token", init, (1, 1, d), jnp.float32))
        if spec.distillation_token:
            prefix.append(self.param("distillation_token", init, (1, 1, d), jnp.float32))
        if spec.num_registers:
            prefix.append(self.param("register_tokens", init, (1, spec.num_registers, d), jnp.float32))
        if spec.use_mask_token:
            self.param("mask_token", nn.initializers.zeros, (1, d), jnp.float32)
        n_pos = spec.num_posemb_prefix
        sgh, sgw = spec.grid
        posemb = self.param("position_embeddings", init, (1, n_pos + sgh * sgw, d), jnp.float32)
        grid = posemb[:, n_pos:]
        if (gh, gw) != (sgh, sgw):
            grid = resize_grid(grid[0].reshape(sgh, sgw, d), (gh, gw), method=spec.posemb_interpolation)
        # The first n_pos prefix tokens carry a position embedding, the others (registers) none.
        unembedded = jnp.zeros((1, spec.num_prefix_tokens - n_pos, d), jnp.float32)
        posemb = jnp.concatenate([posemb[:, :n_pos], unembedded, grid.reshape(1, gh * gw, d)], axis=1)
        tokens = [jnp.broadcast_to(t, (batch, *t.shape[1:])).astype(x.dtype) for t in prefix]
        return jnp.concatenate(tokens + [x], axis=1) + posemb.astype(x.dtype), (gh, gw)


class Encoder(nn.Module):
    """The stack of blocks `layer_00`, `layer_01`, ...; stochastic depth grows linearly to
    `spec.drop_path_rate` at the last block (as in timm/big_vision), optional rematerialisation.
    Returns (the last block's tokens, every block's output tokens in order)."""

    spec: ViTSpec
    dtype: Any = jnp.float32
    attention_impl: str | None = None
    attention_pad: int = 0
    remat: bool = False
    remat_policy: str = "nothing_saveable"
    start: int = 0  # run blocks start..stop-1 only (a model cut at a block: vitjax/models/split.py)
    stop: int | None = None  # None = the last block

    @nn.compact
    def __call__(self, x, deterministic: bool):
        spec = self.spec
        if self.remat_policy not in REMAT_POLICIES:
            raise BadValue(f"remat_policy={self.remat_policy!r}; use one of {REMAT_POLICIES}")
        policy = getattr(jax.checkpoint_policies, self.remat_policy)
        block = nn.remat(Block, static_argnums=(2,), policy=policy) if self.remat else Block
        states = []
        for i in range(self.start, spec.num_layers if self.stop is None else self.stop):
            rate = spec.drop_path_rate * i / max(spec.num_layers - 1, 1)
            x = block(spec, rate, self.dtype, self.attention_impl, self.attention_pad,
                      name=f"layer_{i:02d}")(x, deterministic)
            states.append(x)
        return x, tuple(states)


class MAPHead(nn.Module):
    """Multi-head attention pooling (SigLIP's head, timm's `AttentionPoolLatent`): a learned `probe`
    attends over the patch tokens (timm's `pool_include_prefix=False`), then a residual MLP on its layer-normed output. Returns [B, D]."""

    spec: ViTSpec
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        spec = self.spec
        d, heads = spec.hidden_size, spec.num_heads
        dense = lambda name: nn.Dense(d, dtype=self.dtype, param_dtype=jnp.float32, name=name)
        split = lambda t: t.reshape(*t.shape[:-1], heads, d // heads)
        probe = self.param("probe", nn.initializers.truncated_normal(0.02), (1, 1, d), jnp.float32)
        probe = jnp.broadcast_to(probe, (x.shape[0], 1, d)).astype(x.dtype)
        out = jax.nn.dot_product_attention(split(dense("query")(probe)), split(dense("key")(x)),
                                           split(dense("value")(x)))
        y = dense("out")(out.reshape(x.shape[0], 1, d))
        norm = nn.LayerNorm(spec.layer_norm_eps, dtype=self.dtype, param_dtype=jnp.float32, name="layernorm")
        y = y + Mlp(spec, self.dtype, name="mlp")(norm(y))
        return y[:, 0]


class ViT(nn.Module):
    """The backbone. `__call__(images NHWC float, *, train)` returns a dict of features:

    "tokens" [B, T, D] after the final layer norm (if the family has one), "patches" [B, gh, gw, D],
    "hidden_states" (each block's output tokens [B, T, D], before the final norm: multi-level heads),
    "pooled" [B, D] (`spec.pool`, then `spec.fc_norm`), with a class token "cls" [B, D] and, with a
    distillation token (DeiT), "distillation" [B, D]. Dropout and stochastic depth run only when
    `train=True` and a 'dropout' rng is given. Compute runs in `dtype`; parameters stay float32.
    """

    spec: ViTSpec
    dtype: Any = jnp.float32
    attention_impl: str | None = None  # None: JAX picks; "cudnn" fused GPU kernel; "einsum" (CPU)
    attention_pad: int = 0  # pad the tokens to a multiple of this inside attention (masked); 0 = no
    patch_embed: str = "conv"  # "conv" or "matmul": the same function
    remat: bool = False
    remat_policy: str = "nothing_saveable"  # with remat: what each block keeps (REMAT_POLICIES)

    @nn.compact
    def __call__(self, images, *, train: bool):
        spec = self.spec
        deterministic = not (train and self.has_rng("dropout"))
        norm = lambda name: nn.LayerNorm(spec.layer_norm_eps, dtype=self.dtype, param_dtype=jnp.float32, name=name)
        x, (gh, gw) = Embeddings(spec, self.dtype, self.patch_embed, name="embeddings")(images.astype(self.dtype))
        x = nn.Dropout(spec.hidden_dropout)(x, deterministic=deterministic)
        if spec.pre_norm:
            x = norm("pre_layernorm")(x)
        x, states = Encoder(spec, self.dtype, self.attention_impl, self.attention_pad, self.remat,
                            self.remat_policy, name="encoder")(x, deterministic)
        return final_features(x, spec, (gh, gw), self.dtype, hidden_states=states)


def final_features(x, spec: ViTSpec, grid: tuple[int, int], dtype, hidden_states=None) -> dict:
    """The backbone's feature dict from the encoder's output tokens [B, T, D] on a patch `grid`
    (with "hidden_states", every block's output, when given: a head reads what it needs, jit drops the rest).

    Called inside a compact `__call__` (`ViT`, and `split.ViTTop` over cached lower blocks): the final
    norm, the MAP head and `fc_norm` it creates live in the caller's scope, at the backbone's own paths.
    """
    norm = lambda name: nn.LayerNorm(spec.layer_norm_eps, dtype=dtype, param_dtype=jnp.float32, name=name)
    if spec.final_norm:
        x = norm("layernorm")(x)
    n_pre = spec.num_prefix_tokens
    out = {"tokens": x, "patches": x[:, n_pre:].reshape(x.shape[0], *grid, x.shape[-1])}
    if hidden_states is not None:
        out["hidden_states"] = hidden_states
    if spec.class_token:
        out["cls"] = x[:, 0]
    if spec.distillation_token:
        out["distillation"] = x[:, 1]
    if spec.pool == "cls":
        pooled = x[:, 0]
    elif spec.pool == "avg":
        pooled = x[:, n_pre:].mean(axis=1)
    else:
        pooled = MAPHead(spec, dtype, name="map_head")(x[:, n_pre:])  # the patches, as timm's default
    out["pooled"] = norm("fc_norm")(pooled) if spec.fc_norm else pooled
    return out
