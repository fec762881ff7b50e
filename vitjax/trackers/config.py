"""`config.trackers` and `config.train.report_to`: the trackers' defaults and checks, read by
`vitjax.config` (a leaf: it imports only `vitjax.errors`, so the config module reaches no tracker code)."""
from __future__ import annotations

import importlib.util

import ml_collections

from vitjax.errors import BadValue

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
            raise BadValue(f"config.train.report_to={report_to!r}: {name!r} is not a tracker; use any of "
                             f"{', '.join(REPORTERS)}, separated by commas (or '' for metrics.jsonl only).")
    return names


def validate(config) -> None:
    for name in reporters(config.train.report_to):
        if name in _EXTRAS and importlib.util.find_spec(name) is None:
            raise BadValue(f"config.train.report_to names {name}, which is not installed; "
                             f"pip install 'vitjax[{_EXTRAS[name]}]' (or drop it from report_to).")
