"""The run configuration: the base ConfigDict every config file starts from, and its checks.

Each room owns its subtree and its defaults (`vitjax.data.config`, `vitjax.optim`, the task
plugin); this module assembles them with the model, train, mesh and distributed knobs, checks
values before anything expensive starts, and saves the resolved config to the run directory.
"""

from __future__ import annotations

import difflib
import json
import math
import os

import ml_collections

from vitjax import durations, optim, quant, storage, sweep_config
from vitjax.data import config as data_config
from vitjax.errors import BadKey, BadValue
from vitjax.files import config_dict as to_dict  # config.json's object; a leaf, so trackers/ use it too
from vitjax.lora import config as lora_config
from vitjax.trackers.config import default_config as trackers_defaults, validate as validate_trackers
from vitjax.models.vit import ViTSpec
from vitjax.workdir import CONFIG, CONFIG_TEXT


def base_config(task: str = "classification", plugins=()) -> ml_collections.ConfigDict:
    """Every knob of a run with its default; config files override what their recipe needs."""
    from vitjax import registry

    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.checkpoint = ""          # hub id or folder (transformers or timm), or a .npz; "" = from scratch
    c.model.image_size = 0           # fine-tune resolution; 0 = the checkpoint's
    c.model.dtype = "bfloat16"       # compute dtype; parameters and optimizer state stay float32
    c.model.spec = ml_collections.ConfigDict()  # ViTSpec fields for from-scratch models
    c.model.drop_path_rate = 0.0     # stochastic depth during training
    c.model.dropout_rate = 0.0       # hidden dropout during training
    c.model.remat = False            # recompute block activations in the backward pass
    c.model.remat_policy = "nothing_saveable"  # with remat, what a block keeps: "nothing_saveable",
                                     # "dots_with_no_batch_dims_saveable" or "dots_saveable"
    # Fast paths (vitjax/train/fast_paths.py), each the same function as the plain path; "auto" = the
    # fast one for the backend.
    c.model.attention = "auto"       # "xla", "einsum" (auto on CPU), or "cudnn" (fused flash attention;
                                     # bfloat16/float16 only, auto on CUDA GPUs)
    c.model.attention_pad = 64       # cudnn: tokens padded to a multiple of this inside attention, masked
    c.model.patch_embed = "auto"     # "conv" (strided convolution) or "matmul" (patches as rows)

    c.data = data_config.default_config()

    c.task = registry.task_config(task, plugins)  # name, plugins (modules / .py files), knobs

    c.optim = optim.default_config()

    c.lora = lora_config.default_config()  # low-rank adapters (vitjax/lora/config.py); off by default

    c.quant = quant.default_config()  # quantization-aware training with qwix (vitjax/quant.py); off by default

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 64          # global batch, split over all devices and hosts
    c.train.eval_batch_size = 0      # 0 = batch_size
    c.train.epochs = 5
    c.train.eval_every = "1 epochs"  # a duration: "N steps", "N epochs", "N examples", "N%"
    c.train.checkpoint_every = "0 steps"  # also checkpoint this often between evaluations (a duration,
                                     # e.g. "200 steps"), bounding what a kill -9 loses; "0 steps" = off
    c.train.log_every = 20           # steps between train-metric log lines
    # Tracked for best checkpoints and early stopping; the task's `best_metric` by default.
    c.train.best_metric, c.train.best_mode = registry.get_task(task).best_metric
    c.train.keep_best = 1            # best checkpoints kept (the latest is always kept too)
    c.train.early_stopping_patience = 0  # evaluations without improvement; 0 = off
    c.train.early_stopping_min_delta = 0.0
    c.train.resume = True            # resume from the latest checkpoint in the workdir
    c.train.test_split = "test"      # evaluated with the best checkpoint at the end ("" = none)
    c.train.export = True            # write best/ in Hugging Face format at the end
    c.train.progress = True          # progress bar on the console
    # Feature cache (vitjax/train/feature_cache.py): with the backbone, or its lower blocks, frozen
    # (optim.freeze "head_only" / "last_n_blocks"), the frozen part runs once over the data and the
    # rest trains on its outputs: a linear probe's epoch costs a matmul. "off"; "on" (an error when
    # the run cannot: device_augment, mixup/cutmix, tasks with their own records); "auto" (on when
    # the run can, its training images are not augmented, and it saves work). Features stay in RAM,
    # or in data.cache_dir when data.cache="disk".
    c.train.feature_cache = "off"
    c.train.feature_cache_views = 1  # augmented views of each training image, computed once; each
                                     # epoch draws one per image at random
    c.train.report_to = "tensorboard"  # any of tensorboard, mlflow, wandb (comma-separated); see config.trackers

    c.trackers = trackers_defaults()  # MLflow / W&B destinations (vitjax/trackers)

    c.sweep = sweep_config.default_config()  # --mode sweep: the search space and study (vitjax/sweep_config.py)

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1                 # data-parallel size; -1 = all devices / fsdp
    c.mesh.fsdp = 1                  # devices sharing each parameter shard
    c.mesh.fsdp_min_size = 2**16     # arrays with fewer elements stay whole (replicated)

    c.distributed = ml_collections.ConfigDict()
    c.distributed.mode = "auto"      # "auto": coordinator set, SLURM srun or Cloud TPU; "on"; "off"
    c.distributed.coordinator = ""   # "host:port" of process 0; "" = auto-detect or single
    c.distributed.num_processes = 0
    c.distributed.process_id = 0

    c.compilation_cache = os.path.join(os.path.expanduser("~"), ".cache", "vitjax", "jax")
    return c


