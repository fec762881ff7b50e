"""Reduce-on-plateau, host side: shrink the learning rate when a validation metric stops improving.

The trainer owns one `Plateau`, calls `scale = plateau.update(value)` after each evaluation and hands
the scale to the device with `opt_state = vitjax.optim.set_lr_scale(opt_state, scale)`. The scale is a
float32 scalar leaf of the optimizer state that multiplies every group's rate, so changing it does not
recompile the train step. `state_dict()` / `load_state_dict()` let the trainer checkpoint and resume it.
"""
from __future__ import annotations

import dataclasses
import math

from vitjax.errors import BadValue


@dataclasses.dataclass
class Plateau:
    """Track eval metric `metric`; after `patience` evaluations without improvement, multiply the
    scale by `factor` (not below `min_scale`), then wait `cooldown` evaluations before counting again.

    An evaluation improves when it beats the best value by more than `min_delta` in direction `mode`
    ("min" for losses, "max" for accuracies).
    """

    metric: str = "loss"
    mode: str = "min"
    factor: float = 0.5
    patience: int = 2
    min_scale: float = 0.01
    cooldown: int = 0
    min_delta: float = 0.0
    scale: float = 1.0
    best: float | None = None
    bad_evals: int = 0
    cooldown_left: int = 0

    def __post_init__(self):
        if self.mode not in ("min", "max"):
            raise BadValue(f"optim.plateau.mode={self.mode!r}: use 'min' (losses) or 'max' (accuracies)")
        if not 0 < self.factor < 1:
            raise BadValue(f"optim.plateau.factor={self.factor}: use a factor in (0, 1) (1.0 turns plateau off)")
        if self.patience < 1 or self.cooldown < 0 or not 0 <= self.min_scale <= 1 or self.min_delta < 0:
            raise BadValue(f"optim.plateau: need patience >= 1, cooldown >= 0, 0 <= min_scale <= 1 and "
                           f"min_delta >= 0 (got patience={self.patience}, cooldown={self.cooldown}, "
                           f"min_scale={self.min_scale}, min_delta={self.min_delta})")

    def update(self, value: float) -> float:
        """Record one evaluation's metric value and return the learning-rate scale to use next."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"Plateau.update got a non-finite metric value {value}")
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
        if self.cooldown_left:
            self.cooldown_left, self.bad_evals = self.cooldown_left - 1, 0
        if self.bad_evals >= self.patience:
            self.scale = max(self.scale * self.factor, self.min_scale)
            self.bad_evals, self.cooldown_left = 0, self.cooldown
        return self.scale

    def state_dict(self) -> dict:
        """Everything needed to resume (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> "Plateau":
        return cls(**state)


def build_plateau(optim_cfg) -> Plateau | None:
    """The `Plateau` that `optim_cfg.plateau` asks for, or None when it is off (factor 1.0)."""
    cfg = optim_cfg.plateau
    if cfg.factor == 1.0:
        return None
    return Plateau(metric=cfg.metric, mode=cfg.mode, factor=cfg.factor, patience=cfg.patience,
                   min_scale=cfg.min_scale, cooldown=cfg.cooldown, min_delta=cfg.min_delta)
