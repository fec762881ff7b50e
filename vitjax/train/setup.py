"""Builds a run from its config with pure builders (none writes a file), in the order data flows:

- `make_mesh(config)`: the device mesh, batch sizes checked against it;
- `open_data(config)`: the task class and its source's splits (`ImageDataset`);
- `build_model(...)` -> `ModelPart`: the task, the backbone + head module, its start parameters
  (checkpoint weights + fresh head), preprocessing and where the weights came from;
- `build_training(...)` -> `TrainingPart`: optimizer with its parameter groups, plateau, step counts;
- `build_data(...)` -> `DataPart`: how the task makes batches of the splits;
- `default_steps(...)` -> `Steps`: what the jitted train and eval steps apply to a batch.

Each mode composes the parts it uses, every one of them whole: `build_run` -> `Run` (model, data,
training: the train mode); `build_eval_run` -> `Evaluation` (a trained model over data: evaluate,
robustness); `build_export_run` -> `Export` (the model the run recorded, over its recorded classes,
with its parameter groups; no data, no base checkpoint).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from vitjax import config as config_lib
from vitjax import durations, optim, parallel, quant, registry, storage
from vitjax.checkpoints.families import load_checkpoint
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data import pipeline, splits as splits_lib
from vitjax.data.device_augment import train_transform
from vitjax.data.records import ImageDataset
from vitjax.errors import BadValue, UserError
from vitjax.workdir import Workdir
from vitjax.files import read_json
from vitjax.lora import run as lora_run
from vitjax.models.model import Model, param_shapes
from vitjax.models.vit import ViT, ViTSpec
from vitjax.train import run_model
from vitjax.train.checkpointing import has_checkpoints
from vitjax.train.fast_paths import backbone_options
from vitjax.train.steps import TrainState, make_eval_step, make_train_step

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ModelPart:
    """The task and its model: the backbone + head `module`, its parameters (float32 host arrays:
    a checkpoint's weights and a fresh head, or a trained model's; an export's: their shapes only),
    the preprocessing and where the backbone came from (a hub id, a folder, or "scratch")."""

    config: object
    mesh: jax.sharding.Mesh
    task: registry.Task
    spec: ViTSpec
    module: Model
    preprocessing: Preprocessing
    params: dict
    base: str

    @functools.cached_property
    def normalize(self):
        """uint8 batch images -> the module's inputs (the checkpoint's normalisation, its dtype)."""
        dtype = jnp.dtype(self.config.model.dtype)
        return lambda images: self.preprocessing.normalize(images).astype(dtype)

    def param_shardings(self, shapes=None):
        """Where each parameter lives on the mesh (`parallel.param_shardings`)."""
        shapes = jax.eval_shape(lambda params: params, self.params) if shapes is None else shapes
        return parallel.param_shardings(shapes, self.mesh, min_size=self.config.mesh.fsdp_min_size)

    def placed_params(self):
        """`params` on the mesh with the parameter shardings."""
        return jax.device_put(self.params, self.param_shardings())

    def abstract_params(self):
        """The shapes, dtypes and shardings of `params`, without values (a restore's target)."""
        return jax.tree.map(lambda p, sharding: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=sharding),
                            self.params, self.param_shardings())


@dataclasses.dataclass
class DataPart:
    """The splits of `config.data` and how batches are made of them for the model's task and
    preprocessing."""

    config: object
    mesh: jax.sharding.Mesh
    dataset: ImageDataset
    preprocessing: Preprocessing
    record_transforms: pipeline.RecordTransforms  # the task's (and the data knobs they support)

    @property
    def per_process_batch(self) -> int:
        return self.config.train.batch_size // jax.process_count()

    @property
    def per_process_eval_batch(self) -> int:
        return (self.config.train.eval_batch_size or self.config.train.batch_size) // jax.process_count()

    def train_iterator(self) -> pipeline.DevicePrefetch:
        """Global training batches on the mesh, the next ones already on their way to it."""
        host = pipeline.train_iterator(
            self.dataset.splits["train"], self.preprocessing, self.config.data,
            batch_size=self.per_process_batch, seed=self.config.seed,
            shard_index=jax.process_index(), shard_count=jax.process_count(),
            record_transforms=self.record_transforms)
        return pipeline.DevicePrefetch(host, lambda batch: parallel.global_batch(batch, self.mesh))

    def eval_batches(self, split: str):
        return pipeline.eval_batches(
            self.dataset.splits[split], self.preprocessing, batch_size=self.per_process_eval_batch,
            shard_index=jax.process_index(), shard_count=jax.process_count(),
            data_cfg=self.config.data, record_transforms=self.record_transforms)