def over_defaults(saved: dict, path: str) -> ml_collections.ConfigDict:
    """A run's saved config (`path`, its config.json, as a dict) laid over the defaults of its task
    and plugins: a key vitjax gained after the run was saved takes its default; a key the defaults
    do not know is an error naming `path`."""
    task = saved.get("task") if isinstance(saved.get("task"), dict) else {}
    defaults = to_dict(base_config(task.get("name", "classification"), task.get("plugins") or ()))
    return ml_collections.ConfigDict(_overlay(defaults, saved, path, "config"))


def _overlay(defaults: dict, saved: dict, path: str, prefix: str) -> dict:
    """`saved` over `defaults`, group by group; an empty default group (model.spec) takes any keys."""
    merged = dict(defaults)
    for key, value in saved.items():
        name = f"{prefix}.{key}"
        if key not in defaults:
            raise BadKey(f"{path}: unknown key {name}.{close_matches(key, defaults)} Remove it from "
                         f"the file, or pass --config. Known keys under {prefix}: {sorted(defaults)}")
        default = defaults[key]
        nested = isinstance(default, dict) and default and isinstance(value, dict)
        merged[key] = _overlay(default, value, path, name) if nested else value
    return merged


def close_matches(key: str, options) -> str:
    found = difflib.get_close_matches(key, list(options), n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(f) for f in found)}?" if found else ""


def check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
               prefix: str = "config") -> None:
    """`config` must have exactly the keys of `reference`, each value of the default's kind.

    A typo is an unknown key; a missing key means a config file replaced a whole subtree
    (`c.train = dict(...)`) instead of setting its keys; a string where a number belongs (or
    the reverse) is named with the default it should look like.
    """
    for key in config.keys():
        name = f"{prefix}.{key}"
        if key not in reference:
            raise BadKey(f"unknown key {name}.{close_matches(key, reference.keys())} "
                         f"Known keys under {prefix}: {sorted(reference.keys())}")
        sub, ref = config[key], reference[key]
        if isinstance(ref, ml_collections.ConfigDict) and len(ref) > 0:
            if not isinstance(sub, ml_collections.ConfigDict):
                raise BadValue(f"{name} must be a group of keys like its default, got {sub!r}.")
            check_keys(sub, ref, name)
        else:
            check_kind(name, sub, ref)
    missing = sorted(set(reference.keys()) - set(config.keys()))
    if missing and prefix != "config.task":  # the task plugin fills in its own defaults
        raise BadKey(f"{prefix} lacks the keys {missing}: set single keys in a config file "
                     f"({prefix}.<key> = ...) rather than replacing {prefix} as a whole.")


# (kind of the default, kinds accepted, how the message names it); bool before int: True is an int.
_KINDS = (
    (bool, (bool,), "true or false"),
    ((int, float), (int, float), "a number"),
    (str, (str, int, float), "a string"),  # durations may also be bare numbers
    ((tuple, list), (tuple, list), "a list or tuple"),
)


def check_kind(name: str, value, default) -> None:
    """Raises ValueError when `value` is not of the kind of `default` (None matches anything)."""
    if default is None or value is None:
        return
    for kind, accepted, words in _KINDS:
        if isinstance(default, kind):
            wrong_bool = isinstance(value, bool) and bool not in accepted
            if wrong_bool or not isinstance(value, accepted):
                raise BadValue(f"{name} must be {words} (its default is {default!r}), got "
                               f"{value!r} of type {type(value).__name__}.")
            return


