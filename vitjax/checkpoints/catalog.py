"""What vitjax loads, in one list the readers and the dispatcher share: the transformers families by
`model_type` (`HF_FAMILIES`, `MODEL_TYPES`), the timm and `.npz` layouts, and `supported()`, the
paragraph every "not supported" message ends with. It imports only the name tables, so any reader may
name every format without reaching up to the dispatcher (`families.py`).
"""
from __future__ import annotations

from vitjax.checkpoints import clip, hf_names, siglip
from vitjax.checkpoints.hf_names import HFFamily

HF_FAMILIES: dict[str, HFFamily] = {**hf_names.FAMILIES, "siglip": siglip.FAMILY, "clip": clip.FAMILY}
MODEL_TYPES = {model_type: family for family in HF_FAMILIES.values() for model_type in family.model_types}
TIMM = ("vit_* / deit_* / deit3_* VisionTransformer and deit_*_distilled_* (class token or not, registers, "
        "no_embed_class, layer scale, pre-norm, fc_norm, token/avg/map pooling; LayerNorm + GELU MLP)")
NPZ = "vision_transformer/AugReg layout: embedding, cls, Transformer/encoderblock_N, encoder_norm, head"


def supported() -> str:
    """A one-paragraph list of the loadable formats, for error messages."""
    return (f"transformers checkpoints with model_type in {sorted(MODEL_TYPES)}; timm checkpoints "
            f"(config.json with `architecture`) of {TIMM}; and big_vision/vision_transformer "
            f"`.npz` files ({NPZ})")
