"""The public API: `load_pretrained(...) -> Classifier` and the `Classifier` itself.

A `Classifier` holds a linen `Model` (ViT backbone + classification head), its float32 params, the
checkpoint's `Preprocessing`, the architecture `spec` and `id2label`. It predicts on PIL images or paths,
gives logits for HF-layout pixels (so results compare 1:1 with transformers) and saves back to HF format.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from vitjax.checkpoints.families import export_pretrained, load_checkpoint
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.errors import BadValue
from vitjax.models.heads import DEFAULT_POOLING
from vitjax.models.model import Model, build_model
from vitjax.models.vit import ViTSpec


@dataclasses.dataclass
class Classifier:
    model: Model
    params: dict
    preprocessing: Preprocessing
    spec: ViTSpec
    id2label: dict[int, str]

    @property
    def pooling(self) -> str:
        return self.model.head.pooling

    @classmethod
    def from_scratch(cls, spec: ViTSpec, id2label: dict[int, str], preprocessing: Preprocessing | None = None,
                     seed: int = 0, dtype: str = "float32") -> "Classifier":
        """A randomly initialised classifier (truncated-normal embeddings, LeCun dense layers, zero head)."""
        preprocessing = preprocessing or Preprocessing.default(spec.image_size)
        id2label = {int(k): str(v) for k, v in id2label.items()}
        model = build_model(spec, len(id2label), DEFAULT_POOLING[spec.family], dtype)
        dummy = jnp.zeros((1, *spec.image_size, spec.num_channels), jnp.float32)
        params = jax.jit(functools.partial(model.init, train=False))(jax.random.PRNGKey(seed), dummy)["params"]
        return cls(model, jax.device_get(params), preprocessing, spec, id2label)

    @functools.cached_property
    def _forward(self):
        return jax.jit(lambda params, images: self.model.apply({"params": params}, images, train=False))

    def logits(self, pixel_values) -> np.ndarray:
        """HF-layout pixels [B, 3, H, W] -> numpy logits [B, labels].

        Floats are taken as the processor's `pixel_values` (already rescaled and normalised);
        uint8 arrays as raw images of the right size, which are rescaled and normalised here first.
        """
        raw = np.asarray(pixel_values) if not isinstance(pixel_values, jax.Array) else pixel_values
        if raw.ndim != 4 or raw.shape[1] != self.spec.num_channels:
            raise BadValue(f"pixel_values must be [batch, {self.spec.num_channels}, H, W] (HF layout), "
                           f"got shape {tuple(raw.shape)}")
        images = jnp.asarray(raw).transpose(0, 2, 3, 1)
        if raw.dtype == np.uint8:
            images = self.preprocessing.normalize(images)
        elif not jnp.issubdtype(raw.dtype, jnp.floating):
            raise BadValue(f"pixel_values of dtype {raw.dtype}: pass the processor's float pixel_values, "
                           f"uint8 images, or PIL images to .predict().")
        return np.asarray(self._forward(self.params, images.astype(jnp.float32)))

    def predict(self, images: Image.Image | str | os.PathLike | Iterable, top_k: int = 5,
                batch_size: int = 32) -> list[list[tuple[str, float]]]:
        """PIL images or paths -> per image, the top_k (label, probability) pairs, best first."""
        if isinstance(images, (Image.Image, str, os.PathLike)):
            images = [images]
        results = []
        images = list(images)
        for start in range(0, len(images), batch_size):
            chunk = [Image.open(im) if isinstance(im, (str, os.PathLike)) else im
                     for im in images[start:start + batch_size]]
            probs = jax.nn.softmax(jnp.asarray(self.logits(self.preprocessing(chunk))), axis=-1)
            probs = np.asarray(probs)
            for row in probs:
                order = np.argsort(-row, kind="stable")[:top_k]
                results.append([(self.id2label[int(i)], float(row[i])) for i in order])
        return results

    def save_pretrained(self, directory: str | os.PathLike) -> str:
        """Write the model in its family's format: a Hugging Face folder (config, safetensors, preprocessor)
        that transformers loads, or for timm / `.npz` weights a timm folder that timm loads."""
        return export_pretrained(directory, self.spec, self.params, self.id2label, self.preprocessing, self.pooling)


def load_pretrained(name_or_dir: str | os.PathLike, num_labels: int | None = None, id2label: dict | None = None,
                    image_size: int | tuple[int, int] | None = None, dtype: str = "float32",
                    **backbone_kwargs) -> Classifier:
    """Load a checkpoint as a `Classifier`: a transformers hub id or folder (ViT, DeiT, DINOv2 (+registers),
    SigLIP, CLIP), a timm hub id or folder, or a big_vision `.npz` (`vitjax.checkpoints.families`).

    num_labels / id2label: the label set. The checkpoint's head is kept when it has these labels, or
    `num_labels` of its size, or `id2label` of its size while its own labels are the generic
    LABEL_0, LABEL_1, ... (the labels are renamed, with a warning); otherwise a fresh (zero) head
    is made for them, with a warning naming its tensors.
    image_size: fine-tune resolution (position embeddings resized). dtype: compute dtype ("bfloat16" on
    accelerators); params stay float32. backbone_kwargs: `attention_impl`, `remat`.
    """
    ckpt = load_checkpoint(name_or_dir, num_labels=num_labels, id2label=id2label, image_size=image_size)
    model = build_model(ckpt.spec, len(ckpt.id2label), ckpt.pooling, dtype, **backbone_kwargs)
    return Classifier(model, ckpt.params, ckpt.preprocessing, ckpt.spec, ckpt.id2label)
