"""Tracking one evaluation metric: its best value so far and the evaluations since it improved.

The one improvement rule and the one saved state shared by early stopping
(`vitjax.train.early_stopping`) and reduce-on-plateau (`vitjax.optim.plateau`), and the one lookup of
a tracked metric in an evaluation summary (`tracked_value`).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from vitjax.errors import BadKey, BadValue


@dataclasses.dataclass
class MetricTracker:
    """An evaluation improves when it beats the best value by more than `min_delta` in direction
    `mode` ("min" for losses, "max" for accuracies). The state is plain data (`state_dict`,
    `resumed`) so it is saved with a checkpoint and restored on resume."""

    config_key: ClassVar[str] = "mode"  # names the config knob in error messages
    mode: str = "max"
    min_delta: float = 0.0
    best: float | None = None
    bad_evals: int = 0

    def __post_init__(self):
        if self.mode not in ("min", "max"):
            raise BadValue(f"{self.config_key}={self.mode!r}: use 'min' (losses) or 'max' (accuracies)")

    def record(self, value: float) -> bool:
        """Records one evaluation's value; True when it improved on the best (which it becomes)."""
        value = float(value)
        delta = None if self.best is None else (value - self.best if self.mode == "max" else self.best - value)
        if delta is None or delta > self.min_delta:
            self.best, self.bad_evals = value, 0
            return True
        self.bad_evals += 1
        return False

    def state_dict(self) -> dict:
        """Everything needed to resume (JSON-serialisable)."""
        return dataclasses.asdict(self)

    def resumed(self, state: dict):
        """This tracker with the saved `state` (from `state_dict`) laid over it: the one way early
        stopping and plateau come back on resume (an older checkpoint saved only some fields)."""
        return dataclasses.replace(self, **state)


def tracked_value(summary: dict, metric: str, task_name: str, key: str) -> float:
    """`summary[metric]`; a metric the task does not produce is a KeyError naming the config `key`."""
    if metric not in summary:
        raise BadKey(f"{key}={metric!r} is not a metric of the {task_name!r} task; it produces "
                     f"{sorted(summary)}. Set {key} to one of them.")
    return float(summary[metric])
