"""Evaluation: a split through the eval step, metrics merged across batches and hosts.

Every example counts exactly once: the last batch is padded and its padding rows are masked by
`batch["valid"]`; each process evaluates its shard and the metrics are reduced over the mesh.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

from vitjax import parallel, storage
from vitjax.tracking import tracked_value

log = logging.getLogger(__name__)


def compute(run, params, eval_step, split: str):
    """Runs `split` through `eval_step`; returns the task's computed metrics (host values)."""
    merged = None
    for local in run.eval_batches(split):
        update = eval_step(params, parallel.global_batch(local, run.mesh))
        merged = update if merged is None else merged.merge(update)
    return jax.device_get(merged.compute())


def _summarize(run, computed, split: str) -> dict[str, float]:
    """The task's scalar summary of computed metrics; logs the task's warnings (e.g. collapse)."""
    for warning in run.model.task.warnings(computed):
        log.warning("%s: %s", split, warning)
    return run.model.task.summarize(computed)


def evaluate(run, params, eval_step, split: str) -> dict[str, float]:
    """The task's scalar summary of `split`, its warnings logged."""
    return _summarize(run, compute(run, params, eval_step, split), split)


def check_tracked_metrics(run, params, eval_step, tracked: dict[str, str]) -> None:
    """Fails before training when a metric the run tracks is not one the task reports.

    `tracked` maps config keys to metric names. The task's own `best_metric` is trusted; any
    other name is looked up in the task's summary of the metrics of one validation batch, made
    of zeros of the shapes the eval step returns: the names without compiling or running the model.
    """
    unknown = {key: m for key, m in tracked.items() if m != run.model.task.best_metric[0]}
    if not unknown:
        return
    local = next(iter(run.eval_batches("validation")))
    shapes = jax.eval_shape(eval_step, params, parallel.global_batch(local, run.mesh))
    update = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 counts
        reported = run.model.task.summarize(jax.device_get(update.compute()))
    for key, metric in unknown.items():
        tracked_value(reported, metric, run.model.task.name, key)


def report(run, params, eval_step, split: str, outdir: str) -> dict:
    """Evaluates `split` and writes the task's report files under `outdir` (process 0)."""
    computed = compute(run, params, eval_step, split)
    summary = _summarize(run, computed, split)
    if jax.process_index() == 0:
        with storage.local_output(outdir) as local:  # a task's report files, uploaded on object storage
            run.model.task.report(computed, local, split)
    return summary
