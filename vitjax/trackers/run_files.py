"""What a tracker sends of a run: the resolved config as parameters, the best metrics, the plots and
reports as artifacts and the exported model folders (shared by the MLflow and W&B trackers)."""
from __future__ import annotations

import json
import os

from vitjax.files import config_dict


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
    out = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = json.dumps(value) if not isinstance(value, str) else value

    walk("", config_dict(config))
    return out
