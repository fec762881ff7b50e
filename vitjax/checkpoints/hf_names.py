"""The one table between Hugging Face safetensors names and vitjax parameter paths, used both ways.

Names are those *saved* in `model.safetensors` (not the in-memory torch module names, which differ in
transformers 5). In a `*ForImageClassification` checkpoint the backbone names carry the family prefix
(`vit.`, `deit.`, `dinov2.`); in a base-model checkpoint (`ViTModel`, ...) they do not.

Each row is (HF name, Flax path, kind, condition). `{i}` is the layer index in HF names and `{i:02d}` in
Flax paths. `kind` says how the tensor changes layout (all transposes live in `KINDS`); `condition` names a
`ViTSpec` flag the row depends on ("!flag" for its negation). Adding a family = its rows + its flags.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from vitjax.models.vit import ViTSpec


@dataclasses.dataclass(frozen=True)
class Kind:
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]


KINDS = {
    "same": Kind(lambda x: x, lambda x: x),
    "linear": Kind(lambda w: w.T, lambda k: k.T),  # torch Linear [out, in] <-> Dense kernel [in, out]
    "conv": Kind(lambda w: w.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1)),  # OIHW <-> HWIO
}


@dataclasses.dataclass(frozen=True)
class Row:
    hf: str
    flax: str
    kind: str = "same"
    condition: str | None = None

    def applies(self, spec: ViTSpec) -> bool:
        if self.condition is None:
            return True
        negate = self.condition.startswith("!")
        value = bool(getattr(spec, self.condition.lstrip("!")))
        return value != negate


def _linear(hf: str, flax: str, condition: str | None = None, bias_condition: str | None = None) -> list[Row]:
    return [Row(f"{hf}.weight", f"{flax}/kernel", "linear", condition),
            Row(f"{hf}.bias", f"{flax}/bias", "same", bias_condition or condition)]


def _norm(hf: str, flax: str) -> list[Row]:
    return [Row(f"{hf}.weight", f"{flax}/scale"), Row(f"{hf}.bias", f"{flax}/bias")]


EMBEDDINGS = [
    Row("embeddings.cls_token", "embeddings/cls_token"),
    Row("embeddings.distillation_token", "embeddings/distillation_token", condition="distillation_token"),
    Row("embeddings.mask_token", "embeddings/mask_token", condition="use_mask_token"),
    Row("embeddings.position_embeddings", "embeddings/position_embeddings"),
    Row("embeddings.patch_embeddings.projection.weight", "embeddings/patch_embeddings/kernel", "conv"),
    Row("embeddings.patch_embeddings.projection.bias", "embeddings/patch_embeddings/bias"),
]

_LAYER = "encoder.layer.{i}"
_FLAX_LAYER = "encoder/layer_{i:02d}"

ATTENTION = [
    *_linear(f"{_LAYER}.attention.attention.query", f"{_FLAX_LAYER}/attention/query", bias_condition="qkv_bias"),
    *_linear(f"{_LAYER}.attention.attention.key", f"{_FLAX_LAYER}/attention/key", bias_condition="qkv_bias"),
    *_linear(f"{_LAYER}.attention.attention.value", f"{_FLAX_LAYER}/attention/value", bias_condition="qkv_bias"),
    *_linear(f"{_LAYER}.attention.output.dense", f"{_FLAX_LAYER}/attention/out"),
]

VIT_LAYER = ATTENTION + [
    *_norm(f"{_LAYER}.layernorm_before", f"{_FLAX_LAYER}/layernorm_before"),
    *_norm(f"{_LAYER}.layernorm_after", f"{_FLAX_LAYER}/layernorm_after"),
    *_linear(f"{_LAYER}.intermediate.dense", f"{_FLAX_LAYER}/mlp/fc1"),
    *_linear(f"{_LAYER}.output.dense", f"{_FLAX_LAYER}/mlp/fc2"),
]

DINOV2_LAYER = ATTENTION + [
    *_norm(f"{_LAYER}.norm1", f"{_FLAX_LAYER}/layernorm_before"),
    *_norm(f"{_LAYER}.norm2", f"{_FLAX_LAYER}/layernorm_after"),
    Row(f"{_LAYER}.layer_scale1.lambda1", f"{_FLAX_LAYER}/layer_scale1"),
    Row(f"{_LAYER}.layer_scale2.lambda1", f"{_FLAX_LAYER}/layer_scale2"),
    *_linear(f"{_LAYER}.mlp.fc1", f"{_FLAX_LAYER}/mlp/fc1", condition="!use_swiglu"),
    *_linear(f"{_LAYER}.mlp.fc2", f"{_FLAX_LAYER}/mlp/fc2", condition="!use_swiglu"),
    *_linear(f"{_LAYER}.mlp.weights_in", f"{_FLAX_LAYER}/mlp/weights_in", condition="use_swiglu"),
    *_linear(f"{_LAYER}.mlp.weights_out", f"{_FLAX_LAYER}/mlp/weights_out", condition="use_swiglu"),
]

FINAL = _norm("layernorm", "layernorm")

# family -> (HF prefix inside classification checkpoints, per-layer rows)
BACKBONES = {
    "vit": ("vit.", VIT_LAYER),
    "deit": ("deit.", VIT_LAYER),
    "dinov2": ("dinov2.", DINOV2_LAYER),
}

# head pooling -> rows (HF classifier names have no prefix)
HEADS = {
    "cls": _linear("classifier", "classifier"),
    "cls_mean": _linear("classifier", "classifier"),
    "cls_distillation": _linear("cls_classifier", "classifier") + _linear("distillation_classifier",
                                                                         "distillation_classifier"),
}

# (family, pooling) -> transformers class written to config.json `architectures`
ARCHITECTURES = {
    ("vit", "cls"): "ViTForImageClassification",
    ("deit", "cls"): "DeiTForImageClassification",
    ("deit", "cls_distillation"): "DeiTForImageClassificationWithTeacher",
    ("dinov2", "cls_mean"): "Dinov2ForImageClassification",
}

# The head a family gets when a new one is initialised (DeiT fine-tunes without a teacher).
DEFAULT_POOLING = {"vit": "cls", "deit": "cls", "dinov2": "cls_mean"}


def backbone_rows(spec: ViTSpec, hf_prefix: str = "") -> list[tuple[str, str, str]]:
    """(HF name, Flax path relative to the backbone, kind) for every backbone tensor of `spec`."""
    _, layer_rows = BACKBONES[spec.family]
    rows = [(hf_prefix + r.hf, r.flax, r.kind) for r in EMBEDDINGS if r.applies(spec)]
    for i in range(spec.num_layers):
        rows += [(hf_prefix + r.hf.format(i=i), r.flax.format(i=i), r.kind) for r in layer_rows if r.applies(spec)]
    rows += [(hf_prefix + r.hf, r.flax, r.kind) for r in FINAL]
    return rows


def head_rows(pooling: str) -> list[tuple[str, str, str]]:
    """(HF name, Flax path relative to the head, kind) for the classifier tensors of `pooling`."""
    return [(r.hf, r.flax, r.kind) for r in HEADS[pooling]]


def checkpoint_pooling(family: str, names) -> str | None:
    """The head pooling a checkpoint's tensors carry, or None for a backbone-only checkpoint."""
    names = set(names)
    for (fam, pooling), _ in ARCHITECTURES.items():
        if fam == family and all(hf in names for hf, _, _ in head_rows(pooling)):
            return pooling
    return None