@dataclasses.dataclass(frozen=True)
class TrainingPart:
    """The optimizer (parameter groups), the plateau and the step counts of a training run."""

    optimizer: optim.Optimizer
    plateau: optim.Plateau | None
    steps_per_epoch: int
    total_steps: int
    eval_every_steps: int
    checkpoint_every_steps: int  # 0: checkpoints at evaluations only


@dataclasses.dataclass(frozen=True)
class Steps:
    """What the jitted steps apply to a batch: the module, the map from a batch's "image" to its
    inputs and the device-side augmentation (None: none). A run over cached features
    (`feature_cache`) swaps these for the model view over the features."""

    module: Model
    normalize: Callable
    augment: Callable | None = None


class _Evaluates:
    """Evaluation over `self.data` with `self.steps` (of an `Evaluation` and of a `Run`)."""

    def eval_batches(self, split: str):
        return self.data.eval_batches(split)

    def jit_eval_step(self):
        # Replicated metrics: each process reads the totals over every host's examples.
        return jax.jit(make_eval_step(self.steps.module, self.model.task, self.steps.normalize),
                       out_shardings=parallel.replicated(self.mesh))


@dataclasses.dataclass
class Evaluation(_Evaluates):
    """A trained model over data: the evaluate and robustness modes (`build_eval_run`)."""

    config: object
    workdir: Workdir
    mesh: jax.sharding.Mesh
    model: ModelPart
    data: DataPart
    steps: Steps


@dataclasses.dataclass
class Run(_Evaluates):
    """One training run: the model, the data and the training (`build_run`)."""

    config: object
    workdir: Workdir
    mesh: jax.sharding.Mesh
    model: ModelPart
    data: DataPart
    training: TrainingPart
    steps: Steps

    # ---- state -------------------------------------------------------------------------------
    def _init_fn(self):
        ema = self.config.optim.ema_decay > 0

        def init(params):
            return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=self.training.optimizer.tx.init(params),
                              ema_params=params if ema else None,
                              rng=jax.random.key_data(jax.random.key(self.config.seed)))

        return init

    @functools.cached_property
    def state_shardings(self) -> TrainState:
        """Where each part of the train state lives on the mesh: parameters (and the EMA) by
        `parallel.param_shardings`, optimizer state next to its parameters, the rest replicated."""
        shapes = jax.eval_shape(self._init_fn(), self.model.params)
        params = self.model.param_shardings(shapes.params)
        return TrainState(
            step=parallel.replicated(self.mesh),
            params=params,
            opt_state=parallel.shardings_like_params(shapes.opt_state, shapes.params, params,
                                                     self.mesh),
            ema_params=None if shapes.ema_params is None else params,
            rng=parallel.replicated(self.mesh))

    def init_state(self) -> TrainState:
        """The step-0 train state, placed on the mesh with the parameter shardings."""
        shardings = self.state_shardings
        params = jax.device_put(self.model.params, shardings.params)
        return jax.jit(self._init_fn(), out_shardings=shardings)(params)

    # ---- data and steps ----------------------------------------------------------------------
    def train_iterator(self) -> pipeline.DevicePrefetch:
        return self.data.train_iterator()

    def jit_train_step(self):
        optimizer = self.training.optimizer
        step = make_train_step(self.steps.module, self.model.task, optimizer.tx, self.steps.normalize,
                               trainable_mask=optimizer.trainable_mask,
                               backbone_frozen=optimizer.backbone_frozen, augment=self.steps.augment,
                               ema_decay=self.config.optim.ema_decay)
        # The state keeps its shardings from step to step; metrics come back replicated, so every
        # process can read them.
        return jax.jit(step, donate_argnums=(0,),
                       out_shardings=(self.state_shardings, parallel.replicated(self.mesh)))

    def lr_at(self, step: int, opt_state) -> float:
        """The largest group learning rate of the update made at `step` (0-based), with the
        plateau scale: `optim.lr` times the schedule, before layer decay lowers deeper groups."""
        rate = max(float(fn(step)) for fn in self.training.optimizer.lr_fns.values())
        return rate * optim.get_lr_scale(opt_state)

    def eval_params(self, state: TrainState):
        """The weights evaluated and exported: the EMA when it is on, else the params."""
        return state.params if state.ema_params is None else state.ema_params


