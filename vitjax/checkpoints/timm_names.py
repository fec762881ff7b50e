"""timm's plain ViTs (`VisionTransformer`: `vit_*`, `deit_*`, `deit3_*`, and `VisionTransformerDistilled`:
`deit_*_distilled_*`): a hub repo or folder with timm's `config.json` (`architecture`, `global_pool`,
`pretrained_cfg`, optionally `model_args`) and timm-named safetensors.

timm's config does not spell out the architecture, so the spec comes from the tensors (widths, depth,
which tokens and norms exist), `model_args` where saved, and the architecture name (heads by model size,
quick-GELU, CLIP's 1e-5 norm eps). Tensors that no row maps make the load fail (`Source.strict`): they
are a variant vitjax does not implement (qk-norm, SwiGLU, RMSNorm, rotary embeddings, ...).
Position embeddings are resized as timm's `resample_abs_pos_embed` does (antialiased bicubic).
Preprocessing follows timm's `resolve_data_config` + eval `create_transform` (`preprocessing_from_cfg`).
"""
from __future__ import annotations

import math
import re

from PIL import Image

from vitjax.checkpoints.catalog import TIMM
from vitjax.checkpoints.convert import Source
from vitjax.checkpoints.hf_load import CONFIG, WEIGHTS, read_tensors
from vitjax.checkpoints.hf_names import Row, fused, linear, norm
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.errors import BadValue
from vitjax.models.vit import ViTSpec

_ARCHITECTURE = re.compile(r"^(vit|deit|deit3)_")
# Heads per model size name (timm's model definitions; widths come from the tensors).
HEADS = {"tiny": 3, "small": 6, "medium": 8, "base": 12, "large": 16, "huge": 16, "giant": 16,
         "gigantic": 16, "so150m": 14, "so400m": 16}
ACTIVATIONS = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_tanh": "gelu_pytorch_tanh"}
POOLS = {"token": "cls", "avg": "avg", "map": "map"}
# model_args vitjax does not implement, with the value it does.
UNSUPPORTED_ARGS = {"pos_embed": "learn", "pool_include_prefix": False, "dynamic_img_pad": False, "qk_norm": False}
# The tensors the architecture is read from.
_SPEC_TENSORS = ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight")
INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                  "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}

_B = "blocks.{i}"
_F = "encoder/layer_{i:02d}"

EMBEDDINGS = [
    Row("cls_token", "embeddings/cls_token", condition="class_token"),
    Row("dist_token", "embeddings/distillation_token", condition="distillation_token"),
    Row("reg_token", "embeddings/register_tokens", condition="num_registers"),
    Row("pos_embed", "embeddings/position_embeddings"),
    Row("patch_embed.proj.weight", "embeddings/patch_embeddings/kernel", "conv"),
    Row("patch_embed.proj.bias", "embeddings/patch_embeddings/bias", condition="patch_bias"),
    *norm("norm_pre", "pre_layernorm", "pre_norm"),
]
LAYER = [
    *norm(f"{_B}.norm1", f"{_F}/layernorm_before"),
    *fused(f"{_B}.attn.qkv", [f"{_F}/attention/query", f"{_F}/attention/key", f"{_F}/attention/value"],
           bias_condition="qkv_bias"),
    *linear(f"{_B}.attn.proj", f"{_F}/attention/out"),
    Row(f"{_B}.ls1.gamma", f"{_F}/layer_scale1", condition="layer_scale_init"),
    *norm(f"{_B}.norm2", f"{_F}/layernorm_after"),
    *linear(f"{_B}.mlp.fc1", f"{_F}/mlp/fc1"),
    *linear(f"{_B}.mlp.fc2", f"{_F}/mlp/fc2"),
    Row(f"{_B}.ls2.gamma", f"{_F}/layer_scale2", condition="layer_scale_init"),
]
FINAL = [
    *norm("norm", "layernorm", "final_norm"),
    Row("attn_pool.latent", "map_head/probe", condition="pool=map"),
    *linear("attn_pool.q", "map_head/query", "pool=map"),
    *fused("attn_pool.kv", ["map_head/key", "map_head/value"], "pool=map"),
    *linear("attn_pool.proj", "map_head/out", "pool=map"),
    *norm("attn_pool.norm", "map_head/layernorm", "pool=map"),
    *linear("attn_pool.mlp.fc1", "map_head/mlp/fc1", "pool=map"),
    *linear("attn_pool.mlp.fc2", "map_head/mlp/fc2", "pool=map"),
    *norm("fc_norm", "fc_norm", "fc_norm"),
]
HEAD_ROWS = {"pooled": linear("head", "classifier"),
             "cls_distillation": linear("head", "classifier") + linear("head_dist", "distillation_classifier")}


def backbone_rows(spec: ViTSpec) -> list[Row]:
    rows = [r.resolved() for r in EMBEDDINGS if r.applies(spec)]
    for i in range(spec.num_layers):
        rows += [r.resolved(i=i) for r in LAYER if r.applies(spec)]
    return rows + [r.resolved() for r in FINAL if r.applies(spec)]


def _num_heads(architecture: str, args: dict, path: str) -> int:
    if "num_heads" in args:
        return int(args["num_heads"])
    for size, heads in HEADS.items():
        if f"_{size}_" in f"_{architecture}_":
            return heads
    raise BadValue(f"{path}: cannot tell the number of attention heads of {architecture!r}; add "
                   "\"model_args\": {\"num_heads\": N} to its config.json.")


