"""Early stopping on one evaluation metric (min or max), over the shared `MetricTracker`."""

from __future__ import annotations

import dataclasses

from vitjax.tracking import MetricTracker


@dataclasses.dataclass
class EarlyStopping(MetricTracker):
    """Stops after `patience` evaluations without an improvement larger than `min_delta`;
    `patience=0` never stops."""

    config_key = "config.train.best_mode"
    patience: int = 0

    def update(self, value: float) -> bool:
        """Records one evaluation; returns True when training should stop."""
        self.record(value)
        return self.should_stop()

    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_evals >= self.patience

    def why(self, metric: str) -> str:
        """Why it stopped, true also when an evaluation tied the best (the checkpoints are ranked by the
        value alone, so the latest of tied ones is the best checkpoint)."""
        return (f"{metric} has not beaten its best, {self.best:.6g}, by more than {self.min_delta:g} in "
                f"{self.bad_evals} evaluations (a tie is no improvement; the best checkpoint is ranked by the "
                "value alone, the latest of equal ones first)")
