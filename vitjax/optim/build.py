"""`build_optimizer`: `config.optim` + the parameter tree → one optax transformation and its description.

The transformation, per update:

    trained params:  clip (global norm of started groups) → direction (adam / momentum / lion)
                     → weight decay (masked) → × -(base_lr(t) · multiplier · [t ≥ start] · lr_scale),
                     in `optax.MultiSteps` when `grad_accum_steps > 1`
    frozen params:   optax.set_to_zero(): no optimizer state, no accumulator

"Frozen" means frozen for the whole run; a group that unfreezes later trains from its start step
through a zero-then-positive rate instead.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vitjax import durations
import vitjax.optim.groups as groups_lib
from vitjax.errors import BadValue
from vitjax.optim.transforms import clip_by_active_global_norm, scale_by_group_lr

OPTIMIZERS = ("adamw", "sgd", "lion")
SCHEDULES = ("cosine", "linear", "constant", "step", "cyclic")
CYCLIC_MODES = ("triangular", "onecycle")
MOMENTUM_DTYPES = ("float32", "bfloat16")
# Never weight-decayed besides 0/1-d tensors (biases, norm scales, layer scales): tokens and position
# embeddings, i.e. anything held directly by `embeddings/` (the patch projection kernel is decayed).
NO_DECAY = re.compile(r"(.*/)?(embeddings/[^/]+|[^/]*(token|position_embeddings|pos_embed)[^/]*)")


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """What the trainer needs from the optimizer room.

    tx:              the optax transformation (init / update).
    trainable_mask:  pytree of bools like the params: False for params frozen for the whole run.
    backbone_frozen: every `backbone/` param is frozen for the whole run, so the step can stop the
                     gradient at the backbone's output (`Model(..., frozen_backbone=True)`).
    lr_fns:          group name -> fn(train step) -> learning rate of that group (before the plateau
                     scale), for logging.
    groups:          the resolved parameter groups, in rule order.
    """

    tx: optax.GradientTransformation
    trainable_mask: Any
    backbone_frozen: bool
    lr_fns: dict[str, Callable[[int], Any]]
    groups: tuple[groups_lib.Group, ...]
    steps_per_epoch: int

    def describe(self) -> str:
        """The group table (regex, #tensors, #params, lr multiplier, start step/epoch) to print and save."""
        return groups_lib.describe(self.groups, self.steps_per_epoch)


def decay_mask(params) -> Any:
    """Pytree of bools: True where weight decay applies (not biases, norms, tokens, position embeddings)."""
    return jax.tree.map(lambda path, p: np.ndim(p) > 1 and NO_DECAY.fullmatch(path) is None,
                        groups_lib.path_tree(params), params)


def base_schedule(optim_cfg, total_updates: int, warmup_updates: int,
                  to_updates: Callable[[Any, str], int] = lambda value, key: int(value)) -> optax.Schedule:
    """The base learning rate per optimizer update: linear warmup from 0, then cosine/linear/constant,
    step decay or a cyclic rate (a one-cycle rate rises through the warmup itself, see
    `vitjax.optim.config`). `to_updates(value, key)` turns a duration in the config (bare numbers are
    epochs) into optimizer updates from the start of training."""
    lr, kind = optim_cfg.lr, optim_cfg.schedule
    if kind not in SCHEDULES:
        raise BadValue(f"optim.schedule={kind!r}: use one of {SCHEDULES}")
    if kind != "step" and (optim_cfg.step.every is not None or optim_cfg.step.milestones):
        raise BadValue(f"optim.step.every / optim.step.milestones are set but optim.schedule={kind!r}; "
                       f"set optim.schedule='step' or clear them")
    if not 0 <= warmup_updates < total_updates:
        raise BadValue(f"optim.warmup={optim_cfg.warmup!r} is {warmup_updates} updates but the run has only "
                       f"{total_updates}; shorten the warmup")
    decay_updates = total_updates - warmup_updates
    if kind == "cyclic" and optim_cfg.cyclic.mode not in CYCLIC_MODES:
        raise BadValue(f"optim.cyclic.mode={optim_cfg.cyclic.mode!r}: use one of {CYCLIC_MODES}")
    if kind == "cyclic" and optim_cfg.cyclic.mode == "onecycle":
        return _one_cycle(optim_cfg, total_updates, warmup_updates)
    if kind == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_updates, alpha=optim_cfg.end_lr_fraction)
    elif kind == "linear":
        main = optax.linear_schedule(lr, lr * optim_cfg.end_lr_fraction, decay_updates)
    elif kind == "step":
        main = optax.piecewise_constant_schedule(
            lr, {m - warmup_updates: optim_cfg.step.gamma
                 for m in _milestones(optim_cfg, total_updates, warmup_updates, to_updates)})
    elif kind == "cyclic":
        main = _triangular(optim_cfg, to_updates)
    else:
        main = optax.constant_schedule(lr)
    if not warmup_updates:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_updates), main], [warmup_updates])