def spec_from_timm(config: dict, tensors: dict, path: str) -> ViTSpec:
    """timm's config.json + its tensors -> spec (see the module docstring)."""
    architecture = config["architecture"].split(".")[0]
    if not _ARCHITECTURE.match(architecture):
        raise BadValue(f"{path}: timm architecture {architecture!r} is not supported; vitjax loads timm's {TIMM}.")
    absent = [name for name in _SPEC_TENSORS if name not in tensors]
    if absent:
        raise BadValue(f"{path} describes a timm model, but its weights have no {absent[0]!r} (they hold "
                       f"{sorted(tensors)[:3]} ...): the config and the weights are of different models; put the "
                       "weights' own config.json beside them.")
    args = config.get("model_args", {})
    unsupported = {k: args[k] for k, default in UNSUPPORTED_ARGS.items() if args.get(k, default) != default}
    if unsupported:
        raise BadValue(f"{path}: timm model_args {unsupported} are not supported; vitjax loads timm's {TIMM}.")
    pool = config.get("global_pool", args.get("global_pool", "token"))
    if "attn_pool.latent" in tensors:
        pool = "map"
    if pool not in POOLS:
        raise BadValue(f"{path}: global_pool={pool!r} is not supported; vitjax pools with {sorted(POOLS)}.")
    kernel = tensors["patch_embed.proj.weight"]
    hidden, channels, patch = kernel.shape[0], kernel.shape[1], kernel.shape[2]
    size = args.get("img_size", config.get("pretrained_cfg", {}).get("input_size", [3, 224, 224])[1:])
    size = (size, size) if isinstance(size, int) else tuple(size)
    class_token = "cls_token" in tensors
    distillation = "dist_token" in tensors
    registers = tensors["reg_token"].shape[1] if "reg_token" in tensors else 0
    prefix = int(class_token) + int(distillation) + registers
    patches = (size[0] // patch) * (size[1] // patch)
    positions = tensors["pos_embed"].shape[1]
    if positions == patches + prefix:
        posemb_prefix = "all"
    elif positions == patches:
        posemb_prefix = "none"
    else:
        raise BadValue(f"{path}: pos_embed has {positions} positions, which fits neither {patches} patches of "
                       f"{size} nor those plus {prefix} prefix tokens; fix img_size in config.json.")
    act = args.get("act_layer") or ("quick_gelu" if "quickgelu" in architecture else "gelu")
    if act not in ACTIVATIONS:
        raise BadValue(f"{path}: act_layer={act!r} is not supported; use one of {sorted(ACTIVATIONS)}.")
    depth = len({name.split(".")[1] for name in tensors if name.startswith("blocks.")})
    return ViTSpec(
        family="timm",
        image_size=size,
        patch_size=patch,
        num_channels=channels,
        hidden_size=hidden,
        num_layers=depth,
        num_heads=_num_heads(architecture, args, path),
        mlp_dim=tensors["blocks.0.mlp.fc1.weight"].shape[0],
        layer_norm_eps=1e-5 if "clip" in architecture else 1e-6,
        qkv_bias="blocks.0.attn.qkv.bias" in tensors,
        hidden_act=ACTIVATIONS[act],
        distillation_token=distillation,
        layer_scale_init=1.0 if "blocks.0.ls1.gamma" in tensors else None,
        class_token=class_token,
        num_registers=registers,
        posemb_prefix=posemb_prefix if prefix else "all",
        posemb_interpolation="bicubic_aa",
        patch_bias="patch_embed.proj.bias" in tensors,
        pre_norm="norm_pre.weight" in tensors,
        final_norm="norm.weight" in tensors,
        pool=POOLS[pool],
        fc_norm="fc_norm.weight" in tensors,
    )


def preprocessing_from_cfg(cfg: dict) -> Preprocessing:
    """timm's eval transform for a `pretrained_cfg` (resize by 1/crop_pct, center crop, normalize)."""
    _, height, width = cfg.get("input_size", (3, 224, 224))
    crop_pct = cfg.get("crop_pct") or 0.875
    mode = cfg.get("crop_mode") or "center"
    scale = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    common = dict(crop=(height, width), resample=INTERPOLATIONS[cfg.get("interpolation", "bilinear")],
                  mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))), std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
                  processor_type="CLIPImageProcessor", crop_rounding="round")
    if mode == "squash":
        return Preprocessing(size=scale, **common)
    if mode != "center":
        raise BadValue(f"timm crop_mode={mode!r} is not supported; vitjax follows timm's 'center' and "
                       "'squash' eval transforms.")
    if scale[0] == scale[1]:
        return Preprocessing(size=None, shortest_edge=scale[0], **common)
    return Preprocessing(size=None, cover=scale, **common)


def read_timm(files: dict, config: dict, name) -> Source:
    """The `Source` of a timm checkpoint (files from `hf_load.resolve_files`)."""
    tensors = read_tensors(files[WEIGHTS])
    spec = spec_from_timm(config, tensors, files[CONFIG])
    head = "cls_distillation" if "head_dist.weight" in tensors else "pooled"
    has_head = "head.weight" in tensors
    labels = config.get("label_names")
    return Source(
        spec=spec, tensors=tensors, weights=", ".join(files[WEIGHTS]),
        backbone_rows=backbone_rows(spec),
        head_pooling=head if has_head else None,
        head_rows=[r.resolved() for r in HEAD_ROWS[head]] if has_head else [],
        labels=dict(enumerate(labels)) if labels else None,
        default_pooling=head,  # timm's distilled models always carry both heads
        preprocessing=preprocessing_from_cfg(config.get("pretrained_cfg", {})),
        architecture=f"timm {config['architecture']}",
        strict=True,
    )
