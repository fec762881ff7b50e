"""Multi-device and multi-host plumbing: distributed start-up, the device mesh, sharding rules,
the global batch, barriers and host copies of sharded arrays.

One code path from one CPU to a pod: `jax.jit` over a `Mesh` with a `data` axis (batch split
across every device) and an `fsdp` axis (parameters and optimizer state split across devices
for models that do not fit one). The mesh uses `AxisType.Auto` on purpose, so shardings are
given to `jit` rather than carried in the types.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from vitjax.errors import BadValue

log = logging.getLogger(__name__)

BATCH_AXES = ("data", "fsdp")


def initialize_distributed(cfg) -> None:
    """Starts `jax.distributed` when the run spans several processes; a no-op for one process.

    `cfg` is `config.distributed`. `mode="auto"` starts it when the coordinator is given
    (`cfg.coordinator` or `JAX_COORDINATOR_ADDRESS`, with `cfg.num_processes`/`JAX_NUM_PROCESSES`
    and `cfg.process_id`/`JAX_PROCESS_ID`), inside a SLURM step of several tasks (`srun`) and on
    a Cloud TPU VM, where JAX finds the other processes by itself; `"on"` always starts it
    (JAX's own detection: also Open MPI and Kubernetes TPU jobs); `"off"` never does.
    Must run before anything touches a JAX device.
    """
    if cfg.mode not in ("auto", "on", "off"):
        raise BadValue(f"config.distributed.mode={cfg.mode!r}: use 'auto', 'on' or 'off'.")
    coordinator = cfg.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    wanted = cfg.mode == "on" or (cfg.mode == "auto" and bool(
        coordinator or _in_slurm_step() or _on_cloud_tpu_vm()))
    if not wanted or jax.distributed.is_initialized():
        return
    kwargs = {}
    if coordinator:
        kwargs = dict(coordinator_address=coordinator,
                      num_processes=cfg.num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0")),
                      process_id=cfg.process_id if cfg.coordinator else
                      int(os.environ.get("JAX_PROCESS_ID", "-1")))
    if kwargs and not 0 <= kwargs["process_id"] < kwargs["num_processes"]:
        raise BadValue(
            f"the coordinator {coordinator} is set but num_processes={kwargs['num_processes']}, "
            f"process_id={kwargs['process_id']}: set config.distributed.num_processes to the "
            f"process count and config.distributed.process_id to 0..num_processes-1, different "
            f"in every process (with JAX_COORDINATOR_ADDRESS instead of a configured "
            f"coordinator: JAX_NUM_PROCESSES and JAX_PROCESS_ID).")
    if not jax.config.jax_cpu_collectives_implementation:
        # Cross-process collectives of the CPU backend (tests, CPU clusters) need an
        # implementation; gloo ships with jaxlib (and is the default of recent JAX).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    if jax.process_index() != 0:  # process 0 tells the story; the others speak of trouble only
        logging.getLogger("vitjax").setLevel(logging.WARNING)
    log.info("jax.distributed: process %d of %d, %d local / %d global devices",
             jax.process_index(), jax.process_count(), jax.local_device_count(),
             jax.device_count())


def _in_slurm_step() -> bool:
    """Inside `srun` with several tasks (JAX reads the rest of the SLURM environment)."""
    return int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1 and "SLURM_PROCID" in os.environ


def _on_cloud_tpu_vm() -> bool:
    """A Cloud TPU VM: libtpu installed and TPU chips visible (JAX asks the VM metadata for the pod)."""
    return (importlib.util.find_spec("libtpu") is not None
            and bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")))


def sync(name: str) -> None:
    """A barrier across processes (a no-op in a single-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def make_mesh(cfg) -> Mesh:
    """A ('data', 'fsdp') mesh over all devices; `cfg.fsdp` devices share each parameter shard.

    `cfg` is `config.mesh`: `fsdp` (1 = plain data parallelism) and `data` (-1 = the rest).
    """
    n = jax.device_count()
    fsdp = cfg.fsdp
    if fsdp < 1 or n % fsdp:
        raise BadValue(f"config.mesh.fsdp={fsdp} must be a positive divisor of the "
                       f"{n} devices; set it to one of {_divisors(n)}.")
    data = n // fsdp if cfg.data in (-1, None) else cfg.data
    if data * fsdp != n:
        raise BadValue(f"config.mesh.data={cfg.data} x config.mesh.fsdp={fsdp} must equal the "
                       f"{n} devices; set config.mesh.data=-1 to use all of them.")
    return jax.make_mesh((data, fsdp), ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of batch arrays: the leading (batch) dimension split over every device."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """A whole copy on every device (scalars, metrics, small arrays)."""
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


def param_shardings(params, mesh: Mesh, min_size: int = 2**16):
    """NamedShardings for a parameter pytree: a parameter of at least `min_size` elements is split
    over the `fsdp` axis along its largest divisible dimension, every other one is replicated."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda leaf: NamedSharding(mesh, _fsdp_spec(np.shape(leaf), fsdp, min_size)),
                        params)


def shardings_like_params(tree, params, shardings, mesh: Mesh):
    """NamedShardings for a pytree holding per-parameter state (optimizer moments, gradient
    accumulators) next to other leaves (step counts, scalars).

    A leaf whose path ends with a parameter's path and whose shape is that parameter's takes the
    parameter's sharding (`shardings`, as from `param_shardings`), so an optimizer moment lives
    where its parameter does; every other leaf (counts, learning-rate scales, masked-out
    placeholders) is replicated.
    """
    by_path = {}
    for (path, leaf), sharding in zip(jax.tree_util.tree_leaves_with_path(params),
                                      jax.tree.leaves(shardings)):
        by_path[path_str(path)] = (np.shape(leaf), sharding)

    def choose(path, leaf):
        parts = path_str(path).split("/")
        for i in range(len(parts)):
            shape, sharding = by_path.get("/".join(parts[i:]), (None, None))
            if shape == np.shape(leaf):
                return sharding
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(choose, tree)


def path_str(path) -> str:
    """'backbone/encoder/layer_00/attention/query/kernel' from a jax tree path."""
    parts = []
    for k in path:
        parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
    return "/".join(parts)


def global_batch(local: dict, mesh: Mesh) -> dict:
    """Assembles the global batch from each process's local rows (sharded over the batch axes);
    `local` is a pytree of arrays (a dict of them, or dicts of dicts)."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda v: jax.make_array_from_process_local_data(sharding, np.asarray(v)),
                        local)


def to_host(tree, mesh: Mesh):
    """Numpy copies of a pytree of arrays sharded over `mesh`, on every process.

    With several processes each one holds only its shards, so the arrays are first replicated
    on the mesh (a collective: every process must call this, and the tree must fit one device).
    """
    if jax.process_count() > 1:
        tree = jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)
    return jax.device_get(tree)
