"""A trained model, loaded back in one call: `load_trained(folder) -> Predictor`.

`load_trained` reads either export of a finished run — `best/` (Hugging Face format, for tasks with a
transformers class) or `best_vitjax/` (vitjax's own format, `vitjax.checkpoints.native`) — into a
`Predictor`: the task, its backbone + head `Model`, float32 params and the preprocessing. A
`Predictor` turns images into the head's outputs (`outputs`) and writes what the task's predictions
look like on disk (`predict`, through `Task.write_predictions`). The evaluate and predict modes use
it; so can anything else that serves or converts a trained model.
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
from vitjax.models.model import Model
from vitjax.models.vit import ViT, ViTSpec

PREDICTIONS_FILE = "predictions.json"


@dataclasses.dataclass
class Predictor:
    """A trained task model: `outputs(images)` runs it, `predict(paths, outdir)` writes predictions."""

    task: registry.Task
    model: Model
    params: dict
    preprocessing: Preprocessing
    spec: ViTSpec

    @functools.cached_property
    def _whole_image(self) -> bool:
        """Tasks with their own record transforms (masks, boxes) see the whole image resized, as in
        their evaluation; the others see the checkpoint's resize and crop, as the pipeline does."""
        from vitjax.config import base_config

        return self.task.data_transforms(self.preprocessing, base_config().data) is not None

    def pixels(self, image: Image.Image) -> np.ndarray:
        """uint8 [H, W, 3] at the model's input size, prepared as evaluation prepares it."""
        if not self._whole_image:
            return self.preprocessing.to_uint8(image)
        view = paired.full_view(image.height, image.width)
        return paired.apply_to_image(image, view, self.preprocessing.input_size,
                                     self.preprocessing.resample)

    @functools.cached_property
    def _forward(self):
        def forward(params, pixels):
            images = self.preprocessing.normalize(pixels)
            return self.model.apply({"params": params}, images, train=False)

        return jax.jit(forward)

    def outputs(self, images: Sequence[Image.Image]):
        """The head's outputs (host numpy arrays) for RGB PIL images."""
        pixels = np.stack([self.pixels(image) for image in images])
        return jax.device_get(self._forward(self.params, pixels))

    def predict(self, paths: Sequence[str], outdir: str, batch_size: int = 32) -> list[dict]:
        """Runs every image of `paths`; the task writes its files under `outdir` and one record per
        image, gathered with the image's path into `outdir/predictions.json`, which is returned."""
        os.makedirs(outdir, exist_ok=True)
        names = unique_stems(paths)
        records = []
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start:start + batch_size])
            decoded = [_read_image(path) for path in chunk]
            good = [i for i, (image, _) in enumerate(decoded) if image is not None]
            images = [decoded[i][0] for i in good]
            written = dict(zip(good, self.task.write_predictions(
                self.outputs(images), images, [names[start + i] for i in good], outdir) if good else []))
            records += [{"file": path, **written[i]} if i in written else {"file": path, "error": decoded[i][1]}
                        for i, path in enumerate(chunk)]
        with open(os.path.join(outdir, PREDICTIONS_FILE), "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
        return records


def _read_image(path: str):
    """(the decoded RGB image, None), or (None, what went wrong, naming `path`)."""
    try:
        return load_rgb(path, path), None
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ... for bad files
        cause = e.__cause__ or e
        if isinstance(cause, Image.DecompressionBombError):
            return None, f"{path}: refused as a possible decompression bomb ({cause})"
        return None, f"{path}: cannot decode the image ({type(cause).__name__}: {cause})"


def unique_stems(paths: Sequence[str]) -> list[str]:
    """File stems of `paths`, a repeated stem suffixed with _2, _3, ... so output files never clash."""
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
