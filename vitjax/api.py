"""The public API: `load_pretrained(...) -> Classifier` and the `Classifier` itself.

A `Classifier` is a view on a classification `vitjax.trained.TrainedModel` (a linen `Model`: ViT
backbone + classification head, its float32 params, the checkpoint's `Preprocessing`, the
architecture `spec`, the task over `id2label`). It predicts on PIL images or paths through the task
(`Task.predict`, as `--mode predict` and the service), gives logits for HF-layout pixels (so results
compare 1:1 with transformers) or uint8 images, and saves back to its family's format.
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
from vitjax.data.transforms import load_rgb
from vitjax.errors import BadValue
from vitjax.models.heads import DEFAULT_POOLING
from vitjax.models.model import Model, build_model
from vitjax.models.vit import ViTSpec
from vitjax.explain import Explanation
from vitjax.trained import TrainedModel, make_task, unique_stems


class Classifier:
    """A classification `TrainedModel` (`trained`) seen as a classifier of PIL images and of pixels in
    the Hugging Face layout; `model`, `params`, `preprocessing` and `spec` are the trained model's."""

    def __init__(self, trained: TrainedModel):
        self.trained = trained

    model = property(lambda self: self.trained.model)
    params = property(lambda self: self.trained.params)
    preprocessing = property(lambda self: self.trained.preprocessing)
    spec = property(lambda self: self.trained.spec)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.trained.task.class_names))

    @property
    def pooling(self) -> str:
        return self.model.head.pooling

    def replace(self, **changes) -> "Classifier":
        """The same classifier with some of the trained model's fields replaced (`params`, `model`)."""
        return Classifier(dataclasses.replace(self.trained, **changes))

    @classmethod
    def of(cls, model: Model, params: dict, preprocessing: Preprocessing, spec: ViTSpec,
           id2label: dict) -> "Classifier":
        """The classifier of `model` (a ViT + `ClassificationHead`) with `params` over `id2label` (one
        label: a sigmoid, as multi-label)."""
        config = {"name": "classification", "plugins": [], "pooling": model.head.pooling,
                  "multilabel": len(id2label) == 1}
        task = make_task(config, [str(id2label[i]) for i in sorted(int(k) for k in id2label)])
        return cls(TrainedModel(task, model, params, preprocessing, spec, config))

    @classmethod
    def from_scratch(cls, spec: ViTSpec, id2label: dict[int, str], preprocessing: Preprocessing | None = None,
                     seed: int = 0, dtype: str = "float32") -> "Classifier":
        """A randomly initialised classifier (truncated-normal embeddings, LeCun dense layers, zero head)."""
        preprocessing = preprocessing or Preprocessing.default(spec.image_size)
        id2label = {int(k): str(v) for k, v in id2label.items()}
        model = build_model(spec, len(id2label), DEFAULT_POOLING[spec.family], dtype)
        dummy = jnp.zeros((1, *spec.image_size, spec.num_channels), jnp.float32)
        params = jax.jit(functools.partial(model.init, train=False))(jax.random.PRNGKey(seed), dummy)["params"]
        return cls.of(model, jax.device_get(params), preprocessing, spec, id2label)

    def logits(self, pixel_values) -> np.ndarray:
        """Pixels -> numpy logits [B, labels]: floats as the processor's `pixel_values` [B, 3, H, W]
        (already rescaled and normalised); uint8 as raw images of the input size, [B, H, W, 3] (the
        layout every export takes) or [B, 3, H, W], which are rescaled and normalised here first."""
        raw = np.asarray(pixel_values) if not isinstance(pixel_values, jax.Array) else pixel_values
        channels, size = self.spec.num_channels, tuple(self.preprocessing.input_size)
        if raw.dtype == np.uint8 and raw.ndim == 4 and raw.shape[1:] == (*size, channels):
            images = jnp.asarray(raw)
        elif raw.ndim == 4 and raw.shape[1] == channels:
            images = jnp.asarray(raw).transpose(0, 2, 3, 1)
        else:
            raise BadValue(f"pixel_values must be [batch, {channels}, H, W] (HF layout), or uint8 "
                           f"[batch, {size[0]}, {size[1]}, {channels}]; got shape {tuple(raw.shape)}")
        if raw.dtype == np.uint8:
            images = self.preprocessing.normalize(images)
        elif not jnp.issubdtype(raw.dtype, jnp.floating):
            raise BadValue(f"pixel_values of dtype {raw.dtype}: pass the processor's float pixel_values, "
                           f"uint8 images, or PIL images to .predict().")
        return np.asarray(self.trained.jit_forward(self.params, images.astype(jnp.float32)))

    def predict(self, images: Image.Image | str | os.PathLike | Iterable, top_k: int | None = None,
                batch_size: int = 32) -> list[list[tuple[str, float]]]:
        """PIL images or paths -> per image, the top_k (label, probability) pairs, best first; `top_k`
        None: the task's default (`Task.default_top_k`, as `--mode predict` and the service)."""
        if isinstance(images, (Image.Image, str, os.PathLike)):
            images = [images]
        results = []
        images = list(images)
        for start in range(0, len(images), batch_size):
            chunk = [_as_image(im) for im in images[start:start + batch_size]]
            found = self.trained.predictions(chunk, top_k)
            results += [[(self.id2label[int(i)], float(p)) for i, p in zip(indices, probabilities)]
                        for indices, probabilities in zip(found["indices"], found["probabilities"])]
        return results

    def explain(self, images: Image.Image | str | os.PathLike | Iterable, outdir: str | os.PathLike | None = None,
                batch_size: int = 32) -> list[Explanation]:
        """PIL images or paths -> per image, what the classifier looks at for its top class: attention
        rollout and integrated gradients maps (`TrainedModel.explain`, `vitjax.explain`); with
        `outdir`, also `<stem>_explain.png` per image there (a path's file stem, else image_<i>)."""
        if isinstance(images, (Image.Image, str, os.PathLike)):
            images = [images]
        images = list(images)
        names = unique_stems([os.fspath(im) if isinstance(im, (str, os.PathLike)) else f"image_{i}"
                              for i, im in enumerate(images)])
        return self.trained.explain([_as_image(im) for im in images],
                                    None if outdir is None else os.fspath(outdir), names, batch_size)

    def save_pretrained(self, directory: str | os.PathLike) -> str:
        """Write the model in its family's format: a Hugging Face folder (config, safetensors, preprocessor)
        that transformers loads, or for timm / `.npz` weights a timm folder that timm loads."""
        return export_pretrained(directory, self.spec, self.params, self.id2label, self.preprocessing, self.pooling)


def _as_image(image: Image.Image | str | os.PathLike) -> Image.Image:
    """A PIL image as it is, a path read as RGB."""
    return load_rgb(os.fspath(image), os.fspath(image)) if isinstance(image, (str, os.PathLike)) else image


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
    return Classifier.of(model, ckpt.params, ckpt.preprocessing, ckpt.spec, ckpt.id2label)
