"""Exponential moving average of the weights, kept by the trainer next to the params (float32).

    ema = ema_init(params)
    ema = ema_update(ema, new_params, optim_cfg.ema_decay)   # inside the jitted train step

Evaluate with the EMA weights by passing `ema` where the params go.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def ema_init(params):
    """A float32 copy of `params` to start the average from."""
    return jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)


def ema_update(ema, params, decay: float):
    """`decay * ema + (1 - decay) * params`, leaf by leaf (decay 0 copies the params)."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(e.dtype), ema, params)
