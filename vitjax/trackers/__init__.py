"""Experiment trackers a run reports to (`config.train.report_to`): TensorBoard (written by
`vitjax.train.writer`), MLflow and Weights & Biases.

A tracker receives every scalar the run logs (`write(step, scalars, prefix)`, the same calls as
metrics.jsonl), the resolved config as parameters when it opens, and, when the run has finished
(`finish(results)`), its plots and reports as artifacts and the best model (MLflow: also a
registered model version). A run that resumes in the same workdir continues the same tracker run
(its id is kept in `<workdir>/trackers.json`). Only process 0 reports.

    with open_trackers(config, workdir) as trackers:
        results = loop.train(config, workdir, sinks=trackers.sinks)
        trackers.finish(results)
"""
from __future__ import annotations

import contextlib
import json
import os

import jax

from vitjax.trackers.config import reporters
from vitjax.workdir import Workdir


class Trackers:
    """The open tracker runs of one training run."""

    def __init__(self, sinks):
        self.sinks = list(sinks)

    def finish(self, results: dict) -> None:
        for sink in self.sinks:
            sink.finish(results)


def _ids_path(workdir: str) -> str:
    return Workdir(workdir).trackers


def saved_ids(workdir: str) -> dict:
    """The tracker run ids of an earlier (interrupted) run in `workdir`, to continue them."""
    path = _ids_path(workdir)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _save_ids(workdir: str, ids: dict) -> None:
    with open(_ids_path(workdir), "w", encoding="utf-8") as f:
        json.dump(ids, f, indent=2)


@contextlib.contextmanager
def open_trackers(config, workdir: str):
    """Opens the MLflow / W&B runs `config.train.report_to` asks for (process 0; none elsewhere);
    closes them when the block ends, marked failed when it raised."""
    names = reporters(config.train.report_to) if jax.process_index() == 0 else []
    sinks, ids = [], saved_ids(workdir)
    try:
        if "mlflow" in names:
            from vitjax.trackers.mlflow_tracker import MLflowTracker
            sinks.append(MLflowTracker(config, workdir, ids.get("mlflow")))
        if "wandb" in names:
            from vitjax.trackers.wandb_tracker import WandbTracker
            sinks.append(WandbTracker(config, workdir, ids.get("wandb")))
        if sinks:
            _save_ids(workdir, {**ids, **{s.name: s.run_id for s in sinks}})
        yield Trackers(sinks)
    except BaseException:
        for sink in sinks:
            sink.close(failed=True)
        raise
    for sink in sinks:
        sink.close(failed=False)