def _milestones(optim_cfg, total_updates: int, warmup_updates: int, to_updates) -> list[int]:
    """The updates (from the start of training) at which the step schedule multiplies the rate by gamma."""
    cfg = optim_cfg.step
    if (cfg.every is None) == (not cfg.milestones):
        raise BadValue(f"optim.schedule='step' needs exactly one of optim.step.every (e.g. '7 epochs') and "
                       f"optim.step.milestones (e.g. ('30 epochs', '60 epochs')); got every={cfg.every!r}, "
                       f"milestones={tuple(cfg.milestones)!r}")
    if not 0 < cfg.gamma <= 1:
        raise BadValue(f"optim.step.gamma={cfg.gamma}: use a factor in (0, 1]")
    if cfg.every is not None:
        every = to_updates(cfg.every, "optim.step.every")
        if every < 1:
            raise BadValue(f"optim.step.every={cfg.every!r} is less than one optimizer update; lengthen it")
        return list(range(every, total_updates, every))
    milestones = [to_updates(m, f"optim.step.milestones[{i}]") for i, m in enumerate(cfg.milestones)]
    for i, m in enumerate(milestones):
        if not warmup_updates < m < total_updates or (i and m <= milestones[i - 1]):
            raise BadValue(f"optim.step.milestones[{i}]={cfg.milestones[i]!r} is update {m}: milestones must "
                           f"increase and lie after the warmup ({warmup_updates} updates) and before the "
                           f"end ({total_updates})")
    return milestones


def _cyclic_low(optim_cfg) -> float:
    low = optim_cfg.cyclic.low_fraction
    if not 0 < low < 1:
        raise BadValue(f"optim.cyclic.low_fraction={low}: use a fraction of optim.lr in (0, 1)")
    return optim_cfg.lr * low


def _triangular(optim_cfg, to_updates) -> optax.Schedule:
    """A triangle wave from the peak down to `lr * low_fraction` (half a period) and back, period after period."""
    period = to_updates(optim_cfg.cyclic.period, "optim.cyclic.period")
    if period < 2:
        raise BadValue(f"optim.cyclic.period={optim_cfg.cyclic.period!r} is {period} optimizer updates; a "
                       f"cycle needs at least 2")
    high, low = optim_cfg.lr, _cyclic_low(optim_cfg)

    def schedule(count):
        phase = jnp.mod(count, period) / period              # 0 at the peak, 0.5 at the low point
        return low + (high - low) * jnp.abs(1.0 - 2.0 * phase)

    return schedule


def _one_cycle(optim_cfg, total_updates: int, warmup_updates: int) -> optax.Schedule:
    """Smith's one cycle: cosine from `lr * low_fraction` up to `lr` over the warmup, then cosine down
    to `lr * end_lr_fraction` at the end of training."""
    low = _cyclic_low(optim_cfg)
    return optax.piecewise_interpolate_schedule(
        "cosine", low, {warmup_updates: optim_cfg.lr / low,
                        total_updates: optim_cfg.end_lr_fraction})


def _direction(optim_cfg, decay: Any) -> optax.GradientTransformation:
    """The optimizer's update direction, with weight decay where `decay` (a bool pytree) says: added
    to the gradient before momentum for SGD (L2, as torch does), decoupled for AdamW and Lion."""
    wd = optim_cfg.weight_decay
    weight_decay = optax.add_decayed_weights(wd, mask=decay) if wd else optax.identity()
    momentum_dtype = optim_cfg.momentum_dtype
    if momentum_dtype not in MOMENTUM_DTYPES:
        raise BadValue(f"optim.momentum_dtype={momentum_dtype!r}: use one of {MOMENTUM_DTYPES}")
    if optim_cfg.name == "sgd":
        if not optim_cfg.momentum:
            return weight_decay
        return optax.chain(weight_decay, optax.trace(optim_cfg.momentum, nesterov=optim_cfg.nesterov,
                                                     accumulator_dtype=momentum_dtype))
    b1 = 0.9 if optim_cfg.b1 is None else optim_cfg.b1
    if optim_cfg.name == "adamw":
        b2 = 0.999 if optim_cfg.b2 is None else optim_cfg.b2
        return optax.chain(optax.scale_by_adam(b1, b2, optim_cfg.eps, mu_dtype=momentum_dtype), weight_decay)
    b2 = 0.99 if optim_cfg.b2 is None else optim_cfg.b2
    return optax.chain(optax.scale_by_lion(b1, b2, mu_dtype=momentum_dtype), weight_decay)


