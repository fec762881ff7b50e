"""The jit-compiled train and eval steps, built once per run over the device mesh.

The train step differentiates only the trainable parameters (those the optimizer may ever
move), so a frozen backbone or frozen early blocks cost no backward pass; the frozen ones get
zero gradients for the optimizer's bookkeeping. Parameters and optimizer state stay float32;
the model computes in its own dtype (bfloat16 on accelerators). Randomness is derived from
the step number, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any  # None when EMA is off
    rng: jax.Array  # the run's base key; per-step keys are folded in from `step`


def partition(params, mask):
    """Splits a nested-dict pytree into (where mask is True, where it is False)."""
    flat, flat_mask = traverse_util.flatten_dict(params), traverse_util.flatten_dict(mask)
    chosen = {k: v for k, v in flat.items() if flat_mask[k]}
    rest = {k: v for k, v in flat.items() if not flat_mask[k]}
    return traverse_util.unflatten_dict(chosen), traverse_util.unflatten_dict(rest)


def merge(*trees):
    """Inverse of `partition`: the union of disjoint nested-dict pytrees."""
    flat = {}
    for tree in trees:
        flat.update(traverse_util.flatten_dict(tree))
    return traverse_util.unflatten_dict(flat)


def make_train_step(model, task, tx: optax.GradientTransformation, normalize: Callable,
                    *, trainable_mask, backbone_frozen: bool, augment: Callable | None = None,
                    ema_decay: float = 0.0):
    """Returns `step(state, batch) -> (state, (metrics, grad_norm))`, not yet jitted.

    `normalize` maps the uint8 batch images to model inputs (the checkpoint's preprocessing);
    `augment(rng, batch) -> batch` is the optional device-side augmentation (random crop/flip of
    the uint8 images, mixup/cutmix turning labels into soft targets).
    """

    def step(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        aug_rng, dropout_rng = jax.random.split(rng)
        if augment is not None:
            batch = augment(aug_rng, batch)
        images = normalize(batch["image"])
        trainable, frozen = partition(state.params, trainable_mask)

        def loss_fn(trainable_params):
            outputs = model.apply({"params": merge(trainable_params, frozen)}, images, train=True,
                                  frozen_backbone=backbone_frozen, rngs={"dropout": dropout_rng})
            loss, aux = task.loss(outputs, batch)
            return loss, (outputs, aux)

        (loss, (outputs, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        grad_norm = optax.global_norm(grads)
        grads = merge(grads, jax.tree.map(jnp.zeros_like, frozen))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema_params
        if ema is not None:
            ema = optax.incremental_update(params, ema, 1.0 - ema_decay)
        metrics = task.metrics(training=True).single_from_model_output(
            **task.metric_inputs(outputs, batch, aux))
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                                  ema_params=ema)
        return new_state, (metrics, grad_norm)

    return step


def make_eval_step(model, task, normalize: Callable):
    """Returns `step(params, batch) -> metrics` over a padded batch (`batch["valid"]` masks)."""

    def step(params, batch):
        outputs = model.apply({"params": params}, normalize(batch["image"]), train=False)
        _, aux = task.loss(outputs, batch)
        return task.metrics().single_from_model_output(**task.metric_inputs(outputs, batch, aux))

    return step
