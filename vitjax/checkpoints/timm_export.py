"""Export to timm's format: `model.safetensors` with timm's names (`timm_names.py`, used backwards) and a
timm `config.json` (`architecture`, `model_args`, `pretrained_cfg`, `label_names`), which
`timm.create_model(architecture, pretrained=True, pretrained_cfg_overlay=dict(file=...), **model_args)`
loads and vitjax reads back. For the timm family and `.npz` weights, and any backbone timm's
`VisionTransformer` can express (a CLIP or SigLIP tower too); others get a message saying why not.
"""
from __future__ import annotations

import dataclasses
import math
import os

from flax.traverse_util import flatten_dict

from vitjax.checkpoints.convert import to_tensors
from vitjax.checkpoints.hf_export import write_folder
from vitjax.checkpoints.hf_load import CONFIG
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.checkpoints.timm_names import ACTIVATIONS, HEAD_ROWS, INTERPOLATIONS, POOLS, backbone_rows
from vitjax.errors import BadValue
from vitjax.models.vit import ViTSpec

_ACT_NAMES = {hf: timm for timm, hf in ACTIVATIONS.items()}
_POOL_NAMES = {ours: timm for timm, ours in POOLS.items()}
_FILTER_NAMES = {int(f): name for name, f in INTERPOLATIONS.items()}


def architecture(spec: ViTSpec) -> str:
    """A timm architecture whose fixed choices (norm eps, patch bias, token layout) match `spec`; the
    sizes all come from `model_args`."""
    problems = []
    if spec.posemb_prefix == "cls" and spec.num_registers:
        problems.append("register tokens without position embeddings after an embedded CLS (DINOv2 registers)")
    if spec.use_swiglu:
        problems.append("a SwiGLU MLP")
    if spec.final_norm and spec.fc_norm:
        problems.append("both a final norm over the tokens and an fc_norm (timm has one or the other)")
    if spec.patch_bias == spec.pre_norm:
        problems.append("patch bias and pre-norm together (timm ties them)")
    if spec.layer_norm_eps not in (1e-5, 1e-6) or spec.hidden_act not in _ACT_NAMES:
        problems.append(f"layer_norm_eps={spec.layer_norm_eps}, hidden_act={spec.hidden_act!r}")
    if problems:
        raise BadValue(f"a {spec.family} backbone with {'; '.join(problems)} has no timm VisionTransformer "
                       "equivalent; export it with save_pretrained (transformers) or in vitjax's format.")
    if spec.distillation_token:
        return "deit_base_distilled_patch16_224"
    return "vit_base_patch16_clip_224" if spec.layer_norm_eps == 1e-5 else "vit_base_patch16_224"


def model_args(spec: ViTSpec, num_classes: int) -> dict:
    args = dict(img_size=list(spec.image_size), patch_size=spec.patch_size, in_chans=spec.num_channels,
                embed_dim=spec.hidden_size, depth=spec.num_layers, num_heads=spec.num_heads,
                mlp_ratio=spec.mlp_dim / spec.hidden_size, qkv_bias=spec.qkv_bias, num_classes=num_classes,
                act_layer=_ACT_NAMES[spec.hidden_act], global_pool=_POOL_NAMES[spec.pool])
    if not spec.distillation_token:  # VisionTransformerDistilled fixes these
        args.update(class_token=spec.class_token, reg_tokens=spec.num_registers, pre_norm=spec.pre_norm,
                    no_embed_class=spec.posemb_prefix == "none" and spec.num_prefix_tokens > 0,
                    final_norm=spec.final_norm or spec.fc_norm, fc_norm=spec.fc_norm)
    if spec.layer_scale_init is not None:
        args["init_values"] = spec.layer_scale_init
    return args


def pretrained_cfg(preprocessing: Preprocessing, num_classes: int) -> dict:
    """timm's eval-transform settings that reproduce `preprocessing` (`timm_names.preprocessing_from_cfg`)."""
    p = preprocessing
    height, width = p.input_size
    if p.crop is None:
        crop_pct, mode = 1.0, "squash"
    else:
        edge, mode = ((p.shortest_edge, "center") if p.shortest_edge is not None
                      else (p.cover[0], "center") if p.cover is not None else (p.size[0], "squash"))
        crop_pct = height / edge
        if math.floor(height / crop_pct) != edge:  # keep timm's floor(size / crop_pct) on `edge`
            crop_pct = height / (edge + 1e-4)
    return {"input_size": [3, height, width],
            "interpolation": _FILTER_NAMES.get(int(p.resample), "bilinear"), "crop_pct": crop_pct,
            "crop_mode": mode, "mean": list(p.mean), "std": list(p.std), "num_classes": num_classes}


def timm_architecture(spec: ViTSpec, pooling: str) -> str:
    """The timm architecture of a classifier with a `pooling` head over `spec` (`architecture`); an
    error naming the pooling (config.task.pooling) when timm's class pools another way."""
    timm_head = "cls_distillation" if spec.distillation_token else "pooled"
    if pooling != timm_head:
        raise BadValue(f"timm's {'distilled ' if spec.distillation_token else ''}VisionTransformer classifies "
                       f"with a {timm_head!r} head; a {pooling!r} head has no timm equivalent "
                       f"(config.task.pooling={pooling!r}; set it to {timm_head!r}).")
    return architecture(spec)


def export_timm(directory: str | os.PathLike, spec: ViTSpec, params: dict, id2label: dict[int, str],
                preprocessing: Preprocessing, pooling: str) -> str:
    """Write `directory` in timm's format (atomically, as `hf_export.write_folder`). Returns the path."""
    arch = timm_architecture(spec, pooling)
    rows = [dataclasses.replace(r, flax="backbone/" + r.flax) for r in backbone_rows(spec)]
    rows += [dataclasses.replace(r.resolved(), flax="head/" + r.flax) for r in HEAD_ROWS[pooling]]
    tensors = to_tensors(rows, flatten_dict(params, sep="/"))
    labels = [str(v) for _, v in sorted((int(k), v) for k, v in id2label.items())]
    config = {"architecture": arch, "num_classes": len(labels), "num_features": spec.hidden_size,
              "global_pool": _POOL_NAMES[spec.pool], "model_args": model_args(spec, len(labels)),
              "pretrained_cfg": pretrained_cfg(preprocessing, len(labels)), "label_names": labels}
    return write_folder(directory, tensors, {CONFIG: config})
