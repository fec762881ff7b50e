"""Runs one vitjax training on a Ray cluster with Ray Train: each Ray worker is one JAX process.

    python launch/ray_train.py --config configs/beans.py --workdir /shared/runs/beans --num_workers 4 \
        --gpus_per_worker 8 [--config.optim.lr=3e-5 ...]

The driver connects to the cluster Ray finds (RAY_ADDRESS, or the one `ray start` made on this
machine; else it starts a local one). The workdir must be a folder every worker sees. Failed workers
are restarted (--max_failures) and resume from the run's last checkpoint; the metrics vitjax logs are
reported to Ray. See vitjax/ray_train.py and docs/scale-out.md.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "A vitjax config file with get_config().")
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder, on storage every worker sees.")
_WORKERS = flags.DEFINE_integer("num_workers", 1, "Ray workers = JAX processes (one per host).")
_CPUS = flags.DEFINE_float("cpus_per_worker", 1, "CPUs Ray reserves for each worker.")
_GPUS = flags.DEFINE_integer("gpus_per_worker", 0, "GPUs of each worker (0: CPU workers).")
_FAILURES = flags.DEFINE_integer("max_failures", 3, "Restarts of the worker group after a failure.")
_STORAGE = flags.DEFINE_string("storage_path", None, "Where Ray keeps its records of the run "
                               "(default ~/ray_results; shared storage on a multi-node cluster).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    del argv
    from vitjax import modes, ray_train

    try:
        result = ray_train.fit(_CONFIG.value, _WORKDIR.value, num_workers=_WORKERS.value,
                               cpus_per_worker=_CPUS.value, gpus_per_worker=_GPUS.value,
                               max_failures=_FAILURES.value, storage_path=_STORAGE.value)
    except modes.UserError as e:  # the config's checks, on the driver
        sys.exit(f"vitjax: {e}")
    print(f"Ray Train's record of the run: {result.checkpoint.path}")
    print(json.dumps(result.metrics, sort_keys=True))  # the steps, the best step, each split's metrics


if __name__ == "__main__":
    app.run(main)
