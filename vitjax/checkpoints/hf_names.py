"""The name tables between checkpoint tensor names and vitjax parameter paths, used both ways, and the
transformers ViT, DeiT, DINOv2 and DINOv2-with-registers families.

Names are those *saved* in `model.safetensors` (not the in-memory torch module names, which differ in
transformers 5). In a `*ForImageClassification` checkpoint the backbone names carry the family prefix
(`vit.`, `deit.`, `dinov2.`); in a base-model checkpoint (`ViTModel`, ...) they do not.

Each row is (checkpoint name, Flax path, kind, condition, part). `{i}` is the layer index in checkpoint
names and `{i:02d}` in Flax paths. `kind` says how the tensor changes layout (all transposes live in
`KINDS`); `condition` names a `ViTSpec` flag the row depends on ("!flag" for its negation, "attr=value");
`part` = (k, n) takes the k-th of n equal slices along axis 0 of a fused tensor (timm's qkv, torch's
`in_proj_weight`). A family (`HFFamily`) is its rows, heads and config conversion; other families live in
their own modules (`siglip.py`, `clip.py`, `timm_names.py`, `npz.py`).
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
    "token": Kind(lambda t: t.reshape(1, 1, -1), lambda t: t.reshape(-1)),  # CLIP class_embedding [D]
    "table": Kind(lambda t: t[None], lambda t: t[0]),  # an nn.Embedding weight [N, D] <-> [1, N, D]
}


@dataclasses.dataclass(frozen=True)
class Row:
    hf: str
    flax: str
    kind: str | Kind = "same"  # a name in KINDS, or a format's own Kind
    condition: str | None = None
    part: tuple[int, int] | None = None

    def applies(self, spec: ViTSpec) -> bool:
        if self.condition is None:
            return True
        if "=" in self.condition:
            attr, value = self.condition.split("=")
            return str(getattr(spec, attr)) == value
        negate = self.condition.startswith("!")
        value = bool(getattr(spec, self.condition.lstrip("!")))
        return value != negate

    def resolved(self, prefix: str = "", i: int | None = None) -> "Row":
        hf, flax = (self.hf, self.flax) if i is None else (self.hf.format(i=i), self.flax.format(i=i))
        return dataclasses.replace(self, hf=prefix + hf, flax=flax, condition=None)


def linear(hf: str, flax: str, condition: str | None = None, bias_condition: str | None = None) -> list[Row]:
    return [Row(f"{hf}.weight", f"{flax}/kernel", "linear", condition),
            Row(f"{hf}.bias", f"{flax}/bias", "same", bias_condition or condition)]


def norm(hf: str, flax: str, condition: str | None = None) -> list[Row]:
    return [Row(f"{hf}.weight", f"{flax}/scale", condition=condition),
            Row(f"{hf}.bias", f"{flax}/bias", condition=condition)]


def fused(hf: str, flax_names: list[str], condition: str | None = None,
          bias_condition: str | None = None, weight: str = "weight", bias: str = "bias") -> list[Row]:
    """Rows splitting one fused torch Linear (`{hf}.{weight}` [n*D, D]) into n Dense layers."""
    n = len(flax_names)
    return ([Row(f"{hf}.{weight}", f"{f}/kernel", "linear", condition, (k, n)) for k, f in enumerate(flax_names)]
            + [Row(f"{hf}.{bias}", f"{f}/bias", "same", bias_condition or condition, (k, n))
               for k, f in enumerate(flax_names)])


@dataclasses.dataclass(frozen=True)
class HFFamily:
    """One transformers model family: its `config.json` model types, names and classification classes."""

    name: str  # ViTSpec.family
    model_types: tuple[str, ...]  # config.json model_type values read as this family
    prefixes: tuple[str, ...]  # backbone name prefixes, tried in order ("" = a base-model checkpoint)
    embeddings: list[Row]
    layer: list[Row]
    final: list[Row]
    heads: dict[str, list[Row]]  # pooling -> classifier rows (no prefix)
    architectures: dict[str, str]  # pooling -> the transformers class exported for it
    spec_from_config: Callable[[dict], ViTSpec]  # the (vision) config dict -> spec
    config_from_spec: Callable[[ViTSpec], dict]  # spec -> config.json architecture part (no labels)
    vision_config_key: str | None = None  # composite configs (CLIP, SigLIP) nest the vision tower here

    def backbone_rows(self, spec: ViTSpec, prefix: str = "") -> list[Row]:
        rows = [r.resolved(prefix) for r in self.embeddings if r.applies(spec)]
        for i in range(spec.num_layers):
            rows += [r.resolved(prefix, i) for r in self.layer if r.applies(spec)]
        return rows + [r.resolved(prefix) for r in self.final if r.applies(spec)]

    def head_rows(self, pooling: str) -> list[Row]:
        return [r.resolved() for r in self.heads[pooling]]


EMBEDDINGS = [
    Row("embeddings.cls_token", "embeddings/cls_token"),
    Row("embeddings.distillation_token", "embeddings/distillation_token", condition="distillation_token"),
    Row("embeddings.register_tokens", "embeddings/register_tokens", condition="num_registers"),
    Row("embeddings.mask_token", "embeddings/mask_token", condition="use_mask_token"),
    Row("embeddings.position_embeddings", "embeddings/position_embeddings"),
    Row("embeddings.patch_embeddings.projection.weight", "embeddings/patch_embeddings/kernel", "conv"),
    Row("embeddings.patch_embeddings.projection.bias", "embeddings/patch_embeddings/bias"),
]

_LAYER = "encoder.layer.{i}"
_FLAX_LAYER = "encoder/layer_{i:02d}"

ATTENTION = [
    *linear(f"{_LAYER}.attention.attention.query", f"{_FLAX_LAYER}/attention/query", bias_condition="qkv_bias"),
    *linear(f"{_LAYER}.attention.attention.key", f"{_FLAX_LAYER}/attention/key", bias_condition="qkv_bias"),
    *linear(f"{_LAYER}.attention.attention.value", f"{_FLAX_LAYER}/attention/value", bias_condition="qkv_bias"),
    *linear(f"{_LAYER}.attention.output.dense", f"{_FLAX_LAYER}/attention/out"),
]

VIT_LAYER = ATTENTION + [
    *norm(f"{_LAYER}.layernorm_before", f"{_FLAX_LAYER}/layernorm_before"),
    *norm(f"{_LAYER}.layernorm_after", f"{_FLAX_LAYER}/layernorm_after"),
    *linear(f"{_LAYER}.intermediate.dense", f"{_FLAX_LAYER}/mlp/fc1"),
    *linear(f"{_LAYER}.output.dense", f"{_FLAX_LAYER}/mlp/fc2"),
]

DINOV2_LAYER = ATTENTION + [
    *norm(f"{_LAYER}.norm1", f"{_FLAX_LAYER}/layernorm_before"),
    *norm(f"{_LAYER}.norm2", f"{_FLAX_LAYER}/layernorm_after"),
    Row(f"{_LAYER}.layer_scale1.lambda1", f"{_FLAX_LAYER}/layer_scale1"),
    Row(f"{_LAYER}.layer_scale2.lambda1", f"{_FLAX_LAYER}/layer_scale2"),
    *linear(f"{_LAYER}.mlp.fc1", f"{_FLAX_LAYER}/mlp/fc1", condition="!use_swiglu"),
    *linear(f"{_LAYER}.mlp.fc2", f"{_FLAX_LAYER}/mlp/fc2", condition="!use_swiglu"),
    *linear(f"{_LAYER}.mlp.weights_in", f"{_FLAX_LAYER}/mlp/weights_in", condition="use_swiglu"),
    *linear(f"{_LAYER}.mlp.weights_out", f"{_FLAX_LAYER}/mlp/weights_out", condition="use_swiglu"),
]

FINAL = norm("layernorm", "layernorm")
CLASSIFIER = linear("classifier", "classifier")


def _dinov2_registers_spec(config: dict) -> ViTSpec:
    """DINOv2 with registers: DINOv2 plus register tokens without position embeddings, and an
    antialiased bicubic posemb resize (transformers' Dinov2WithRegistersEmbeddings)."""
    spec = ViTSpec.from_hf_config({**config, "model_type": "dinov2", "use_mask_token": True})
    return spec.replace(family="dinov2_with_registers", num_registers=int(config.get("num_register_tokens", 4)),
                        posemb_prefix="cls", posemb_interpolation="bicubic_aa")


def _dinov2_registers_config(spec: ViTSpec) -> dict:
    config = spec.replace(family="dinov2", num_registers=0, posemb_prefix="all",
                          posemb_interpolation="bicubic").to_hf_config()
    config.pop("use_mask_token")
    return {**config, "model_type": "dinov2_with_registers", "num_register_tokens": spec.num_registers}


def _vit_family(name: str, layer: list[Row], heads: dict[str, list[Row]], architectures: dict[str, str]) -> HFFamily:
    return HFFamily(name, (name,), (f"{name}.", ""), EMBEDDINGS, layer, FINAL, heads, architectures,
                    ViTSpec.from_hf_config, ViTSpec.to_hf_config)


FAMILIES = {
    "vit": _vit_family("vit", VIT_LAYER, {"cls": CLASSIFIER}, {"cls": "ViTForImageClassification"}),
    "deit": _vit_family(
        "deit", VIT_LAYER,
        {"cls": CLASSIFIER,
         "cls_distillation": linear("cls_classifier", "classifier") + linear("distillation_classifier",
                                                                            "distillation_classifier")},
        {"cls": "DeiTForImageClassification", "cls_distillation": "DeiTForImageClassificationWithTeacher"}),
    "dinov2": _vit_family("dinov2", DINOV2_LAYER, {"cls_mean": CLASSIFIER},
                          {"cls_mean": "Dinov2ForImageClassification"}),
    "dinov2_with_registers": HFFamily(
        "dinov2_with_registers", ("dinov2_with_registers",), ("dinov2_with_registers.", ""), EMBEDDINGS,
        DINOV2_LAYER, FINAL, {"cls_mean": CLASSIFIER},
        {"cls_mean": "Dinov2WithRegistersForImageClassification"}, _dinov2_registers_spec, _dinov2_registers_config),
}
