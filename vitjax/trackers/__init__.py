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
import importlib.util
import json
import os

import jax
import ml_collections

REPORTERS = ("tensorboard", "mlflow", "wandb")
_EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}


def default_config() -> ml_collections.ConfigDict:
    """`config.trackers`: where MLflow and W&B runs go (TensorBoard needs nothing)."""
    c = ml_collections.ConfigDict()
    c.experiment = "vitjax"           # MLflow experiment / W&B project
    c.run_name = ""                   # "" = the workdir's folder name
    c.mlflow_tracking_uri = ""        # "" = $MLFLOW_TRACKING_URI, else MLflow's default (./mlruns)
    c.registered_model = ""           # MLflow: register best/ under this model name ("" = artifact only)
    return c


def reporters(report_to: str) -> list[str]:
    """`config.train.report_to` ("tensorboard", "mlflow,wandb", ...) as a checked list."""
    names = [n.strip() for n in str(report_to).split(",") if n.strip()]
    for name in names:
        if name not in REPORTERS:
            raise ValueError(f"config.train.report_to={report_to!r}: {name!r} is not a tracker; use any of "
                             f"{', '.join(REPORTERS)}, separated by commas (or '' for metrics.jsonl only).")
    return names


def validate(config) -> None:
    for name in reporters(config.train.report_to):
        if name in _EXTRAS and importlib.util.find_spec(name) is None:
            raise ValueError(f"config.train.report_to names {name}, which is not installed; "
                             f"pip install 'vitjax[{_EXTRAS[name]}]' (or drop it from report_to).")


class Trackers:
    """The open tracker runs of one training run."""

    def __init__(self, sinks):
        self.sinks = list(sinks)

    def finish(self, results: dict) -> None:
        for sink in self.sinks:
            sink.finish(results)


def _ids_path(workdir: str) -> str:
    return os.path.join(workdir, "trackers.json")


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


def artifacts(workdir: str) -> list[str]:
    """The run's plots, reports and records worth keeping with a tracker run (paths that exist)."""
    names = ["config.json", "param_groups.txt", "data_split.json", "results.json", "learning_curves.png",
             "validation", "test"]
    return [os.path.join(workdir, n) for n in names if os.path.exists(os.path.join(workdir, n))]


def model_dirs(workdir: str) -> list[str]:
    """The exported best model folders (best/, best_adapter/, best_vitjax/) that exist."""
    return [os.path.join(workdir, n) for n in ("best", "best_adapter", "best_vitjax")
            if os.path.isdir(os.path.join(workdir, n))]


def best_metrics(results: dict) -> dict[str, float]:
    """`best/<split>/<metric>`: the best checkpoint's validation and test metrics."""
    return {f"best/{split}/{k}": float(v) for split, values in results.get("metrics", {}).items()
            for k, v in values.items()}


def flat_config(config) -> dict[str, str]:
    """The resolved config as dotted keys -> value strings (tracker parameters)."""
    from vitjax import config as config_lib

    out = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = json.dumps(value) if not isinstance(value, str) else value

    walk("", config_lib.to_dict(config))
    return out