@dataclasses.dataclass
class Export:
    """A trained run's model as export writes it, from the workdir alone: the model part (the
    parameters' shapes), its training part (which parameters trained: LoRA's adapter export), the
    source and classes the run recorded."""

    config: object
    workdir: Workdir
    mesh: jax.sharding.Mesh
    model: ModelPart
    training: TrainingPart
    dataset: ImageDataset  # source and class names, without records


def make_mesh(config) -> jax.sharding.Mesh:
    """The device mesh of `config.mesh`; the batch sizes must divide over its devices."""
    mesh = parallel.make_mesh(config.mesh)
    devices = jax.device_count()
    config_lib.check_batch_divides(config.train.batch_size, "train.batch_size", devices)
    if config.train.eval_batch_size:
        config_lib.check_batch_divides(config.train.eval_batch_size, "train.eval_batch_size",
                                       devices)
    return mesh


def open_data(config) -> tuple[type[registry.Task], ImageDataset]:
    """The task class of `config.task` (plugins loaded) and the splits of `config.data` it opens."""
    registry.load_plugins(config.task.plugins)
    task_class = registry.get_task(config.task.name)
    dataset = task_class.open_source(config.data, config.task)
    if config.train.test_split and config.train.test_split not in dataset.splits:
        raise BadValue(f"config.train.test_split={config.train.test_split!r} is not a split "
                       f"of {dataset.source}; use one of {sorted(dataset.splits)}, or '' for "
                       f"none.")
    return task_class, dataset


def build_model(config, mesh, task_class: type[registry.Task], dataset: ImageDataset) -> ModelPart:
    """The task over `dataset`'s classes, the backbone + task head, and the start parameters:
    the checkpoint's tensors where they fit, fresh ones elsewhere."""
    log.info("data %s: %s", dataset.source, {s: len(v) for s, v in dataset.splits.items()})
    task = task_class(config.task, dataset.class_names)
    spec, params, preprocessing, base = load_backbone(config, dataset.class_names)
    module = _task_module(config, task, spec)
    params = _with_task_head(module, spec, params, config.seed, task.head_from_checkpoint(), base)
    return ModelPart(config=config, mesh=mesh, task=task, spec=spec, module=module,
                     preprocessing=preprocessing, params=params, base=base)


def _task_module(config, task: registry.Task, spec: ViTSpec) -> Model:
    """The backbone of `spec` with the task's head (and LoRA adapters when `config.lora` is on)."""
    return lora_run.build_model(config.lora, Model(ViT(spec, **backbone_options(config.model)),
                                                   task.make_head(spec)))


def build_data(config, mesh, dataset: ImageDataset, model: ModelPart) -> DataPart:
    """How the model's task makes batches of `dataset`."""
    return DataPart(config=config, mesh=mesh, dataset=dataset, preprocessing=model.preprocessing,
                    record_transforms=model.task.data_transforms(model.preprocessing, config.data))


def default_steps(model: ModelPart, data: DataPart) -> Steps:
    """The steps over images: the model's module (fake-quantized with `config.quant`), its
    normalisation, the configured device-side augmentation."""
    augment = train_transform(model.config.data, model.preprocessing.input_size, data.dataset.num_classes)
    return Steps(module=quant.quantized(model.config.quant, model.module), normalize=model.normalize,
                 augment=augment)


def build_training(config, params: dict, spec: ViTSpec, train_size: int) -> TrainingPart:
    """The optimizer (parameter groups) over `params` (arrays or shapes), the plateau and the step
    counts of training on `train_size` images."""
    steps_per_epoch = train_size // config.train.batch_size
    if steps_per_epoch == 0:
        raise BadValue(f"the train split has {train_size} images, fewer than "
                       f"config.train.batch_size={config.train.batch_size}; lower the batch size.")
    total_steps = max(1, round(config.train.epochs * steps_per_epoch))
    eval_every = durations.to_steps(config.train.eval_every, steps_per_epoch=steps_per_epoch,
                                    total_steps=total_steps, batch_size=config.train.batch_size,
                                    name="config.train.eval_every")
    checkpoint_every = durations.to_steps(
        config.train.checkpoint_every, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        batch_size=config.train.batch_size, name="config.train.checkpoint_every")
    optimizer = optim.build_optimizer(config.optim, params, num_layers=spec.num_layers,
                                      steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                                      batch_size=config.train.batch_size,
                                      extra_rules=lora_run.optimizer_rules(config.lora))
    return TrainingPart(optimizer=optimizer, plateau=optim.build_plateau(config.optim),
                        steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                        eval_every_steps=max(1, min(eval_every, total_steps)),
                        checkpoint_every_steps=checkpoint_every)


