"""CLIP vision towers: `clip_vision_model` (CLIPVisionModel), `clip` (CLIPModel: text tower and projection
ignored; CLIPForImageClassification).

The tower: a class token (`class_embedding` [D]), a patch convolution without bias, a layer norm before
the encoder (`pre_layrnorm`, sic), none after it; CLIPVisionModel's pooled output is the CLS token through
`post_layernorm` (here `fc_norm` on the pooled feature); quick-GELU. CLIPForImageClassification classifies
the mean of the patch tokens of the un-normed last hidden state (head pooling "mean").
"""
from __future__ import annotations

from vitjax.checkpoints.hf_names import CLASSIFIER, HFFamily, Row, norm
from vitjax.checkpoints.siglip import ENCODER_LAYER, tower_config, tower_spec
from vitjax.models.vit import ViTSpec

EMBEDDINGS = [
    Row("embeddings.class_embedding", "embeddings/cls_token", "token"),
    Row("embeddings.patch_embedding.weight", "embeddings/patch_embeddings/kernel", "conv"),
    Row("embeddings.position_embedding.weight", "embeddings/position_embeddings", "table"),
    *norm("pre_layrnorm", "pre_layernorm"),
]


def spec_from_config(config: dict) -> ViTSpec:
    """A `CLIPVisionConfig` dict -> spec."""
    return tower_spec(config, "clip", dict(patch_size=32, layer_norm_eps=1e-5, hidden_act="quick_gelu"),
                      patch_bias=False, pre_norm=True, final_norm=False, fc_norm=True)


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
    config_from_spec=lambda spec: {"model_type": "clip", "vision_config": tower_config(spec, "clip_vision_model")},
    vision_config_key="vision_config",
)
