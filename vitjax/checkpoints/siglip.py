"""SigLIP (and fixed-resolution SigLIP 2, which transformers saves as model_type "siglip") vision towers.

Reads `siglip_vision_model` (SiglipVisionModel), `siglip` (SiglipModel: the text tower is ignored;
SiglipForImageClassification) checkpoints. The tower has no class token, position embeddings over the
patches only, tanh-GELU and, with `vision_use_head`, a multi-head attention pooling head (`pool="map"`)
whose output is the backbone's "pooled" feature. SiglipForImageClassification classifies the mean of all
tokens (head pooling "mean"), which is also what a new head starts as, so exports load in transformers.
"""
from __future__ import annotations

from vitjax.checkpoints.hf_names import CLASSIFIER, HFFamily, Row, fused, linear, norm
from vitjax.errors import BadValue
from vitjax.models.vit import ViTSpec

_LAYER = "encoder.layers.{i}"
_FLAX = "encoder/layer_{i:02d}"

# The encoder layer shared with CLIP (both are `*EncoderLayer` with q/k/v/out_proj and layer_norm1/2).
ENCODER_LAYER = [
    *linear(f"{_LAYER}.self_attn.q_proj", f"{_FLAX}/attention/query"),
    *linear(f"{_LAYER}.self_attn.k_proj", f"{_FLAX}/attention/key"),
    *linear(f"{_LAYER}.self_attn.v_proj", f"{_FLAX}/attention/value"),
    *linear(f"{_LAYER}.self_attn.out_proj", f"{_FLAX}/attention/out"),
    *norm(f"{_LAYER}.layer_norm1", f"{_FLAX}/layernorm_before"),
    *norm(f"{_LAYER}.layer_norm2", f"{_FLAX}/layernorm_after"),
    *linear(f"{_LAYER}.mlp.fc1", f"{_FLAX}/mlp/fc1"),
    *linear(f"{_LAYER}.mlp.fc2", f"{_FLAX}/mlp/fc2"),
]

EMBEDDINGS = [
    Row("embeddings.patch_embedding.weight", "embeddings/patch_embeddings/kernel", "conv"),
    Row("embeddings.patch_embedding.bias", "embeddings/patch_embeddings/bias"),
    Row("embeddings.position_embedding.weight", "embeddings/position_embeddings", "table"),
]

MAP_HEAD = [
    Row("head.probe", "map_head/probe", condition="pool=map"),
    *fused("head.attention", ["map_head/query", "map_head/key", "map_head/value"], "pool=map",
           weight="in_proj_weight", bias="in_proj_bias"),
    *linear("head.attention.out_proj", "map_head/out", "pool=map"),
    *norm("head.layernorm", "map_head/layernorm", "pool=map"),
    *linear("head.mlp.fc1", "map_head/mlp/fc1", "pool=map"),
    *linear("head.mlp.fc2", "map_head/mlp/fc2", "pool=map"),
]


def tower_spec(config: dict, family: str, defaults: dict, **flags) -> ViTSpec:
    """A SigLIP / CLIP vision config dict (the same keys; `defaults` for absent ones) -> spec with `flags`."""
    get = lambda key: config.get(key, defaults.get(key))  # noqa: E731
    return ViTSpec(
        family=family,
        image_size=config.get("image_size", 224),
        patch_size=int(get("patch_size")),
        num_channels=int(config.get("num_channels", 3)),
        hidden_size=int(config.get("hidden_size", 768)),
        num_layers=int(config.get("num_hidden_layers", 12)),
        num_heads=int(config.get("num_attention_heads", 12)),
        mlp_dim=int(config.get("intermediate_size", 3072)),
        layer_norm_eps=float(get("layer_norm_eps")),
        hidden_act=get("hidden_act"),
        attention_dropout=float(config.get("attention_dropout", 0.0)),
        **flags,
    )


def tower_config(spec: ViTSpec, model_type: str) -> dict:
    """spec -> a SigLIP / CLIP vision config dict."""
    if spec.image_size[0] != spec.image_size[1]:
        raise BadValue(f"{model_type}'s config holds one image_size; {spec.image_size} is not square")
    return {
        "model_type": model_type,
        "image_size": spec.image_size[0],
        "patch_size": spec.patch_size,
        "num_channels": spec.num_channels,
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "intermediate_size": spec.mlp_dim,
        "layer_norm_eps": spec.layer_norm_eps,
        "hidden_act": spec.hidden_act,
        "attention_dropout": spec.attention_dropout,
    }


def spec_from_config(config: dict) -> ViTSpec:
    """A `SiglipVisionConfig` dict -> spec."""
    return tower_spec(config, "siglip", dict(patch_size=16, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh"),
                      class_token=False, pool="map" if config.get("vision_use_head", True) else "avg")


def vision_config(spec: ViTSpec) -> dict:
    """spec -> a `SiglipVisionConfig` dict."""
    return {**tower_config(spec, "siglip_vision_model"), "vision_use_head": spec.pool == "map"}


FAMILY = HFFamily(
    name="siglip",
    model_types=("siglip", "siglip_vision_model"),
    prefixes=("vision_model.", ""),
    embeddings=EMBEDDINGS,
    layer=ENCODER_LAYER,
    final=[*norm("post_layernorm", "layernorm"), *MAP_HEAD],
    heads={"mean": CLASSIFIER},
    architectures={"mean": "SiglipForImageClassification"},
    spec_from_config=spec_from_config,
    config_from_spec=lambda spec: {"model_type": "siglip", "vision_config": vision_config(spec)},
    vision_config_key="vision_config",
)