def validate(config: ml_collections.ConfigDict) -> None:
    """Cheap checks of values, each naming the key and the fix."""
    reference = base_config(config.task.name, config.task.plugins)
    check_keys(config, reference)

    def positive(key, value, kind=(int, float)):
        if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < math.inf:
            words = "a positive integer" if kind is int else "a positive number"
            raise BadValue(f"config.{key} must be {words}, got {value!r}.")

    positive("train.batch_size", config.train.batch_size, int)
    positive("train.epochs", config.train.epochs)
    positive("optim.lr", config.optim.lr)
    positive("train.log_every", config.train.log_every, int)
    positive("train.keep_best", config.train.keep_best, int)
    for key in ("eval_every", "checkpoint_every"):
        amount, _ = durations.parse(config.train[key], name=f"config.train.{key}")
        if key == "eval_every" and amount == 0:
            raise BadValue(f"config.train.eval_every={config.train.eval_every!r} would evaluate and "
                           f"checkpoint after every step; give a positive duration such as "
                           f"'1 epochs' or '500 steps'.")
    if config.train.early_stopping_patience < 0:
        raise BadValue("config.train.early_stopping_patience must be >= 0 (0 = off).")
    if config.train.eval_batch_size < 0:
        raise BadValue("config.train.eval_batch_size must be >= 0 (0 = train.batch_size).")
    if config.train.best_mode not in ("min", "max"):
        raise BadValue(f"config.train.best_mode must be 'min' or 'max', "
                       f"got {config.train.best_mode!r}.")
    if config.model.dtype not in ("float32", "bfloat16", "float16"):
        raise BadValue(f"config.model.dtype must be float32, bfloat16 or float16, "
                       f"got {config.model.dtype!r}.")
    if not config.model.checkpoint and not config.model.spec:
        raise BadValue("set config.model.checkpoint (a hub id or a save_pretrained folder) or "
                       "config.model.spec (a from-scratch ViT) — neither is set.")
    lora_config.validate(config)
    validate_trackers(config)
    depth = known_depth(config.model)
    if config.optim.freeze == "last_n_blocks" and depth is not None \
            and not 0 <= config.optim.last_n_blocks <= depth:
        raise BadValue(f"config.optim.last_n_blocks={config.optim.last_n_blocks} but the model has "
                       f"{depth} blocks; use 0..{depth} (or freeze='full' to train them all).")


def known_depth(model_cfg) -> int | None:
    """The encoder depth, when known without loading weights: the from-scratch spec's, or the
    `num_hidden_layers` of a local checkpoint folder's config.json (hub ids: None)."""
    if not model_cfg.checkpoint:
        return model_cfg.spec.get("num_layers", ViTSpec.num_layers)
    path = os.path.join(os.path.expanduser(model_cfg.checkpoint), "config.json")
    if not os.path.isfile(path):
        return None
    from vitjax.checkpoints import validate  # the checkpoint's own checks, made early
    from vitjax.files import read_json

    checkpoint_config = read_json(path, "download or save the checkpoint again")
    validate.check_model_config(checkpoint_config, path)
    return checkpoint_config.get("num_hidden_layers", ViTSpec.num_layers)


def check_batch_divides(batch_size: int, key: str, devices: int) -> None:
    if batch_size % devices:
        raise BadValue(f"config.{key}={batch_size} is not divisible by the {devices} devices; "
                       f"use a multiple of {devices}, e.g. {max(devices, batch_size // devices * devices)}.")


# Keys that may change between a run and its resume without changing what is computed (the
# mesh only changes where it is computed: a run may resume on another number of devices).
RUN_NEUTRAL = {"train.log_every", "train.progress", "data.workers", "data.prefetch",
               "train.resume", "compilation_cache", "distributed.mode", "distributed.coordinator",
               "distributed.num_processes", "distributed.process_id", "mesh.data", "mesh.fsdp",
               "mesh.fsdp_min_size", "train.eval_batch_size", "train.keep_best",
               "train.test_split", "train.export", "train.checkpoint_every", "train.report_to", "trackers.experiment",
               "trackers.run_name", "trackers.mlflow_tracking_uri", "trackers.registered_model",
               # fast paths: other kernels for the same function
               "model.attention", "model.attention_pad", "model.patch_embed", "model.remat_policy"}


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (run-neutral keys and the sweep's,
    which a trial does not read, ignored)."""
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, name + ".")
        elif va != vb and name not in RUN_NEUTRAL and not name.startswith("sweep."):
            out.append(f"{name}: {va!r} -> {vb!r}")
    return out


def save(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes the resolved config as `config.json` (read back on resume) and `config.txt`.

    Each file is written beside its target and renamed over it, so a run killed while saving
    leaves the previous complete file, never a truncated one that blocks the resume.
    """
    for name, text in ((CONFIG, json.dumps(to_dict(config), indent=2, sort_keys=True)),
                       (CONFIG_TEXT, str(config))):
        storage.write_text(storage.join(workdir, name), text)
