"""Early stopping and best-value tracking on one evaluation metric (min or max)."""

from __future__ import annotations

import dataclasses

from vitjax.errors import BadValue


@dataclasses.dataclass
class EarlyStopping:
    """Stops after `patience` evaluations without an improvement larger than `min_delta`.

    `patience=0` never stops. The state (best value, bad-evaluation count) is plain data so
    it can be saved with a checkpoint and restored on resume.
    """
    mode: str = "max"
    patience: int = 0
    min_delta: float = 0.0
    best: float | None = None
    bad_evals: int = 0

    def __post_init__(self):
        if self.mode not in ("min", "max"):
            raise BadValue(f"early-stopping mode must be 'min' or 'max', got {self.mode!r}")

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        delta = value - self.best if self.mode == "max" else self.best - value
        return delta > self.min_delta

    def update(self, value: float) -> bool:
        """Records one evaluation; returns True when training should stop."""
        if self.improved(value):
            self.best, self.bad_evals = float(value), 0
        else:
            self.bad_evals += 1
        return self.patience > 0 and self.bad_evals >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def restore(self, state: dict) -> None:
        self.best, self.bad_evals = state["best"], state["bad_evals"]
