"""What a tracker sends of a run: the resolved config as parameters, the best metrics, the plots and
reports as artifacts and the exported model folders (shared by the MLflow and W&B trackers)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil

from vitjax import storage
from vitjax import workdir as wd
from vitjax.files import config_dict


ARTIFACTS = (wd.CONFIG, wd.PARAM_GROUPS, wd.SPLIT, wd.RESULTS, wd.LEARNING_CURVES, wd.VALIDATION, "test")
MODEL_DIRS = (wd.BEST, wd.BEST_ADAPTER, wd.BEST_NATIVE)


def artifacts(workdir: str) -> list[str]:
    """The run's plots, reports and records worth keeping with a tracker run (paths that exist)."""
    return [storage.join(workdir, n) for n in ARTIFACTS if storage.exists(storage.join(workdir, n))]


def model_dirs(workdir: str) -> list[str]:
    """The exported best model folders (best/, best_adapter/, best_vitjax/) that exist."""
    return [storage.join(workdir, n) for n in MODEL_DIRS if storage.isdir(storage.join(workdir, n))]


@contextlib.contextmanager
def local_view(workdir: str):
    """A local folder holding the run's files a tracker sends (`artifacts`, `model_dirs`): the workdir
    itself, or a temporary copy of those files of a workdir on object storage."""
    if not storage.is_remote(workdir):
        yield workdir
        return
    local = storage.staging_dir()
    try:
        for path in artifacts(workdir) + model_dirs(workdir):
            storage.copy(path, os.path.join(local, storage.basename(path)))
        yield local
    finally:
        shutil.rmtree(local, ignore_errors=True)


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
