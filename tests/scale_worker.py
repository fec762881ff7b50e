"""Runs scale-out test jobs in this process (see `scale_helpers.run_jobs`).

    python tests/scale_worker.py JOBS_JSON COORDINATOR NUM_PROCESSES PROCESS_ID
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

from scale_helpers import interrupt_at, scale_config, sigterm_at  # noqa: E402
from vitjax import modes, parallel  # noqa: E402
from vitjax.train import setup  # noqa: E402
from vitjax.train.preemption import Stopped  # noqa: E402


def write_shardings(config, workdir: str) -> None:
    """The PartitionSpec of every train-state leaf by path, as `<workdir>/shardings.json`."""
    os.makedirs(workdir, exist_ok=True)
    state = setup.build_run(config, workdir).state_shardings
    specs = {part: {parallel.path_str(path): str(sharding.spec)
                    for path, sharding in jax.tree_util.tree_leaves_with_path(getattr(state, part))}
             for part in ("params", "opt_state")}
    with open(os.path.join(workdir, "shardings.json"), "w", encoding="utf-8") as f:
        json.dump(specs, f, indent=2)


def main(jobs: str, coordinator: str, num_processes: str, process_id: str) -> None:
    for job in json.loads(jobs):
        config = scale_config(job["data"], job["overrides"])
        config.distributed.coordinator = coordinator
        config.distributed.num_processes = int(num_processes)
        config.distributed.process_id = int(process_id)
        if job.get("shardings"):
            write_shardings(config, job["workdir"])
            continue
        process, n = job.get("sigterm") or (None, None)
        with interrupt_at(job.get("interrupt")), sigterm_at(n if process == int(process_id) else None):
            try:
                modes.train(config, job["workdir"])
            except Stopped as e:  # each process says where it stopped
                with open(os.path.join(job["workdir"], f"stopped_{process_id}.txt"), "w") as f:
                    f.write(f"{e.exit_code} {e}")
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main(*sys.argv[1:])
