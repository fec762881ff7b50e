"""`Model`: a backbone and a task head as one linen module, params `{"backbone": ..., "head": ...}`."""
from __future__ import annotations

import flax.linen as nn
import jax


class Model(nn.Module):
    """Runs `backbone(images, train=...)`, optionally stops gradients into it, then `head(features)`."""

    backbone: nn.Module
    head: nn.Module

    def __call__(self, images, *, train: bool, frozen_backbone: bool = False):
        features = self.backbone(images, train=train)
        if frozen_backbone:
            features = jax.lax.stop_gradient(features)
        return self.head(features)
