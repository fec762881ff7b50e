"""`Model`: a backbone and a task head as one linen module, params `{"backbone": ..., "head": ...}`."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vitjax.models.heads import ClassificationHead
from vitjax.models.vit import ViT, ViTSpec


class Model(nn.Module):
    """Runs `backbone(images, train=...)`, optionally stops gradients into it, then `head(features)`."""

    backbone: nn.Module
    head: nn.Module

    def __call__(self, images, *, train: bool, frozen_backbone: bool = False):
        features = self.backbone(images, train=train)
        if frozen_backbone:
            features = jax.lax.stop_gradient(features)
        return self.head(features)


def build_model(spec: ViTSpec, num_labels: int, pooling: str = "cls", dtype="float32", **backbone_kwargs) -> Model:
    """The usual classifier: `ViT(spec)` + `ClassificationHead(num_labels, pooling)`, computing in `dtype`
    (`backbone_kwargs`: `attention_impl`, `remat`)."""
    dtype = jnp.dtype(dtype)
    return Model(ViT(spec, dtype=dtype, **backbone_kwargs), ClassificationHead(num_labels, pooling, dtype=dtype))


def param_shapes(model: nn.Module, spec: ViTSpec) -> dict:
    """The parameter tree of `model` (a backbone of `spec` with its head) as `jax.ShapeDtypeStruct`s:
    shapes and dtypes without initialising or compiling anything."""
    images = jax.ShapeDtypeStruct((1, *spec.image_size, spec.num_channels), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)["params"]
