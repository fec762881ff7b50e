"""The task-plugin registry: the `Task` interface, `@register_task`, lookup and plugin discovery.

A task plugin is one class deriving from `Task`, registered under a name with `@register_task(name)`.
It owns everything task-specific — its data source, the head over the backbone's output dict, the
loss, the clu metrics, the evaluation report and what the Hugging Face export needs — so the trainer
runs any task by calling only the methods below (and every one of them is called):

    load_plugins(config.task.plugins)
    task_class = get_task(config.task.name)
    dataset = task_class.open_source(config.data, config.task)    # splits of records + class names
    task = task_class(config.task, dataset.class_names)
    transforms = task.data_transforms(preprocessing, config.data)  # records -> examples, + what they support
    model = Model(backbone, task.make_head(spec))
    task.head_from_checkpoint()                                # head tensors the checkpoint may fill
    loss, aux = task.loss(outputs, batch)                      # inside the jitted train/eval step
    update = task.metrics(training).single_from_model_output(  # the loss's aux feeds the metrics
        **task.metric_inputs(outputs, batch, aux))
    merged = merged.merge(jax.device_get(update))              # on the host, between steps
    computed = merged.compute()
    task.summarize(computed), task.warnings(computed)          # logs, early stopping, best checkpoint
    task.report(computed, outdir, split)                       # evaluation report files
    task.report_sections(report)                               # its sections of report.html
    task.hf_config()                                           # export
    arrays = task.predict(outputs, top_k)                      # predict, serve, ONNX/StableHLO: jit-able
                                                               # (top_k: asked, else task.default_top_k)
    records = task.prediction_records(                         # predict, serve: on the host
        arrays, images, names, outdir)

`predict` and `prediction_records` compute a prediction the one way `--mode predict`, the HTTP service
and the deployable exports share; a task without them trains and evaluates, and those modes refuse it
naming the hooks (`require_prediction_hooks`).

Updates are merged on the host, outside jit, so a plugin may use clu's `CollectingMetric` for
metrics that need every prediction (average precision, COCO mAP).

The data hooks default to image classification: `open_source` reads `config.data.source` into
{"image", "label"} records and `data_transforms` returns `vitjax.data.pipeline.image_label_transforms`.
A task with other targets (masks, boxes) overrides both (see each hook).

What the core asks a task, besides calling the hooks above (it never reads a task's name or knobs):
- `has_classes` and `class_logits` (class attributes): whether it has classes; whether its outputs
  are class logits, which adversarial attacks and calibration need;
- the flags of its `RecordTransforms` (`decode_cache`, `device_augment`, `mixup`): which data knobs
  its records support, and how prediction prepares an image;
- whether its record sources' `labels()` are classes or strata only (`classes()`, see `open_source`);
- `hf_config()`: whether the model is a transformers classifier (its head's pooling picks the class).

Plugins come from three places, all imported by `load_plugins`: the built-ins (`vitjax.tasks.*`, the
repo's `tasks/` folder), module paths or `.py` file paths listed in `config.task.plugins`, and the
`vitjax.tasks` entry-point group of installed distributions.

This module's docstrings are the plugin reference; docs/tasks.md renders them (mkdocstrings) beside a
worked example.
"""
from __future__ import annotations

import abc
import difflib
import importlib
import logging
import os
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import flax.linen as nn
import ml_collections
from clu import metrics as clu_metrics

from vitjax.errors import BadKey, BadValue

BUILTIN_PLUGINS = ("vitjax.tasks.classification", "vitjax.tasks.segmentation", "vitjax.tasks.detection")
ENTRY_POINT_GROUP = "vitjax.tasks"
# Keys of `config.task` read by the registry itself rather than by the plugin.
REGISTRY_KEYS = ("name", "plugins")
# The most ranked entries (top classes, detections) a prediction lists, and what an exported model keeps.
MAX_TOP_K = 100

_TASKS: dict[str, type[Task]] = {}
_LOADED_FILES: dict[Path, str] = {}


