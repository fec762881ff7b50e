"""Reduce-on-plateau, host side: shrink the learning rate when a validation metric stops improving.

The trainer owns one `Plateau`, calls `scale = plateau.update(value)` after each evaluation and hands
the scale to the device with `opt_state = vitjax.optim.set_lr_scale(opt_state, scale)`. The scale is a
float32 scalar leaf of the optimizer state that multiplies every group's rate, so changing it does not
recompile the train step. `state_dict()` / `resumed(state)` let the trainer checkpoint and resume it.
"""
from __future__ import annotations

import dataclasses
import math

from vitjax.errors import BadValue
from vitjax.tracking import MetricTracker


@dataclasses.dataclass
class Plateau(MetricTracker):
    """Track eval metric `metric`; after `patience` evaluations without improvement (the shared
    `MetricTracker` rule), multiply the scale by `factor` (not below `min_scale`), then wait
    `cooldown` evaluations before counting again."""

    config_key = "optim.plateau.mode"
    mode: str = "min"
    metric: str = "loss"
    factor: float = 0.5
    patience: int = 2
    min_scale: float = 0.01
    cooldown: int = 0
    scale: float = 1.0
    cooldown_left: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.factor < 1:
            raise BadValue(f"optim.plateau.factor={self.factor}: use a factor in (0, 1) (1.0 turns plateau off)")
        if self.patience < 1 or self.cooldown < 0 or not 0 <= self.min_scale <= 1 or self.min_delta < 0:
            raise BadValue(f"optim.plateau: need patience >= 1, cooldown >= 0, 0 <= min_scale <= 1 and "
                           f"min_delta >= 0 (got patience={self.patience}, cooldown={self.cooldown}, "
                           f"min_scale={self.min_scale}, min_delta={self.min_delta})")

    def update(self, value: float) -> float:
        """Record one evaluation's metric value and return the learning-rate scale to use next."""
        if not math.isfinite(float(value)):
            raise ValueError(f"Plateau.update got a non-finite metric value {value}")
        self.record(value)
        if self.cooldown_left:
            self.cooldown_left, self.bad_evals = self.cooldown_left - 1, 0
        if self.bad_evals >= self.patience:
            self.scale = max(self.scale * self.factor, self.min_scale)
            self.bad_evals, self.cooldown_left = 0, self.cooldown
        return self.scale


def build_plateau(optim_cfg) -> Plateau | None:
    """The `Plateau` that `optim_cfg.plateau` asks for, or None when it is off (factor 1.0)."""
    cfg = optim_cfg.plateau
    if cfg.factor == 1.0:
        return None
    return Plateau(metric=cfg.metric, mode=cfg.mode, factor=cfg.factor, patience=cfg.patience,
                   min_scale=cfg.min_scale, cooldown=cfg.cooldown, min_delta=cfg.min_delta)
