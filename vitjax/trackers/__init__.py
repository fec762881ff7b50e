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

import jax

from vitjax import storage
from vitjax.trackers.config import reporters
from vitjax.workdir import Workdir


class Trackers:
    """The open tracker runs of one training run."""

    def __init__(self, sinks, workdir: str):
        self.sinks, self.workdir = list(sinks), workdir

    def finish(self, results: dict) -> None:
        """Hands each tracker the results and the run's files (a local copy of those a tracker sends
        when the workdir is on object storage)."""
        if not self.sinks:
            return
        from vitjax.trackers import run_files
        with run_files.local_view(self.workdir) as files:
            for sink in self.sinks:
                sink.finish(results, files)


def _ids_path(workdir: str) -> str:
    return Workdir(workdir).trackers


def saved_ids(workdir: str) -> dict:
    """The tracker run ids of an earlier (interrupted) run in `workdir`, to continue them."""
    path = _ids_path(workdir)
    if not storage.exists(path):
        return {}
    return json.loads(storage.read_text(path))


def _save_ids(workdir: str, ids: dict) -> None:
    storage.write_text(_ids_path(workdir), json.dumps(ids, indent=2))


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
        yield Trackers(sinks, workdir)
    except BaseException:
        for sink in sinks:
            sink.close(failed=True)
        raise
    for sink in sinks:
        sink.close(failed=False)


