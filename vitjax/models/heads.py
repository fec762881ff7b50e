"""Classification heads over the backbone's feature dict, named so HF classifier tensors map onto them.

Pooling modes (one per HF classification architecture):
  * "cls":              Dense on the CLS token (ViTForImageClassification, DeiTForImageClassification).
  * "cls_distillation": mean of a CLS head and a distillation-token head
                        (DeiTForImageClassificationWithTeacher at inference).
  * "cls_mean":         Dense on concat(CLS, mean of patch tokens) (Dinov2ForImageClassification).
  * "mean":             Dense on the mean of the patch tokens (SiglipForImageClassification,
                        CLIPForImageClassification).
  * "pooled":           Dense on the backbone's pooled feature (`ViTSpec.pool`: timm's head, SigLIP's
                        attention pooling).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vitjax.errors import BadValue

POOLINGS = ("cls", "cls_distillation", "cls_mean", "mean", "pooled")
# The head each backbone family's own classifier uses, and so the one a new label set gets.
DEFAULT_POOLING = {"vit": "cls", "deit": "cls", "dinov2": "cls_mean", "dinov2_with_registers": "cls_mean",
                   "siglip": "mean", "clip": "mean", "timm": "pooled"}


class ClassificationHead(nn.Module):
    """`__call__(features: dict) -> logits [B, num_labels]` (float32, whatever the compute dtype)."""

    num_labels: int
    pooling: str = "cls"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: dict):
        if self.pooling not in POOLINGS:
            raise BadValue(f"ClassificationHead.pooling={self.pooling!r}; use one of {POOLINGS}")
        dense = lambda name: nn.Dense(self.num_labels, dtype=self.dtype, param_dtype=jnp.float32,
                                      kernel_init=nn.initializers.zeros, name=name)
        if self.pooling in ("cls", "cls_mean", "cls_distillation") and "cls" not in features:
            raise BadValue(f"pooling={self.pooling!r} needs a class token; this backbone has none: use "
                           "'mean' or 'pooled'")
        if self.pooling == "cls":
            logits = dense("classifier")(features["cls"])
        elif self.pooling == "pooled":
            logits = dense("classifier")(features["pooled"])
        elif self.pooling == "cls_distillation":
            if "distillation" not in features:
                raise BadValue("pooling='cls_distillation' needs a backbone with a distillation token (DeiT)")
            logits = (dense("classifier")(features["cls"])
                      + dense("distillation_classifier")(features["distillation"])) / 2
        else:
            patches = features["patches"]
            mean = patches.reshape(patches.shape[0], -1, patches.shape[-1]).mean(axis=1)
            pooled = mean if self.pooling == "mean" else jnp.concatenate([features["cls"], mean], axis=-1)
            logits = dense("classifier")(pooled)
        return logits.astype(jnp.float32)
