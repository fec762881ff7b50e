"""Metric logging: one JSON line per record in `metrics.jsonl` and TensorBoard event files.

TensorBoard events are written with tensorboardX (clu's writers import TensorFlow). Only
process 0 writes; the other processes get a writer that does nothing.
"""

from __future__ import annotations

import json
import os
import time

import jax


class MetricWriter:
    """Writes scalar metrics to `<workdir>/metrics.jsonl` and `<workdir>/tensorboard/`."""

    def __init__(self, workdir: str, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, scalars: dict[str, float], prefix: str) -> None:
        """Logs `scalars` under `prefix` (e.g. "train", "validation") at `step`."""
        if not self.enabled:
            return
        record = {"step": int(step), "split": prefix, "time": time.time(),
                  **{k: float(v) for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for k, v in scalars.items():
            self._tb.add_scalar(f"{prefix}/{k}", float(v), int(step))

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
