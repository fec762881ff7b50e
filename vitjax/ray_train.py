"""Training on a Ray cluster with Ray Train: each Ray worker is one JAX process of the same run.

`fit(config, workdir, num_workers=N)` starts N Ray Train workers (a `JaxTrainer`). Each joins
`jax.distributed` (Ray does it on GPU and TPU workers; on CPU workers the rank-0 worker's address and
a free port become the coordinator, handed to the others through Ray) and runs `modes.train`: the
run `python -m vitjax.main` makes, in the same workdir, which every worker must see. Every record
vitjax logs (train summaries, validations) is reported to Ray (`ray.train.report`), and the run's
`summary` last, with results.json as Ray's checkpoint of the run (Ray's `Result.metrics` and
`Result.checkpoint`; the model's checkpoints stay vitjax's own, in the workdir). When a worker dies,
Ray stops the others and starts the group again (up to `max_failures` times); the new group resumes
from the newest checkpoint in the workdir, as the same command run again does (the dead run's workdir
lock is taken over: the kernel released it with its process).

Ray is not a dependency of vitjax: install `ray[train]` to use this module.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile

from vitjax import config as config_lib
from vitjax import modes, storage
from vitjax.workdir import RESULTS


class _RayReport:
    """A sink of `MetricWriter`: every logged record to Ray. Every worker reports every record (Ray
    waits for all at each report); Ray keeps rank 0's."""

    def write(self, step: int, scalars: dict, prefix: str) -> None:
        import ray.train

        ray.train.report({"step": int(step), **{f"{prefix}/{k}": float(v) for k, v in scalars.items()}})


def summary(results: dict) -> dict:
    """The metrics of a finished run as Ray records them: the steps, the best step and every split's
    metrics (`<split>/<metric>`)."""
    return {"step": results["steps"], "best_step": results["best_step"],
            **{f"{split}/{k}": float(v) for split, values in results["metrics"].items()
               for k, v in values.items() if isinstance(v, (int, float))}}


def _coordinator() -> str:
    """This worker's address and a free port: where rank 0 serves `jax.distributed`."""
    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return f"{ray.util.get_node_ip_address()}:{port}"


def _worker(loop_config: dict) -> None:
    """One Ray Train worker: one JAX process of the run."""
    import jax
    import ray.train
    from ray.train.collective import broadcast_from_rank_zero

    from vitjax.train.fast_paths import keep_host_buffers

    keep_host_buffers()
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)  # as the command line: orbax, jax and absl quiet
    logging.getLogger("vitjax").setLevel(logging.INFO)
    config, workdir = loop_config["config"], loop_config["workdir"]
    context = ray.train.get_context()
    rank, size = context.get_world_rank(), context.get_world_size()
    if size > 1 and not jax.distributed.is_initialized():  # Ray starts it on GPU and TPU workers only
        address = broadcast_from_rank_zero(_coordinator() if rank == 0 else None)
        config.distributed.update(dict(coordinator=address, num_processes=size, process_id=rank))
    results = modes.train(config, workdir, sinks=[_RayReport()])
    with tempfile.TemporaryDirectory() as folder:  # the results, handed back as Ray's checkpoint
        if rank == 0:
            with open(os.path.join(folder, RESULTS), "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
        ray.train.report(summary(results),
                         checkpoint=ray.train.Checkpoint.from_directory(folder) if rank == 0 else None)


def fit(config, workdir: str, *, num_workers: int, cpus_per_worker: float = 1, gpus_per_worker: int = 0,
        max_failures: int = 3, storage_path: str | None = None):
    """Trains `config` in `workdir` on `num_workers` Ray workers (one JAX process each, with
    `gpus_per_worker` GPUs, or CPU only); returns Ray's `Result`: its `metrics` are
    `summary(results)`, its `checkpoint` a folder holding the run's results.json.

    `workdir` must be a path every worker sees (NFS, a shared volume); `storage_path` is where Ray
    keeps its own records of the run (default: Ray's, ~/ray_results). A run whose group failed
    more than `max_failures` times raises Ray's `TrainingFailedError`. A config that fails vitjax's
    checks raises here, before any worker starts (a worker would fail each restart alike)."""
    config_lib.validate(config)
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.jax import JaxTrainer

    if not storage.is_remote(workdir):  # a local path (on shared storage): the workers' working directory is Ray's
        workdir = os.path.abspath(storage.normalize(workdir))
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    trainer = JaxTrainer(
        _worker, train_loop_config={"config": config, "workdir": workdir},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=f"vitjax-{os.path.basename(workdir.rstrip('/'))}", storage_path=storage_path,
                             failure_config=FailureConfig(max_failures=max_failures)))
    return trainer.fit()
