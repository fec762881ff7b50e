"""One trained model: `load_trained(folder) -> TrainedModel`, what every consumer of a trained model uses.

A `TrainedModel` is the architecture `spec`, the checkpoint's `Preprocessing`, the task plugin, the
backbone + head `Model` and its float32 params, read once from a run's export — `best/` (its family's
format: transformers' or timm's) or `best_vitjax/` (vitjax's own, `vitjax.checkpoints.native`) — or
from a workdir holding one. `apply` (uint8 images [B, H, W, 3] -> the task's prediction arrays,
`Task.predict`) is the one serving function: `--mode predict` runs it jitted, the HTTP service
(`vitjax.serve`) and every deployable export (`vitjax.deploy`: ONNX, int8, StableHLO) trace it;
evaluate and robustness run `model` on its params; `vitjax.load_pretrained`'s `Classifier` is a view
on one. `model_input` (how a task's image becomes the model's pixels), `unique_stems` and
`resolve_top_k` are shared with the service, which may run an export without the weights here.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable, NamedTuple

import jax
import ml_collections
import numpy as np
from PIL import Image

from vitjax import explain as explaining
from vitjax import registry, storage
from vitjax.checkpoints.families import family_class_problem
from vitjax.checkpoints.model_folder import read_model_folder
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data import paired
from vitjax.data.transforms import load_rgb
from vitjax.errors import BadKey, BadValue
from vitjax.models.heads import ClassificationHead
from vitjax.models.model import Model
from vitjax.models.vit import ViT, ViTSpec
from vitjax.workdir import Workdir

PREDICTIONS_FILE = "predictions.json"
INPUT_NAME = "images"  # the serving function's input in every artifact: uint8 [batch, H, W, 3]


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """RGB PIL image -> uint8 [H, W, 3] at the model's input size, prepared as evaluation prepares it:
    the checkpoint's resize and crop for records the pipeline decodes (`RecordTransforms.decode_cache`);
    else the whole image resized (`whole_image`), so a predicted mask or box maps back onto it."""

    preprocessing: Preprocessing
    whole_image: bool

    def __call__(self, image: Image.Image) -> np.ndarray:
        if not self.whole_image:
            return self.preprocessing.to_uint8(image)
        view = paired.full_view(image.height, image.width)
        return paired.apply_to_image(image, view, self.preprocessing.input_size, self.preprocessing.resample)


def model_input(task: registry.Task, preprocessing: Preprocessing) -> ModelInput:
    """How `task`'s model sees an image (`ModelInput`), as its record transforms declare."""
    from vitjax.config import base_config

    return ModelInput(preprocessing, not task.data_transforms(preprocessing, base_config().data).decode_cache)


def make_task(task_config: Mapping, class_names: Sequence[str], source: str | None = None) -> registry.Task:
    """The task plugin instance a model was trained with: `task_config` is `config.task` as trained
    (name, plugins, the task's knobs), its plugins imported first. A knob the task does not know is an
    error naming it (and `source`, the folder it came from)."""
    config = dict(task_config)
    registry.load_plugins(config.get("plugins") or ())
    try:
        return registry.get_task(config.get("name"))(ml_collections.ConfigDict(config), class_names)
    except BadKey as error:
        if source is None:
            raise
        raise BadKey(f"{source}: {error}") from None


def resolve_top_k(task: registry.Task, top_k: int | None, maximum: int = registry.MAX_TOP_K) -> int:
    """The ranked entries (classes, detections) a prediction lists: `top_k` as asked, checked, or the
    task's default (`Task.default_top_k`) when None."""
    if top_k is None:
        return min(task.default_top_k, maximum)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= maximum:
        raise BadValue(f"top_k={top_k!r}: the ranked entries per image must be an integer from 1 to "
                       f"{maximum}; leave it out for the task's default ({min(task.default_top_k, maximum)}).")
    return int(top_k)


