"""Builds a run from its config with pure builders (none writes a file), in the order data flows:

- `make_mesh(config)`: the device mesh, batch sizes checked against it;
- `open_data(config)`: the task class and its source's splits (`ImageDataset`);
- `build_model(config, task_class, dataset)`: the task, the backbone + head `Model`, its start
  parameters (checkpoint weights + fresh head), preprocessing and where the weights came from;
- `build_training(config, params, spec, dataset)`: optimizer with its parameter groups, plateau,
  step counts;
- the steps: `Run.jit_train_step`, `Run.jit_eval_step`.

`build_run` composes all of them (the train mode); `build_eval_run` the data and a trained model
(the evaluate mode); `build_export_run` the model the run recorded over its recorded classes, no data
and no base checkpoint (export).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from vitjax import config as config_lib
from vitjax import durations, optim, parallel, registry
from vitjax.checkpoints.families import load_checkpoint
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data import pipeline, splits as splits_lib
from vitjax.data.device_augment import train_transform
from vitjax.data.records import ImageDataset
from vitjax.errors import BadValue, UserError
from vitjax.lora import run as lora_run
from vitjax.models.model import Model, param_shapes
from vitjax.models.vit import ViT, ViTSpec
from vitjax.train import run_model
from vitjax.train.checkpointing import has_checkpoints
from vitjax.train.fast_paths import backbone_options
from vitjax.train.steps import TrainState, make_eval_step, make_train_step

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
    """One training run's pieces; built by `build_run`."""

    config: object
    workdir: str
    mesh: jax.sharding.Mesh
    dataset: ImageDataset
    task: registry.Task
    spec: ViTSpec
    model: Model
    preprocessing: Preprocessing
    init_params: dict  # float32 host arrays: checkpoint weights + fresh head
    base: str  # where the backbone came from: a hub id, a folder, or "scratch"
    # From `build_training`; absent (None, 0) in a run built for evaluation only.
    optimizer: optim.Optimizer | None = None
    plateau: optim.Plateau | None = None
    steps_per_epoch: int = 0
    total_steps: int = 0
    eval_every_steps: int = 0
    checkpoint_every_steps: int = 0  # 0: checkpoints at evaluations only

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def per_process_batch(self) -> int:
        return self.config.train.batch_size // jax.process_count()

    @property
    def per_process_eval_batch(self) -> int:
        return (self.config.train.eval_batch_size or self.config.train.batch_size) // jax.process_count()

    # ---- state -------------------------------------------------------------------------------
    def _init_fn(self):
        ema = self.config.optim.ema_decay > 0

        def init(params):
            return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=self.optimizer.tx.init(params),
                              ema_params=params if ema else None,
                              rng=jax.random.key_data(jax.random.key(self.config.seed)))

        return init

    @functools.cached_property
    def state_shardings(self) -> TrainState:
        """Where each part of the train state lives on the mesh: parameters (and the EMA) by
        `parallel.param_shardings`, optimizer state next to its parameters, the rest replicated."""
        shapes = jax.eval_shape(self._init_fn(), self.init_params)
        params = parallel.param_shardings(shapes.params, self.mesh,
                                          min_size=self.config.mesh.fsdp_min_size)
        return TrainState(
            step=parallel.replicated(self.mesh),
            params=params,
            opt_state=parallel.shardings_like_params(shapes.opt_state, shapes.params, params,
                                                     self.mesh),
            ema_params=None if shapes.ema_params is None else params,
            rng=parallel.replicated(self.mesh))

    def _param_shardings(self):
        shapes = jax.eval_shape(lambda params: params, self.init_params)
        return parallel.param_shardings(shapes, self.mesh, min_size=self.config.mesh.fsdp_min_size)

    def placed_params(self):
        """`init_params` on the mesh with the parameter shardings (no optimizer needed)."""
        return jax.device_put(self.init_params, self._param_shardings())

    def abstract_params(self):
        """The shapes, dtypes and shardings of `init_params`, without values (a restore's target)."""
        return jax.tree.map(lambda p, sharding: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=sharding),
                            self.init_params, self._param_shardings())

    def init_state(self) -> TrainState:
        """The step-0 train state, placed on the mesh with the parameter shardings."""
        shardings = self.state_shardings
        params = jax.device_put(self.init_params, shardings.params)
        return jax.jit(self._init_fn(), out_shardings=shardings)(params)

    # ---- data --------------------------------------------------------------------------------
    @functools.cached_property
    def record_transforms(self) -> pipeline.RecordTransforms | None:
        """The task's record transforms; None for image + class-label records."""
        return self.task.data_transforms(self.preprocessing, self.config.data)

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

    # ---- steps -------------------------------------------------------------------------------
    @functools.cached_property
    def normalize(self):
        dtype = jnp.dtype(self.config.model.dtype)
        return lambda images: self.preprocessing.normalize(images).astype(dtype)

    def jit_train_step(self):
        augment = None if self.record_transforms is not None else train_transform(
            self.config.data, self.preprocessing.input_size, self.dataset.num_classes)
        step = make_train_step(self.model, self.task, self.optimizer.tx, self.normalize,
                               trainable_mask=self.optimizer.trainable_mask,
                               backbone_frozen=self.optimizer.backbone_frozen, augment=augment,
                               ema_decay=self.config.optim.ema_decay)
        # The state keeps its shardings from step to step; metrics come back replicated, so every
        # process can read them.
        return jax.jit(step, donate_argnums=(0,),
                       out_shardings=(self.state_shardings, parallel.replicated(self.mesh)))

    def jit_eval_step(self):
        # Replicated metrics: each process reads the totals over every host's examples.
        return jax.jit(make_eval_step(self.model, self.task, self.normalize),
                       out_shardings=parallel.replicated(self.mesh))

    def lr_at(self, step: int, opt_state) -> float:
        """The largest group learning rate of the update made at `step` (0-based), with the
        plateau scale: `optim.lr` times the schedule, before layer decay lowers deeper groups."""
        rate = max(float(fn(step)) for fn in self.optimizer.lr_fns.values())
        return rate * optim.get_lr_scale(opt_state)

    def eval_params(self, state: TrainState):
        """The weights evaluated and exported: the EMA when it is on, else the params."""
        return state.params if state.ema_params is None else state.ema_params


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


