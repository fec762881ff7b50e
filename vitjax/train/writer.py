"""Metric logging: one JSON line per record in `metrics.jsonl`, TensorBoard event files, and any
other sinks (experiment trackers, a sweep trial's pruning callback) handed every record.

TensorBoard events are written with tensorboardX (clu's writers import TensorFlow). Only
process 0 writes; the other processes get a writer that does nothing. A run first drops what an
interrupted run logged after the step it starts from (the checkpoint it resumes, or step 0):
those steps run again, and the logs read as one uninterrupted run. A workdir on object storage is
written through a local mirror (`vitjax.storage.Mirror`) uploaded after every record.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax

from vitjax import storage
from vitjax import workdir as wd


class MetricWriter:
    """Writes scalar metrics to `<workdir>/metrics.jsonl` and `<workdir>/tensorboard/`."""

    def __init__(self, workdir: str, enabled: bool | None = None, start_step: int = 0,
                 tensorboard: bool = True, sinks=()):
        """`sinks`: more receivers of every `write` (trackers, a sweep's pruning callback)."""
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.sinks = list(sinks)
        self._jsonl = self._tb = self._mirror = None
        if self.enabled:
            SummaryWriter = _summary_writer_class()
            self._mirror = storage.Mirror(workdir)  # the workdir itself when local
            path = self._mirror.pull(wd.METRICS)
            _drop_records_after(path, start_step)
            self._jsonl = open(path, "a", encoding="utf-8")
            if tensorboard:
                self._tb = SummaryWriter(os.path.join(self._mirror.local, wd.TENSORBOARD),
                                         purge_step=start_step + 1)

    def write(self, step: int, scalars: dict[str, float], prefix: str) -> None:
        """Logs `scalars` under `prefix` (e.g. "train", "validation") at `step`."""
        if self.enabled:
            self._write(step, scalars, prefix)
        for sink in self.sinks:  # after the record is on disk: a sink may stop the run (pruning)
            sink.write(step, scalars, prefix)

    def _write(self, step: int, scalars: dict[str, float], prefix: str) -> None:
        record = {"step": int(step), "split": prefix, "time": time.time(),
                  **{k: float(v) for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for k, v in scalars.items() if self._tb else ():
            self._tb.add_scalar(f"{prefix}/{k}", float(v), int(step))
        if self._mirror.staged:
            if self._tb:
                self._tb.flush()
            self._mirror.sync()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            if self._tb:
                self._tb.close()
            self._mirror.close()


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without torch: tensorboardX imports torch when it is
    installed (seconds on the way to the first step) only to accept torch tensors, and we hand it floats."""
    import sys

    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


def _drop_records_after(path: str, step: int) -> None:
    """Rewrites `path` without the records of steps after `step` and a last line cut by a kill. A line
    that is no record of vitjax's (written in by hand, another encoding) is kept as it is, with a warning."""
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        lines = f.readlines()
    kept, foreign = [], []
    for number, line in enumerate(lines, 1):
        record_step = _step_of(line)
        if record_step is None and line.endswith(b"\n"):
            foreign.append(number)
            kept.append(line)
        elif record_step is not None and record_step <= step:
            kept.append(line if line.endswith(b"\n") else line + b"\n")
    if foreign:
        shown = ", ".join(map(str, foreign[:10])) + (" ..." if len(foreign) > 10 else "")
        logging.getLogger(__name__).warning("%s: line(s) %s hold no metric record of vitjax's; kept as they are",
                                            path, shown)
    with open(path + ".tmp", "wb") as f:
        f.writelines(kept)
    os.replace(path + ".tmp", path)


def _step_of(line: bytes) -> int | None:
    """The step of a record line of `MetricWriter`'s, else None."""
    try:
        record = json.loads(line)
    except ValueError:  # also a UnicodeDecodeError
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None