def build_optimizer(optim_cfg, params, *, num_layers: int, steps_per_epoch: int, total_steps: int,
                    batch_size: int, extra_rules=()) -> Optimizer:
    """Build the optimizer for `params` (the model's parameter tree, paths `backbone/...`, `head/...`).

    `num_layers` is the backbone depth; `extra_rules` go ahead of the freeze preset (LoRA's); `steps_per_epoch`, `total_steps` count train steps (calls of the
    train step, one global batch of `batch_size` examples each). Raises ValueError naming the config key
    for anything inconsistent (unknown names, unmatched params, dead regexes, too-long warmup, ...).
    """
    if optim_cfg.name not in OPTIMIZERS:
        raise ValueError(f"optim.name={optim_cfg.name!r}: use one of {OPTIMIZERS}")
    if steps_per_epoch < 1 or total_steps < 1 or batch_size < 1:
        raise ValueError(f"build_optimizer: steps_per_epoch={steps_per_epoch}, total_steps={total_steps} and "
                         f"batch_size={batch_size} must all be positive")
    accum = optim_cfg.grad_accum_steps
    if not 1 <= accum <= total_steps:
        raise BadValue(f"optim.grad_accum_steps={accum}: use 1 <= grad_accum_steps <= total_steps "
                       f"({total_steps})")
    convert = functools.partial(durations.to_steps, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                                batch_size=batch_size)
    rules = groups_lib.expand_rules(optim_cfg, num_layers,
                                    lambda value, key: convert(value, bare="epochs", name=key), extra_rules)
    groups, leaf_groups = groups_lib.resolve(rules, params, num_layers=num_layers,
                                             layer_decay=optim_cfg.layer_decay, end=total_steps)
    trainable = jax.tree.map(lambda g: g.trains, leaf_groups)
    if not any(jax.tree.leaves(trainable)):
        raise BadValue(f"optim: no parameter trains during the run; groups:\n"
                       f"{groups_lib.describe(groups, steps_per_epoch)}")

    def per_trained_leaf(fn):
        """A pytree like the updates the 'train' branch sees: fn(group) on trained leaves, masked elsewhere."""
        return jax.tree.map(lambda g: fn(g) if g.trains else optax.MaskedNode(), leaf_groups)

    starts = per_trained_leaf(lambda g: _first_update(g.start, accum))
    total_updates = total_steps // accum
    warmup_updates = round(convert(optim_cfg.warmup, name="optim.warmup") / accum)
    schedule = base_schedule(optim_cfg, total_updates, warmup_updates,
                             lambda value, key: round(convert(value, bare="epochs", name=key) / accum))
    decay = jax.tree.map(lambda keep, d: d if keep else optax.MaskedNode(), trainable, decay_mask(params))
    chain = [clip_by_active_global_norm(optim_cfg.clip_grad_norm, starts)] if optim_cfg.clip_grad_norm else []
    chain += [_direction(optim_cfg, decay),
              scale_by_group_lr(schedule, per_trained_leaf(lambda g: g.multiplier), starts)]
    train = optax.chain(*chain)
    if accum > 1:
        train = optax.MultiSteps(train, every_k_schedule=accum).gradient_transformation()
    labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
    tx = optax.multi_transform({"train": train, "frozen": optax.set_to_zero()}, labels)
    paths = jax.tree.leaves(groups_lib.path_tree(params))
    backbone = [t for p, t in zip(paths, jax.tree.leaves(trainable)) if p.startswith("backbone/")]
    return Optimizer(tx=tx, trainable_mask=trainable, backbone_frozen=bool(backbone) and not any(backbone),
                     lr_fns={g.name: _group_lr(schedule, g, accum) for g in groups if g.trains},
                     groups=tuple(groups), steps_per_epoch=steps_per_epoch)


def _group_lr(schedule: optax.Schedule, group: groups_lib.Group, accum: int) -> Callable[[int], Any]:
    """fn(train step) -> the group's learning rate at the update that step contributes to."""
    start = _first_update(group.start, accum)

    def lr(step):
        update = step // accum
        return schedule(update) * group.multiplier * (update >= start)

    return lr


def _first_update(start_step: int, accum: int) -> int:
    """The first optimizer update made at or after train step `start_step` (ceil division)."""
    return -(-start_step // accum)