@dataclasses.dataclass
class Built:
    """What `build_model` returns: the task and its model with start parameters."""

    task: registry.Task
    spec: ViTSpec
    model: Model
    preprocessing: Preprocessing
    init_params: dict
    base: str


def build_model(config, task_class: type[registry.Task], dataset: ImageDataset) -> Built:
    """The task over `dataset`'s classes, the backbone + task head, and the start parameters:
    the checkpoint's tensors where they fit, fresh ones elsewhere."""
    log.info("data %s: %s", dataset.source, {s: len(v) for s, v in dataset.splits.items()})
    task = task_class(config.task, dataset.class_names)
    spec, params, preprocessing, base = load_backbone(config, dataset.class_names)
    model = _task_model(config, task, spec)
    params = _with_task_head(model, spec, params, config.seed, task.head_from_checkpoint(), base)
    return Built(task=task, spec=spec, model=model, preprocessing=preprocessing, init_params=params,
                 base=base)


def _task_model(config, task: registry.Task, spec: ViTSpec) -> Model:
    """The backbone of `spec` with the task's head (and LoRA adapters when `config.lora` is on)."""
    return lora_run.build_model(config.lora, Model(ViT(spec, **backbone_options(config.model)),
                                                   task.make_head(spec)))


def build_training(config, params: dict, spec: ViTSpec, dataset: ImageDataset) -> dict:
    """The `Run` fields of training: optimizer (parameter groups), plateau and step counts."""
    steps_per_epoch = len(dataset.splits["train"]) // config.train.batch_size
    if steps_per_epoch == 0:
        raise BadValue(f"the train split has {len(dataset.splits['train'])} images, fewer than "
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
    return dict(optimizer=optimizer, plateau=optim.build_plateau(config.optim),
                steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                eval_every_steps=max(1, min(eval_every, total_steps)),
                checkpoint_every_steps=checkpoint_every)


def build_eval_run(config, workdir: str, trained) -> Run:
    """A run that evaluates a trained model (`vitjax.predictor.Predictor`) on `config.data`: data,
    model and parameters, no optimizer, no base checkpoint."""
    mesh = make_mesh(config)
    _, dataset = open_data(config)
    task = trained.task
    if task.has_classes and dataset.class_names != task.class_names:
        raise BadValue(f"the model's classes {task.class_names} are not the classes "
                       f"{dataset.class_names} of config.data.source={config.data.source!r}.")
    return Run(config=config, workdir=workdir, mesh=mesh, dataset=dataset, task=task,
               spec=trained.spec, model=trained.model, preprocessing=trained.preprocessing,
               init_params=trained.params, base=config.model.checkpoint or "scratch")


def recorded_dataset(workdir: str) -> ImageDataset:
    """The source and class names the run in `workdir` recorded in data_split.json, without records
    (what export needs, without opening the data)."""
    path = os.path.join(workdir, splits_lib.SPLIT_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: {workdir} holds no training run; train first.")
    recorded = splits_lib.read_split(path, "train the run again to rewrite it")
    return ImageDataset(source=recorded["source"], splits={}, class_names=recorded["class_names"])


def build_export_run(config, workdir: str) -> Run:
    """A run that exports: the task and model over the recorded classes, no data, no optimizer, no
    base checkpoint (the architecture and preprocessing come from the workdir's `model.json`).
    `init_params` holds the parameters' shapes only (`Run.abstract_params`)."""
    registry.load_plugins(config.task.plugins)
    dataset = recorded_dataset(workdir)
    task = registry.get_task(config.task.name)(config.task, dataset.class_names)
    spec, preprocessing = recorded_model(config, workdir, dataset.class_names)
    model = _task_model(config, task, spec)
    return Run(config=config, workdir=workdir, mesh=make_mesh(config), dataset=dataset, task=task,
               spec=spec, model=model, preprocessing=preprocessing, init_params=param_shapes(model, spec),
               base=config.model.checkpoint or "scratch")


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
            f"{os.path.join(workdir, run_model.MODEL_FILE)} is missing (the run was trained by an older "
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
    built = build_model(config, task_class, dataset)
    training = build_training(config, built.init_params, built.spec, dataset)
    built.init_params = lora_run.prepare_params(config.lora, built.init_params,
                                                training["optimizer"].trainable_mask)
    return Run(config=config, workdir=workdir, mesh=mesh, dataset=dataset, **vars(built), **training)


def write_run_files(run: Run) -> None:
    """Process 0 writes the audit file of the split, the parameter-group table and the model the run
    resolved (`run_model`: what the modes after training rebuild it from) to the workdir."""
    if jax.process_index() == 0:
        table = run.optimizer.describe()
        log.info("parameter groups:\n%s", table)
        checkpoints = os.path.join(run.workdir, "checkpoints")
        splits_lib.write_split(run.workdir, run.dataset, replace=not has_checkpoints(checkpoints))
        with open(os.path.join(run.workdir, "param_groups.txt"), "w", encoding="utf-8") as f:
            f.write(table + "\n")
        run_model.write(run.workdir, run.spec, run.preprocessing, run.base)


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