class Task(abc.ABC):
    """The interface every task plugin implements; the trainer calls nothing else.

    `outputs` below is whatever the module from `make_head` returns (logits for classification,
    a dict for detection); `batch` is the data batch dict: "image" plus the fields the task's
    transforms produce, and in evaluation `valid` (bool [B], False on padding rows that must never
    count in losses or metrics).
    """

    name: ClassVar[str]
    """The name the task is registered under (set by `@register_task`; `config.task.name`)."""
    best_metric: ClassVar[tuple[str, str]]
    """The metric (a key of `summarize`'s result) that picks the best checkpoint, the default of
    `config.train.best_metric`, and whether higher ("max") or lower ("min") is better."""
    has_classes: ClassVar[bool] = True
    """False for a task without classes (regression, ...): its source passes `class_names=None` to
    `vitjax.data.splits.resolve_splits` (its `labels()` are then only strata for carving splits),
    it gets `class_names == []`, and no per-class checks or warnings."""
    class_logits: ClassVar[bool] = False
    """True when `outputs` are class logits [B, C] and batch["label"] int classes [B] (softmax) or
    float targets [B, C] (sigmoid, multi-hot): robustness reports then attack the model and measure
    its calibration (`vitjax.robustness`); other tasks get the corruption sweep only."""

    def __init__(self, config: ml_collections.ConfigDict, class_names: Sequence[str]):
        """Takes `config.task` and the dataset's class names (index i names label i; [] without classes)."""
        self.config = _resolve_config(type(self), config)
        self.class_names = list(class_names)
        if self.has_classes and not self.class_names:
            raise BadValue(f"Task {self.name!r} needs at least one class name; got none. A task "
                           f"without classes sets `has_classes = False`.")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """The task's knobs with their defaults (merged under `config.task`); a knob the task does not
        list is an error naming the close matches."""
        return ml_collections.ConfigDict()

    @classmethod
    def open_source(cls, data_cfg: ml_collections.ConfigDict,
                    task_cfg: ml_collections.ConfigDict) -> Any:
        """The `vitjax.data.records.ImageDataset` (train/validation/test record sources and class
        names) of `data_cfg.source`; called before the task exists (the task needs the class names),
        with the unresolved `config.task`. The default reads image-classification sources into
        {"image", "label"} records.

        A task of its own builds a dict of splits, each a record source (`len()`, `[i] -> dict`,
        `labels()`, `ids()`, `describe(i)`), and hands it to
        `vitjax.data.splits.resolve_splits(source, raw, class_names, data_cfg)`: it maps split names,
        drops corrupt images when `config.data.skip_corrupt` is set, and carves missing validation/test
        splits with a seeded split stratified on `labels()`. `labels()` are each record's class; a
        source whose records have no single class returns strata (zeros) and adds `classes()`: per
        record, the class indices it shows (a multi-label image's labels, a mask's classes, the classes
        of its boxes), which the split warnings and `data_split.json`'s per-class counts count. A
        record holds whatever the transforms need: keep images undecoded (paths, bytes) so decoding
        happens in the data workers, and put a readable `"name"` in it for error messages."""
        from vitjax.data.sources import open_source

        return open_source(data_cfg)

    def data_transforms(self, preprocessing: Any, data_cfg: ml_collections.ConfigDict) -> Any:
        """The `vitjax.data.pipeline.RecordTransforms(train, eval, padding, ...flags)` turning this
        task's records into examples and declaring the data knobs they support (decode cache,
        device-side augmentation, mixup/cutmix: see `RecordTransforms`). The default,
        `vitjax.data.pipeline.image_label_transforms`, is that of {"image", "label"} records (every
        knob supported).

        `train(record, rng)` and `eval(record)` return a dict of numpy arrays of a fixed shape:
        "image" (uint8 [H, W, 3] at `preprocessing.input_size`) plus the task's target fields;
        `padding` is the example of the rows that fill the last eval batch (they get `valid=False`).
        The transforms are pickled to grain's worker processes: a frozen dataclass, not a closure. For
        targets that move with the pixels, `vitjax.data.paired` applies one crop/flip `View` to an
        image, a mask (nearest) and boxes."""
        from vitjax.data.pipeline import image_label_transforms

        return image_label_transforms(preprocessing, data_cfg)

    @abc.abstractmethod
    def make_head(self, spec: Any) -> nn.Module:
        """The head: a linen module from the backbone's feature dict — "cls" [B, D], "tokens"
        [B, T, D], "patches" [B, gh, gw, D] (and "distillation" for DeiT) — to this task's `outputs`
        (an array or a dict). Its parameters live under `head/`; the backbone's always come from the
        checkpoint."""

    def head_from_checkpoint(self) -> Sequence[str]:
        """Regexes (full match) over the head's parameter paths ("head/classifier/kernel", ...) that may
        take the checkpoint's tensor of the same path and shape; every other head tensor keeps
        `make_head`'s initialisation. The backbone always loads. The default, none, suits any head
        that is not a transformers classifier over the same labels (like big_vision's `dont_load`
        of the head) and keeps e.g. a detection head's prior bias; the warning at start names the head
        tensors that start fresh. Classification reuses the checkpoint's classifier when it was trained
        on the same classes."""
        return ()

    @abc.abstractmethod
    def loss(self, outputs: Any, batch: dict) -> tuple[Any, dict[str, Any]]:
        """(the scalar the optimizer minimises, over valid examples; `aux`: per-example values, such as
        the per-example loss and its parts, that `metric_inputs` receives so the metrics — and with
        them the logs and metrics.jsonl — reuse them instead of recomputing). Jit-able; called in
        the train and the eval step alike. Training batches have no "valid" key (no padding rows);
        evaluation batches do."""

    @abc.abstractmethod
    def metrics(self, training: bool = False) -> type[clu_metrics.Collection]:
        """The clu `Collection` class whose `single_from_model_output` takes `metric_inputs`.

        `training=True` asks for the cheap subset accumulated over training steps (what the learning
        curves need, no host-collected predictions); the default is the full evaluation collection.
        Updates are merged on the host, outside jit, so a `clu.metrics.CollectingMetric` may collect
        predictions for metrics computed in `summarize` (as detection's mAP does).
        """

    @abc.abstractmethod
    def metric_inputs(self, outputs: Any, batch: dict, aux: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for `metrics().single_from_model_output`, including `mask`, from the
        outputs, the batch and `loss`'s aux. Jit-able."""

    @abc.abstractmethod
    def summarize(self, computed: dict[str, Any]) -> dict[str, float]:
        """Scalar metrics from `collection.compute()` of either `metrics()` collection, for logs,
        early stopping and the best checkpoint (`best_metric` names one of them)."""

    def warnings(self, computed: dict[str, Any]) -> list[str]:
        """Messages the trainer should log about this evaluation (e.g. collapsed predictions)."""
        return []

    @abc.abstractmethod
    def report(self, computed: dict[str, Any], outdir: str | os.PathLike, split: str) -> dict:
        """Writes the evaluation report files of `split` under `outdir` (`validation/`, `test/`);
        returns a JSON-able summary. `vitjax.report.write_evaluation_report` writes the usual
        per_class.csv/.md and report.json; `vitjax.metrics` has a clu `ConfusionMatrix` and IoU/Dice."""

    def report_sections(self, report: dict) -> list[dict]:
        """The task's own sections of the run's report page (`<workdir>/report.html`,
        `vitjax.report_page`) for one evaluated split, from `report`'s result (its report.json). Each
        section is a dict: "title", optional "text" (a paragraph), "figures" (file names of PNGs
        `report` wrote beside report.json, shown inlined) and "gallery" (a list of {"index": the
        record's index in the split, "caption": text, optionally "image": the file name of a PNG
        beside report.json shown next to the thumbnail, e.g. a map of what the model looked at}: the
        page shows each record's image as a thumbnail with its file name and the caption). Figures
        go through `vitjax.report.save_figure` with labelled axes, or a legend where they show
        classes. The default, none: the page then shows the common parts only (summary, curves,
        metrics, per-class table, confusion matrix)."""
        return []

    # ---- prediction (--mode predict, vitjax.serve, vitjax.deploy): optional, see the docstring ----
    @property
    def default_top_k(self) -> int:
        """The `top_k` of `predict` when the user gives none — in `--mode predict`, the service and
        `vitjax.load_pretrained(...).predict` alike: every ranked entry an export keeps by default."""
        return MAX_TOP_K

    def predict(self, outputs: Any, top_k: int) -> dict[str, Any]:
        """{name: array [B, ...]} from the head's `outputs` for images prepared as in evaluation, e.g.
        the `top_k` best classes with their probabilities (a ranked output, whose axis 1 is best
        first, may be shortened to a request's k afterwards). Jit-able: traced into ONNX/StableHLO."""
        raise BadValue(_missing_hooks(self, ["predict"]))

    def prediction_records(self, predictions: dict[str, Any], images: Sequence[Any],
                           names: Sequence[str], outdir: str | os.PathLike) -> list[dict]:
        """One JSON-able record per image from `predict`'s arrays (host numpy, one row per image).
        `images`: the RGB PIL images as read, at their own size (to map masks and boxes back to it,
        to draw on); `names`: a file stem per image, unique within the call, for the files the task
        writes under `outdir` (masks, drawings), which a record names by path (the service returns
        them inline, base64). `--mode predict` adds "file" to each record, the service "image"."""
        raise BadValue(_missing_hooks(self, ["prediction_records"]))

    def hf_config(self) -> dict | None:
        """Fields the Hugging Face `config.json` needs (id2label, ...), or None when no transformers
        class fits the task, in which case the best weights are exported in vitjax's own format to
        `<workdir>/best_vitjax/` (`vitjax.load_trained` runs them;
        `vitjax.checkpoints.native.load_native` reads the raw params). The model's head must be a
        `vitjax.models.heads.ClassificationHead`, whose pooling picks the family's classifier class
        (`vitjax.trained.export_format`)."""
        return None


PREDICTION_HOOKS = ("predict", "prediction_records")


def require_prediction_hooks(task: Task) -> None:
    """Raises a `BadValue` naming the prediction hooks `task`'s plugin does not implement."""
    missing = [hook for hook in PREDICTION_HOOKS if getattr(type(task), hook) is getattr(Task, hook)]
    if missing:
        raise BadValue(_missing_hooks(task, missing))


def _missing_hooks(task: Task, missing: Sequence[str]) -> str:
    return (f"task {task.name!r} ({type(task).__module__}) does not implement {' and '.join(missing)}: "
            f"--mode predict, the prediction service and --format onnx/stablehlo run a model through "
            f"Task.predict(outputs, top_k) and Task.prediction_records(predictions, images, names, "
            f"outdir); add them to the plugin (docs/tasks.md). Training, evaluate and "
            f"--format hf export need neither.")


def _resolve_config(cls: type[Task], config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` over the task's defaults; a key the task does not know is an error."""
    resolved = cls.default_config()
    known = set(resolved.keys()) | set(REGISTRY_KEYS)
    for key, value in config.items():
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise BadKey(
                f"config.task.{key} is not a knob of task {cls.name!r}.{hint} "
                f"Its knobs are: {', '.join(sorted(resolved.keys())) or '(none)'}."
            )
        if key not in REGISTRY_KEYS:
            resolved[key] = value
    return resolved


def register_task(name: str):
    """Class decorator registering a `Task` subclass under `name`; a name already taken is an error."""

    def decorate(cls: type[Task]) -> type[Task]:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(
                f"@register_task({name!r}) decorates {cls!r}, which is not a vitjax.registry.Task subclass."
            )
        existing = _TASKS.get(name)
        if existing is not None and existing is not cls:
            raise BadValue(
                f"Task name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}; "
                f"{cls.__module__}.{cls.__qualname__} must use another name."
            )
        cls.name = name
        _TASKS[name] = cls
        return cls

    return decorate


def available_tasks() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    """The task class registered as `name`; on a miss the error lists the tasks and close matches."""
    try:
        return _TASKS[name]
    except KeyError:
        close = difflib.get_close_matches(name, available_tasks(), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise BadKey(
            f"Unknown task {name!r} (config.task.name).{hint} Available tasks: "
            f"{', '.join(available_tasks()) or '(none)'}. A third-party task must be listed in "
            f"config.task.plugins (a module path or .py file) or installed under the "
            f"{ENTRY_POINT_GROUP!r} entry-point group."
        ) from None


def task_config(name: str, plugins: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """A full `config.task` subtree: the task's name, the plugin list and the task's default knobs."""
    load_plugins(plugins)
    config = ml_collections.ConfigDict({"name": name, "plugins": list(plugins)})
    config.update(get_task(name).default_config())
    return config


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Imports the built-in plugins, `modules` (dotted module paths or `.py` file paths) and the
    modules of the `vitjax.tasks` entry points; importing a plugin registers its tasks."""
    for module in (*BUILTIN_PLUGINS, *modules):
        if module.endswith(".py") or os.sep in module or "/" in module:
            _import_file(Path(module))
        else:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as error:
                if error.name is None or not (module == error.name or module.startswith(error.name + ".")):
                    raise
                raise ModuleNotFoundError(
                    f"Task plugin module {module!r} (config.task.plugins) cannot be imported: {error}. "
                    f"Install it, add its folder to PYTHONPATH, or give the path of its .py file."
                ) from error
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:  # noqa: BLE001 - a broken third-party plugin must not stop others.
            logging.warning(
                "Skipping task plugin entry point %r (%s): %s", entry_point.name, entry_point.value, error
            )


def _import_file(path: Path) -> None:
    """Imports a plugin from a `.py` file once per resolved path, under a name that grain's worker
    processes can import too (`vitjax.plugin_files`)."""
    from vitjax import plugin_files

    resolved = path.expanduser().resolve()
    if resolved in _LOADED_FILES:
        return
    if not resolved.is_file():
        raise FileNotFoundError(f"Task plugin file {str(path)!r} (config.task.plugins) does not exist.")
    plugin_files.import_file(resolved)
    _LOADED_FILES[resolved] = plugin_files.module_name(resolved)
