"""Shared pieces of the scale-out tests: the run config, and runs in fresh processes.

JAX fixes its device count when it starts, so runs on 8 host devices, or as several processes
joined by `jax.distributed`, happen in subprocesses running `tests/scale_worker.py`. A job is
a dict: `workdir`, `data` (an image folder), `overrides` (dotted config keys) and optionally
`interrupt` (Ctrl-C while the n-th batch is drawn, as a user would stop a run), `sigterm`
([process id, n]: that process alone gets a SIGTERM while its n-th batch is drawn) or `shardings`
(no training: the train state's PartitionSpecs by path go to `<workdir>/shardings.json`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from train_helpers import tiny_config
from vitjax import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "scale_worker.py")


def scale_config(data: str, overrides: dict):
    """The tiny model with dropout and flips on (per-position randomness must line up too),
    gradient accumulation and EMA (optimizer state beyond per-parameter moments)."""
    config = tiny_config(f"folder:{data}", batch_size=8, epochs=2)
    config.model.dropout_rate = 0.1
    config.data.augment.hflip = 0.5
    config.optim.grad_accum_steps = 2
    config.optim.ema_decay = 0.5
    config.mesh.fsdp_min_size = 256  # small enough that the tiny model's kernels are split
    config.update_from_flattened_dict(overrides)
    return config


@contextlib.contextmanager
def _at_batch(n: int | None, action):
    """Calls `action()` when the n-th batch (train or eval) reaches the devices."""
    real = parallel.global_batch
    calls = {"n": 0}

    def counting(local, mesh):
        calls["n"] += 1
        if calls["n"] == n:
            action()
        return real(local, mesh)

    parallel.global_batch = counting if n else real
    try:
        yield
    finally:
        parallel.global_batch = real


def _ctrl_c():
    raise KeyboardInterrupt


def interrupt_at(n: int | None):
    """Raises KeyboardInterrupt when the n-th batch (train or eval) reaches the devices."""
    return _at_batch(n, _ctrl_c)


def sigterm_at(n: int | None):
    """Sends this process a SIGTERM (a preemption notice) when the n-th batch reaches the devices."""
    return _at_batch(n, lambda: os.kill(os.getpid(), signal.SIGTERM))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_jobs(jobs: list[dict], *, devices: int = 8, processes: int = 1, timeout: int = 600) -> None:
    """Runs `jobs` one after another in `processes` processes of `devices` CPU devices each.

    Output goes to files (a full pipe would stall a process inside a collective); when one
    process fails the others are stopped, and the error shows every process's output.
    """
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    coordinator = f"127.0.0.1:{_free_port()}" if processes > 1 else ""
    with tempfile.TemporaryDirectory() as logs:
        paths = [os.path.join(logs, f"process_{i}.log") for i in range(processes)]
        procs = []
        for i, path in enumerate(paths):
            with open(path, "w", encoding="utf-8") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, WORKER, json.dumps(jobs), coordinator, str(processes), str(i)],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() for p in procs):  # one failed: the others would wait for it
                break
            time.sleep(0.2)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if any(proc.returncode for proc in procs):
            raise AssertionError("\n".join(
                f"process {i} (exit code {proc.returncode}):\n{_tail(path)}"
                for i, (proc, path) in enumerate(zip(procs, paths))))


def _tail(path: str, chars: int = 6000) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()[-chars:]