@dataclasses.dataclass(eq=False)
class TrainedModel:
    """A trained task model: `apply`/`serving_fn` run it on uint8 images, `outputs` gives the head's
    outputs of PIL images, `predict(paths, outdir)` predicts files as `--mode predict` does."""

    task: registry.Task
    model: Model
    params: dict
    preprocessing: Preprocessing
    spec: ViTSpec
    task_config: dict  # config.task as trained: name, plugins and the task's knobs

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.preprocessing.input_size, self.spec.num_channels)

    @functools.cached_property
    def pixels(self) -> ModelInput:
        """uint8 [H, W, 3] at the model's input size of an RGB PIL image (`model_input`)."""
        return model_input(self.task, self.preprocessing)

    def forward(self, params, images):
        """Normalised float images [B, H, W, C] -> the head's outputs."""
        return self.model.apply({"params": params}, images, train=False)

    def apply(self, params, images, top_k: int = registry.MAX_TOP_K) -> dict:
        """uint8 [B, H, W, 3] -> the task's prediction arrays (`Task.predict`): the serving function."""
        return self.task.predict(self.forward(params, self.preprocessing.normalize(images)), top_k)

    def serving_fn(self) -> Callable[[Any], dict]:
        """The weights closed over: uint8 images -> {output name: array}; what the exports trace."""
        return functools.partial(self.apply, self.params)

    @functools.cached_property
    def jit_forward(self):
        return jax.jit(self.forward)

    @functools.cached_property
    def _jit_apply(self):
        return jax.jit(self.apply, static_argnums=2)

    def _batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([self.pixels(image) for image in images])

    def outputs(self, images: Sequence[Image.Image]):
        """The head's outputs (host numpy arrays) for RGB PIL images."""
        pixels = self.preprocessing.normalize(self._batch(images))
        return jax.device_get(self.jit_forward(self.params, pixels))

    def predictions(self, images: Sequence[Image.Image], top_k: int | None = None) -> dict:
        """The task's prediction arrays (host numpy) for RGB PIL images; `top_k` as `resolve_top_k`."""
        top_k = resolve_top_k(self.task, top_k)
        return jax.device_get(self._jit_apply(self.params, self._batch(images), top_k))

    @functools.cached_property
    def _jit_explain(self):
        return jax.jit(functools.partial(explaining.maps, self.model, self.spec))

    def explain(self, images: Sequence[Image.Image], outdir: str | None = None,
                names: Sequence[str] | None = None, batch_size: int = 32) -> list[explaining.Explanation]:
        """What the model looks at in RGB PIL images: per image, the attention rollout and integrated
        gradients maps of the evidence for its top class (`vitjax.explain`); with `outdir`, each also
        drawn to `<outdir>/<name>_explain.png` (`names`: a unique file stem per image, by default
        image_0, image_1, ...), which its `file` names. A task without class logits
        (`Task.class_logits`) is refused, naming the tasks that have them."""
        explaining.require_class_logits(self.task)
        found = []
        for start in range(0, len(images), batch_size):
            pixels = self._batch(images[start:start + batch_size])
            black = self.preprocessing.normalize(np.zeros((1, *pixels.shape[1:]), np.uint8))
            maps = jax.device_get(self._jit_explain(self.params, self.preprocessing.normalize(pixels), black))
            found += [explaining.Explanation(image, int(top), self.task.class_names[int(top)],
                                             {key: maps[key][i] for key in explaining.METHODS},
                                             self.spec.patch_size)
                      for i, (image, top) in enumerate(zip(pixels, maps["class"]))]
        if outdir is None:
            return found
        os.makedirs(outdir, exist_ok=True)
        names = names if names is not None else [f"image_{i}" for i in range(len(images))]
        return [explaining.write_overlay(explanation, os.path.join(outdir, f"{name}{explaining.SUFFIX}"))
                for explanation, name in zip(found, names)]

    def predict(self, paths: Sequence[str], outdir: str, top_k: int | None = None,
                batch_size: int = 32, explain: bool = False) -> list[dict]:
        """Predicts every image of `paths` with the task's `predict` and `prediction_records`, which
        writes the task's files under `outdir`; returns one record per image, {"file": path, ...the
        task's record} or {"file": path, "error": why it could not be read}, also written to
        `outdir/predictions.json`. `top_k`: the ranked entries per image, by default the task's
        (`Task.default_top_k`, as the service's). `explain`: also write `<name>_explain.png` per
        image (`explain`), named by the record's "explanation". On object storage the files are
        uploaded at the end."""
        registry.require_prediction_hooks(self.task)
        if explain:
            explaining.require_class_logits(self.task)
        top_k = resolve_top_k(self.task, top_k)
        with storage.local_output(outdir) as local:
            return self._predict(paths, local, outdir, top_k, batch_size, explain)

    def _predict(self, paths: Sequence[str], outdir: str, shown: str, top_k: int, batch_size: int,
                 explain: bool) -> list[dict]:
        """`predict` into local folder `outdir`; the records name the files as in `shown`, where they land."""
        names = unique_stems(paths)
        records = []
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start:start + batch_size])
            decoded = [_read_image(path) for path in chunk]
            good = [i for i, (image, _) in enumerate(decoded) if image is not None]
            images = [decoded[i][0] for i in good]
            written = {}
            if good:
                stems = [names[start + i] for i in good]
                written = dict(zip(good, self.task.prediction_records(
                    self.predictions(images, top_k), images, stems, outdir)))
                if explain:
                    for i, explanation in zip(good, self.explain(images, outdir, stems)):
                        written[i]["explanation"] = storage.join(shown, os.path.basename(explanation.file))
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


