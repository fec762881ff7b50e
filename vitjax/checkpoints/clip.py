"""CLIP vision towers: `clip_vision_model` (CLIPVisionModel), `clip` (CLIPModel: text tower and projection
ignored; CLIPForImageClassification).

The tower: a class token (`class_embedding` [D]), a patch convolution without bias, a layer norm before
the encoder (`pre_layrnorm`, sic), none after it; CLIPVisionModel's pooled output is the CLS token through
`post_layernorm` (here `fc_norm` on the pooled feature); quick-GELU. CLIPForImageClassification classifies
the mean of the patch tokens of the un-normed last hidden state (head pooling "mean").
"""
from __future__ import annotations

from vitjax.checkpoints.hf_names import CLASSIFIER, HFFamily, Row, norm
from vitjax.checkpoints.siglip import ENCODER_LAYER
from vitjax.models.vit import ViTSpec

EMBEDDINGS = [
    Row("embeddings.class_embedding", "embeddings/cls_token", "token"),
    Row("embeddings.patch_embedding.weight", "embeddings/patch_embeddings/kernel", "conv"),
    Row("embeddings.position_embedding.weight", "embeddings/position_embeddings", "table"),
    *norm("pre_layrnorm", "pre_layernorm"),
]


def spec_from_config(config: dict) -> ViTSpec:
    """A `CLIPVisionConfig` dict -> spec."""
    return ViTSpec(
        family="clip",
        image_size=config.get("image_size", 224),
        patch_size=int(config.get("patch_size", 32)),
        num_channels=int(config.get("num_channels", 3)),
        hidden_size=int(config.get("hidden_size", 768)),
        num_layers=int(config.get("num_hidden_layers", 12)),
        num_heads=int(config.get("num_attention_heads", 12)),
        mlp_dim=int(config.get("intermediate_size", 3072)),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-5)),
        hidden_act=config.get("hidden_act", "quick_gelu"),
        attention_dropout=float(config.get("attention_dropout", 0.0)),
        patch_bias=False,
        pre_norm=True,
        final_norm=False,
        fc_norm=True,
    )


def vision_config(spec: ViTSpec) -> dict:
    """spec -> a `CLIPVisionConfig` dict."""
    if spec.image_size[0] != spec.image_size[1]:
        raise ValueError(f"CLIP's config holds one image_size; {spec.image_size} is not square")
    return {
        "model_type": "clip_vision_model",
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


FAMILY = HFFamily(
    name="clip",
    model_types=("clip", "clip_vision_model"),
    prefixes=("vision_model.", ""),
    embeddings=EMBEDDINGS,
    layer=ENCODER_LAYER,
    final=norm("post_layernorm", "fc_norm"),
    heads={"mean": CLASSIFIER},
    architectures={"mean": "CLIPForImageClassification"},
    spec_from_config=spec_from_config,
    config_from_spec=lambda spec: {"model_type": "clip", "vision_config": vision_config(spec)},
    vision_config_key="vision_config",
)
