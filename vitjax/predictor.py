"""A trained model, loaded back in one call: `load_trained(folder) -> Predictor`.

`load_trained` reads either export of a finished run — `best/` (Hugging Face format, for tasks with a
transformers class) or `best_vitjax/` (vitjax's own format, `vitjax.checkpoints.native`) — into a
`Predictor`: the task, its backbone + head `Model`, float32 params and the preprocessing. A
`Predictor` turns images into the head's outputs (`outputs`) and predicts files (`predict`) through
the task's `predict` and `prediction_records` hooks, as the service and the deployed models do. The
evaluate and predict modes use it. `model_input` (how a task's image becomes the model's pixels) and
`unique_stems` are shared with the service (`vitjax.serve.app`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from PIL import Image

from vitjax import registry
from vitjax.checkpoints.model_folder import read_model_folder
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data import paired
from vitjax.data.transforms import load_rgb
from vitjax.deploy.servable import MAX_TOP_K
from vitjax.models.model import Model
from vitjax.models.vit import ViT, ViTSpec

PREDICTIONS_FILE = "predictions.json"


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """RGB PIL image -> uint8 [H, W, 3] at the model's input size, prepared as evaluation prepares it:
    tasks with their own record transforms (masks, boxes) see the whole image resized (`whole_image`),
    so a predicted mask or box maps back onto the whole image; the others see the checkpoint's resize
    and crop, as the classification pipeline does."""

    preprocessing: Preprocessing
    whole_image: bool

    def __call__(self, image: Image.Image) -> np.ndarray:
        if not self.whole_image:
            return self.preprocessing.to_uint8(image)
        view = paired.full_view(image.height, image.width)
        return paired.apply_to_image(image, view, self.preprocessing.input_size, self.preprocessing.resample)


def model_input(task: registry.Task, preprocessing: Preprocessing) -> ModelInput:
    """How `task`'s model sees an image: the whole image when the task has its own transforms."""
    from vitjax.config import base_config

    return ModelInput(preprocessing, task.data_transforms(preprocessing, base_config().data) is not None)


@dataclasses.dataclass
class Predictor:
    """A trained task model: `outputs(images)` runs it, `predict(paths, outdir)` predicts files."""

    task: registry.Task
    model: Model
    params: dict
    preprocessing: Preprocessing
    spec: ViTSpec

    @functools.cached_property
    def pixels(self) -> ModelInput:
        """uint8 [H, W, 3] at the model's input size of an RGB PIL image (`model_input`)."""
        return model_input(self.task, self.preprocessing)

    def _outputs(self, params, pixels):
        return self.model.apply({"params": params}, self.preprocessing.normalize(pixels), train=False)

    @functools.cached_property
    def _forward(self):
        return jax.jit(self._outputs)

    @functools.cached_property
    def _predict(self):
        return jax.jit(lambda params, pixels, top_k: self.task.predict(self._outputs(params, pixels), top_k),
                       static_argnums=2)

    def _batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([self.pixels(image) for image in images])

    def outputs(self, images: Sequence[Image.Image]):
        """The head's outputs (host numpy arrays) for RGB PIL images."""
        return jax.device_get(self._forward(self.params, self._batch(images)))

    def predict(self, paths: Sequence[str], outdir: str, top_k: int | None = None,
                batch_size: int = 32) -> list[dict]:
        """Predicts every image of `paths` with the task's `predict` and `prediction_records`, which
        writes the task's files under `outdir`; returns one record per image, {"file": path, ...the
        task's record} or {"file": path, "error": why it could not be read}, also written to
        `outdir/predictions.json`. `top_k`: the ranked entries per image; by default the task's
        `top_k` knob where it has one (classification's labels listed), else as many as a deployed
        model keeps (`MAX_TOP_K`: detections, ...)."""
        registry.require_prediction_hooks(self.task)
        top_k = top_k or self.task.config.get("top_k") or MAX_TOP_K
        os.makedirs(outdir, exist_ok=True)
        names = unique_stems(paths)
        records = []
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start:start + batch_size])
            decoded = [_read_image(path) for path in chunk]
            good = [i for i, (image, _) in enumerate(decoded) if image is not None]
            images = [decoded[i][0] for i in good]
            written = {}
            if good:
                predictions = jax.device_get(self._predict(self.params, self._batch(images), top_k))
                written = dict(zip(good, self.task.prediction_records(
                    predictions, images, [names[start + i] for i in good], outdir)))
            records += [{"file": path, **written[i]} if i in written else {"file": path, "error": decoded[i][1]}
                        for i, path in enumerate(chunk)]
        with open(os.path.join(outdir, PREDICTIONS_FILE), "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
        return records


def _read_image(path: str):
    """(the decoded RGB image, None), or (None, what went wrong, naming `path`)."""
    if not os.path.isfile(path):  # missing, or a FIFO or device, whose read would block
        return None, f"{path}: {'not a regular file' if os.path.exists(path) else 'no such file'}"
    try:
        return load_rgb(path, path), None
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ... for bad files
        cause = e.__cause__ or e
        if isinstance(cause, Image.DecompressionBombError):
            return None, f"{path}: refused as a possible decompression bomb ({cause})"
        return None, f"{path}: cannot decode the image ({type(cause).__name__}: {cause})"


def unique_stems(paths: Sequence[str]) -> list[str]:
    """File stems of `paths` (or of uploaded file names), a repeated stem suffixed with _2, _3, ...
    so output files never clash."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def load_trained(directory: str | os.PathLike,
                 task_config: ml_collections.ConfigDict | dict | None = None) -> Predictor:
    """A `Predictor` of an exported model folder (`checkpoints.model_folder`): `best_vitjax/` (vitjax's
    format) or `best/` (a classification model in its family's format: transformers' or timm's).
    `task_config`: the run's `config.task` (its knobs, e.g. `top_k`, `score_threshold`); by default the
    one saved in the folder (`best_vitjax/`) or the classification task that `best/` describes."""
    folder = read_model_folder(directory)
    config = dict(task_config or folder.task_config)
    spec, params, preprocessing = folder.spec, folder.params, folder.preprocessing
    registry.load_plugins(config.get("plugins") or ())
    task = registry.get_task(config.get("name"))(ml_collections.ConfigDict(config), folder.class_names)
    model = Model(ViT(spec), task.make_head(spec))
    return Predictor(task=task, model=model, params=params, preprocessing=preprocessing, spec=spec)