def find_model(path: str | os.PathLike) -> str:
    """The export of the run in `path` (`best/`, else `best_vitjax/`) when it holds one, else `path`
    itself (a model folder, or `read_model_folder` names what is missing)."""
    path, run = storage.normalize(path), Workdir(path)
    return next((p for p in (run.best, run.best_native) if storage.isdir(p)), path)


def load_trained(directory: str | os.PathLike,
                 task_config: ml_collections.ConfigDict | Mapping | None = None) -> TrainedModel:
    """The `TrainedModel` of an exported model folder (`checkpoints.model_folder`): `best_vitjax/`
    (vitjax's format) or `best/` (a classification model in its family's format: transformers' or
    timm's), or of the workdir of a finished run holding one. `task_config`: the run's `config.task`
    (its knobs, e.g. `top_k`, `score_threshold`); by default the one saved in the folder
    (`best_vitjax/`) or the classification task that `best/` describes."""
    directory = find_model(directory)
    folder = read_model_folder(directory)  # one on object storage: from its local copy (storage.cached_copy)
    config = dict(task_config if task_config is not None else folder.task_config)
    task = make_task(config, folder.class_names, directory)
    model = Model(ViT(folder.spec), task.make_head(folder.spec))
    return TrainedModel(task, model, jax.tree.map(np.asarray, folder.params), folder.preprocessing,
                        folder.spec, config)


class ExportFormat(NamedTuple):
    """How a trained model is written: `pooling` of its classifier in its family's format (`best/`:
    a transformers or timm class), or None for vitjax's format (`best_vitjax/`), then `refused`
    says why when the task has a transformers class that cannot express this model's head."""

    pooling: str | None
    refused: str | None = None


def export_format(task: registry.Task, spec: ViTSpec, head) -> ExportFormat:
    """The format of a model of `task` whose `head` sits on a `spec` backbone: its family's when the
    task has a transformers class (`Task.hf_config`) and the family's class pools as `head` does
    (a ViT's ViTForImageClassification pools the CLS token, so a mean-pooled ViT is vitjax's)."""
    if task.hf_config() is None:
        return ExportFormat(None)
    if not isinstance(head, ClassificationHead):
        return ExportFormat(None, f"the {type(head).__name__} head of task {task.name!r} is no "
                                  f"ClassificationHead, which the family formats hold")
    problem = family_class_problem(spec, head.pooling)
    return ExportFormat(None, problem) if problem else ExportFormat(head.pooling)