def build_eval_run(config, workdir: str, trained) -> Evaluation:
    """A trained model (`vitjax.trained.TrainedModel`) over `config.data`: the evaluate and
    robustness modes."""
    mesh = make_mesh(config)
    _, dataset = open_data(config)
    task = trained.task
    if task.has_classes and dataset.class_names != task.class_names:
        raise BadValue(f"the model's classes {task.class_names} are not the classes "
                       f"{dataset.class_names} of config.data.source={config.data.source!r}.")
    model = ModelPart(config=config, mesh=mesh, task=task, spec=trained.spec, module=trained.model,
                      preprocessing=trained.preprocessing, params=trained.params,
                      base=config.model.checkpoint or "scratch")
    data = build_data(config, mesh, dataset, model)
    return Evaluation(config=config, workdir=Workdir(workdir), mesh=mesh, model=model, data=data,
                      steps=default_steps(model, data))


def recorded_dataset(workdir: str) -> tuple[ImageDataset, int]:
    """The source and class names the run in `workdir` recorded in data_split.json, without records
    (what export needs, without opening the data), and the size of its train split."""
    path = Workdir(workdir).split
    if not storage.isfile(path):
        raise FileNotFoundError(f"{path} is missing: {workdir} holds no training run; train first.")
    recorded = splits_lib.read_split(path, "train the run again to rewrite it")
    train = recorded["splits"].get("train") or {}
    dataset = ImageDataset(source=recorded["source"], splits={}, class_names=recorded["class_names"])
    return dataset, len(train.get("ids") or ())


def build_export_run(config, workdir: str) -> Export:
    """What export writes: the task and model over the recorded classes, its parameter groups, no
    data and no base checkpoint (the architecture and preprocessing come from the workdir's
    `model.json`). The model part's `params` are the parameters' shapes only."""
    registry.load_plugins(config.task.plugins)
    dataset, train_size = recorded_dataset(workdir)
    task = registry.get_task(config.task.name)(config.task, dataset.class_names)
    spec, preprocessing = recorded_model(config, workdir, dataset.class_names)
    module = _task_module(config, task, spec)
    mesh = make_mesh(config)
    model = ModelPart(config=config, mesh=mesh, task=task, spec=spec, module=module,
                      preprocessing=preprocessing, params=param_shapes(module, spec),
                      base=config.model.checkpoint or "scratch")
    return Export(config=config, workdir=Workdir(workdir), mesh=mesh, model=model,
                  training=build_training(config, model.params, spec, train_size), dataset=dataset)


def recorded_model(config, workdir: str, class_names) -> tuple[ViTSpec, Preprocessing]:
    """The spec and preprocessing the run in `workdir` recorded (`run_model`); for a run trained
    before vitjax recorded them, those of its base checkpoint, which must then be readable."""
    recorded = run_model.read(workdir)
    if recorded is not None:
        return recorded
    try:
        spec, _, preprocessing, _ = load_backbone(config, class_names)
    except (OSError, UserError) as e:
        raise FileNotFoundError(
            f"{Workdir(workdir).model} is missing (the run was trained by an older "
            f"vitjax), and the model cannot be rebuilt from its base checkpoint "
            f"{config.model.checkpoint!r} either ({e}). Make that checkpoint readable here, or train the "
            f"run again (which records the model in the workdir).") from e
    return spec, preprocessing


def build_run(config, workdir: str, dataset: ImageDataset | None = None) -> Run:
    """The training run of `config` in `workdir`, on `config.data` (opened by the task's
    `open_source`) or on a given `dataset` (e.g. the benchmark's synthetic images). Writes nothing:
    the train mode saves the split and the parameter groups (`write_run_files`)."""
    mesh = make_mesh(config)
    if dataset is None:
        task_class, dataset = open_data(config)
    else:
        registry.load_plugins(config.task.plugins)
        task_class = registry.get_task(config.task.name)
    model = build_model(config, mesh, task_class, dataset)
    training = build_training(config, model.params, model.spec, len(dataset.splits["train"]))
    model = dataclasses.replace(model, params=lora_run.prepare_params(
        config.lora, model.params, training.optimizer.trainable_mask))
    data = build_data(config, mesh, dataset, model)
    return Run(config=config, workdir=Workdir(workdir), mesh=mesh, model=model, data=data,
               training=training, steps=default_steps(model, data))


