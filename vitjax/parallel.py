"""Multi-device and multi-host plumbing: distributed start-up, the device mesh, sharding rules.

One code path from one CPU to a pod: `jax.jit` over a `Mesh` with a `data` axis (batch split
across every device) and an `fsdp` axis (parameters and optimizer state split across devices
for models that do not fit one). The mesh uses `AxisType.Auto` on purpose, so shardings are
given to `jit` rather than carried in the types.
"""

from __future__ import annotations

import logging
import math
import os
import re

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def initialize_distributed(cfg) -> None:
    """Starts `jax.distributed` when the run spans several processes; a no-op for one process.

    `cfg` is `config.distributed`: `coordinator` ("host:port"), `num_processes`, `process_id`.
    With none set, SLURM jobs of several tasks and Cloud TPU pods are detected by JAX itself;
    the `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID` variables work too.
    """
    explicit = cfg.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    tpu_pod = "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if not (explicit or slurm or tpu_pod):
        return
    kwargs = {}
    if cfg.coordinator:
        kwargs = dict(coordinator_address=cfg.coordinator, num_processes=cfg.num_processes,
                      process_id=cfg.process_id)
    jax.distributed.initialize(**kwargs)
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())


def make_mesh(cfg) -> Mesh:
    """A ('data', 'fsdp') mesh over all devices; `cfg.fsdp` devices share each parameter shard.

    `cfg` is `config.mesh`: `fsdp` (1 = plain data parallelism) and `data` (-1 = the rest).
    """
    n = jax.device_count()
    fsdp = cfg.fsdp
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"config.mesh.fsdp={fsdp} must be a positive divisor of the "
                         f"{n} devices; set it to one of {_divisors(n)}.")
    data = n // fsdp if cfg.data in (-1, None) else cfg.data
    if data * fsdp != n:
        raise ValueError(f"config.mesh.data={cfg.data} x config.mesh.fsdp={fsdp} must equal the "
                         f"{n} devices; set config.mesh.data=-1 to use all of them.")
    return jax.make_mesh((data, fsdp), ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of batch arrays: the leading (batch) dimension split over every device."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _fsdp_spec(shape, fsdp: int, min_size: int) -> P:
    """Split the largest dimension divisible by the fsdp size; small arrays stay whole."""
    if fsdp == 1 or math.prod(shape) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def param_shardings(params, mesh: Mesh, rules=(), min_size: int = 2**16):
    """NamedShardings for a parameter pytree, chosen by parameter path.

    `rules` is an ordered list of (regex, PartitionSpec) over slash-joined paths; the first
    full match wins. Paths that match no rule are split over the `fsdp` axis along their
    largest divisible dimension when they hold at least `min_size` elements, else replicated.
    """
    fsdp = mesh.shape["fsdp"]
    compiled = [(re.compile(rx), spec) for rx, spec in rules]

    def choose(path, leaf):
        name = path_str(path)
        for rx, spec in compiled:
            if rx.fullmatch(name):
                return NamedSharding(mesh, spec)
        return NamedSharding(mesh, _fsdp_spec(np.shape(leaf), fsdp, min_size))

    return jax.tree_util.tree_map_with_path(choose, params)


def path_str(path) -> str:
    """'backbone/encoder/layer_00/attention/query/kernel' from a jax tree path."""
    parts = []
    for k in path:
        parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
    return "/".join(parts)


def global_batch(local: dict, mesh: Mesh) -> dict:
    """Assembles the global batch from each process's local rows (sharded over the batch axes)."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local.items()}
