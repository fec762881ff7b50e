"""Shared pieces of the scale-out tests: the run config, and runs in fresh processes.

JAX fixes its device count when it starts, so runs on 8 host devices, or as several processes
joined by `jax.distributed`, happen in subprocesses running `tests/scale_worker.py`. A job is
a dict: `workdir`, `data` (an image folder), `overrides` (dotted config keys) and optionally
`interrupt` (Ctrl-C while the n-th batch is drawn, as a user would stop a run), `sigterm`
([process id, n]: that process alone gets a SIGTERM while its n-th batch is drawn) or `shardings`
(no training: the train state's PartitionSpecs by path go to `<workdir>/shardings.json`).

The Ray Train tests (tests/test_ray_train.py) run their workers' processes through
`ray_worker_setup`, and compare every run with the one-device run (`assert_same_run`).
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

import numpy as np
import pytest
from safetensors.numpy import load_file

from train_helpers import colour_folder, tiny_config
from vitjax import modes, parallel
from vitjax.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "scale_worker.py")
# Runs in several processes or on several devices differ from the one-device run only in the order of
# floating-point sums: measured up to ~5e-6 in weights of size ~1 and ~2e-7 in metrics.
PARAM_TOL = dict(rtol=1e-4, atol=5e-5)
METRIC_TOL = dict(rel=1e-5, abs=1e-6)


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


def one_device_run(root) -> tuple[str, str]:
    """(the data folder, the workdir of the reference run: `scale_config` on this process's one device)."""
    data = colour_folder(os.path.join(root, "data"), per_class=12)
    reference = os.path.join(root, "one")
    modes.train(scale_config(data, {}), reference)
    return data, reference


def results(workdir: str) -> dict:
    with open(Workdir(workdir).results, encoding="utf-8") as f:
        return json.load(f)


def records(workdir: str) -> list[tuple[int, str]]:
    """(step, split) of every record in metrics.jsonl."""
    with open(Workdir(workdir).metrics, encoding="utf-8") as f:
        return [(r["step"], r["split"]) for r in map(json.loads, f)]


def assert_same_run(workdir: str, reference: str) -> None:
    """`workdir` holds the run `reference` holds (6 steps, 2 validations): its history, every split's
    metrics and the exported weights, within the tolerances above."""
    ours, theirs = results(workdir), results(reference)
    assert ours["steps"] == theirs["steps"] == 6
    assert ours["best_step"] == theirs["best_step"]
    assert len(ours["history"]) == len(theirs["history"]) == 2
    for a, b in zip(ours["history"], theirs["history"]):
        for key in a:
            if not key.endswith("images_per_s"):
                assert a[key] == pytest.approx(b[key], **METRIC_TOL), key
    for split, values in theirs["metrics"].items():
        for key, value in values.items():
            assert ours["metrics"][split][key] == pytest.approx(value, **METRIC_TOL), (split, key)
    w, ref = (load_file(os.path.join(Workdir(d).best, "model.safetensors")) for d in (workdir, reference))
    assert w.keys() == ref.keys()
    for name in ref:
        np.testing.assert_allclose(w[name], ref[name], err_msg=name, **PARAM_TOL)


def ray_worker_setup() -> None:
    """Ray's `worker_process_setup_hook` in the Ray Train tests: the precision of the other runs; with
    `VITJAX_TEST_REPORTS=FILE`, every `ray.train.report` of rank 0 (its metrics) appended to FILE as a
    JSON line; with `VITJAX_TEST_KILL={"rank": R, "checkpoints": FOLDER, "marker": FILE}`, a crash: the worker of
    rank R kills itself (SIGKILL) at the first batch that reaches the devices once FOLDER holds a
    committed checkpoint (orbax names it by its step), and only once: the first process to create FILE
    (the restarted group finds it)."""
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    if os.environ.get("VITJAX_TEST_REPORTS"):
        _record_ray_reports(os.environ["VITJAX_TEST_REPORTS"])
    if not os.environ.get("VITJAX_TEST_KILL"):
        return
    kill = json.loads(os.environ["VITJAX_TEST_KILL"])
    real = parallel.global_batch

    def crashing(local, mesh):
        folder = kill["checkpoints"]
        if jax.process_index() == kill["rank"] and os.path.isdir(folder) and any(
                name.isdigit() for name in os.listdir(folder)):
            try:
                os.close(os.open(kill["marker"], os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                parallel.global_batch = real
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(local, mesh)

    parallel.global_batch = crashing  # for the life of the process


def _record_ray_reports(path: str) -> None:
    import ray.train

    real = ray.train.report

    def recording(metrics, *args, **kwargs):
        if ray.train.get_context().get_world_rank() == 0:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")
        return real(metrics, *args, **kwargs)

    ray.train.report = recording