def write_run_files(run: Run) -> None:
    """Process 0 writes the audit file of the split, the parameter-group table and the model the run
    resolved (`run_model`: what the modes after training rebuild it from) to the workdir."""
    if jax.process_index() == 0:
        table = run.training.optimizer.describe()
        log.info("parameter groups:\n%s", table)
        splits_lib.write_split(run.workdir.path, run.data.dataset,
                               replace=not has_checkpoints(run.workdir.checkpoints))
        storage.write_text(run.workdir.param_groups, table + "\n")
        run_model.write(run.workdir.path, run.model.spec, run.model.preprocessing, run.model.base)


def load_backbone(config, class_names):
    """(spec, params, preprocessing, base): the checkpoint's weights, or a from-scratch ViT.

    The spec carries the run's regularisation (dropout, stochastic depth) over the checkpoint's.
    """
    m = config.model
    id2label = dict(enumerate(class_names)) or None  # None: a task without classes
    overrides = dict(hidden_dropout=m.dropout_rate, drop_path_rate=m.drop_path_rate)
    if m.checkpoint:
        ckpt = load_checkpoint(m.checkpoint, id2label=id2label, image_size=m.image_size or None,
                               fill_head=False)
        return ckpt.spec.replace(**overrides), ckpt.params, ckpt.preprocessing, m.checkpoint
    spec = ViTSpec(**m.spec.to_dict()).replace(**overrides)
    if m.image_size:
        spec = spec.replace(image_size=m.image_size)
    return spec, None, Preprocessing.default(spec.image_size), "scratch"


def _with_task_head(model: Model, spec: ViTSpec, loaded: dict | None, seed: int,
                    head_from_checkpoint=(), base: str = "scratch") -> dict:
    """Parameters for `model`: the checkpoint's (`loaded`) backbone, every tensor of which must fit,
    and those of its head tensors of the same path and shape that a `head_from_checkpoint` regex
    matches; the rest fresh, the task's head tensors among them named in a warning.

    When the loaded checkpoint lacks only the head, only the head is initialised (same values as
    in the whole model's init): compiling and running the whole init costs a ViT-B a minute on a CPU.
    """
    key = jax.random.key(seed)
    dummy = jnp.zeros((1, *spec.image_size, spec.num_channels), jnp.float32)
    init = jax.jit(functools.partial(model.init, train=False))
    if loaded is None:
        return jax.tree.map(lambda x: np.asarray(x, np.float32), jax.device_get(init(key, dummy)["params"]))
    features, shapes = jax.eval_shape(functools.partial(model.init_with_output, method=_features_and_head),
                                      key, dummy)
    shapes = traverse_util.flatten_dict(shapes["params"], sep="/")
    reusable = [re.compile(pattern) for pattern in head_from_checkpoint]
    kept = {}
    for path, value in traverse_util.flatten_dict(loaded, sep="/").items():
        fits = path in shapes and shapes[path].shape == value.shape
        if path.startswith("backbone/"):
            if not fits:
                raise BadValue(f"checkpoint tensor {path} {value.shape} does not fit the model "
                               f"({shapes[path].shape if path in shapes else (0,)}).")
            kept[path] = value
        elif fits and any(pattern.fullmatch(path) for pattern in reusable):
            kept[path] = value
    missing = [path for path in shapes if path not in kept]
    new_head = sorted(path for path in missing if path.startswith("head/"))
    if new_head:
        log.warning("Some weights of the model were not initialized from the checkpoint at %s and are "
                    "newly initialized by the task's head: %s. Train this model on a down-stream task "
                    "before using it for predictions.", base, new_head)
    if len(new_head) < len(missing):
        log.info("%d tensors that %s has no counterpart of (LoRA adapters) start from their initialisers.",
                 len(missing) - len(new_head), base)
    kept_head = sorted(path for path in kept if path.startswith("head/"))
    if kept_head:
        log.info("keeping the trained head tensors of %s: %s", base, kept_head)
    if any(not path.startswith("head/") for path in missing):
        fresh = init(key, dummy)
    elif missing:
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), features)
        fresh = jax.jit(functools.partial(model.init, method=_head))(key, zeros)
    else:
        fresh = {"params": {}}
    fresh = traverse_util.flatten_dict(jax.device_get(fresh["params"]), sep="/")
    return traverse_util.unflatten_dict(
        {path: np.asarray(kept[path] if path in kept else fresh[path], np.float32) for path in shapes}, sep="/")


def _features_and_head(model: Model, images):
    features = model.backbone(images, train=False)
    model.head(features)
    return features


def _head(model: Model, features):
    return model.head(features)
