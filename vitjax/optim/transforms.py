"""Optax transformations for per-parameter learning rates, gated clipping and the plateau scale.

`scale_by_group_lr` applies, per parameter, `-base_lr(count) * multiplier * [count >= start] * lr_scale`:
one compiled update for every group, where a group that has not started yet simply gets a zero rate
(gradual unfreezing without recompiling). Before its start a group's gradients still feed its
optimizer moments, so it starts moving with warmed-up statistics, not from Adam's cold start.

`lr_scale` is a float32 scalar in the optimizer state that the host can replace between steps with
`set_lr_scale` (reduce-on-plateau): same shape and dtype, so the jitted train step is not recompiled.

Counts are optimizer updates (with gradient accumulation, one update per `grad_accum_steps` train steps).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class GroupLRState(NamedTuple):
    """`count`: optimizer updates done; `lr_scale`: host-set factor on every group's rate (1 at start)."""

    count: jax.Array
    lr_scale: jax.Array


class ActiveClipState(NamedTuple):
    """`count`: optimizer updates done (to know which groups are active)."""

    count: jax.Array


def scale_by_group_lr(schedule: Callable[[jax.Array], jax.Array], multipliers: Any,
                      starts: Any) -> optax.GradientTransformation:
    """Scale each update by minus its group's learning rate.

    `multipliers` and `starts` are pytrees shaped like the updates (python floats / ints, static):
    a leaf's rate is `schedule(count) * multiplier * (count >= start) * lr_scale`.
    """

    def init_fn(params):
        del params
        return GroupLRState(jnp.zeros([], jnp.int32), jnp.ones([], jnp.float32))

    def update_fn(updates, state, params=None):
        del params
        base = schedule(state.count) * state.lr_scale

        def scale(u, multiplier, start):
            rate = base * multiplier
            if start:
                rate = jnp.where(state.count >= start, rate, 0.0)
            return (-rate * u).astype(u.dtype)

        updates = jax.tree.map(scale, updates, multipliers, starts)
        return updates, GroupLRState(optax.safe_increment(state.count), state.lr_scale)

    return optax.GradientTransformation(init_fn, update_fn)


def clip_by_active_global_norm(max_norm: float, starts: Any) -> optax.GradientTransformation:
    """Clip updates to a global norm of `max_norm`, counting only parameters whose group has started.

    Before a gradually unfrozen group starts, its (unused) gradients do not shrink the others' updates.
    """

    def init_fn(params):
        del params
        return ActiveClipState(jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params

        def sq_norm(u, start):
            total = jnp.sum(jnp.square(u.astype(jnp.float32)))
            return jnp.where(state.count >= start, total, 0.0) if start else total

        norm = jnp.sqrt(sum(jax.tree.leaves(jax.tree.map(sq_norm, updates, starts))))
        factor = jnp.where(norm < max_norm, 1.0, max_norm / norm)
        updates = jax.tree.map(lambda u: (u * factor).astype(u.dtype), updates)
        return updates, ActiveClipState(optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def get_lr_scale(opt_state) -> float:
    """The plateau scale currently in `opt_state` (built by `vitjax.optim.build_optimizer`)."""
    return float(optax.tree_utils.tree_get(opt_state, "lr_scale"))


def set_lr_scale(opt_state, scale: float):
    """Return `opt_state` with the plateau scale set to `scale` (keeps shape, dtype and sharding)."""
    old = optax.tree_utils.tree_get(opt_state, "lr_scale")
    new = jnp.asarray(scale, jnp.float32)
    if isinstance(old, jax.Array):
        new = jax.device_put(new, old.sharding)
    return optax.tree_utils.tree_set(opt_state, lr_scale=new)
