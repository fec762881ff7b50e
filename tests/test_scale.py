"""Scale-out on CPU: 8 host devices (data x fsdp, data) and two jax.distributed processes give
the run one device gives, and checkpoints move between device counts.

Runs on 8 devices or in 2 processes happen in subprocesses (`scale_helpers.run_jobs`); the
reference runs here, on this process's single CPU device. A run stopped here after step 4 is
resumed on 8 devices and in 2 processes (1 -> N), and their checkpoints are restored here
(N -> 1) with the whole train state. Runs are compared after 6 steps (AdamW, gradient
accumulation, EMA, dropout, flips): only the order of floating-point sums differs: measured up to
~5e-6 in weights of size ~1 (Adam's normalisation lifts rounding noise) and ~2e-7 in metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import jax
import numpy as np
import pytest

from scale_helpers import (PARAM_TOL, assert_same_run, interrupt_at, one_device_run, records, results, run_jobs,
                           scale_config)
from test_data_fakes import FakePreprocessing, data_config
from vitjax import modes, parallel
from vitjax.data import pipeline
from vitjax.data.records import ArraySource
from vitjax.train import setup
from vitjax.train.checkpointing import Checkpointer

# 3 train steps per epoch + 1 validation batch: Ctrl-C while the 6th batch is drawn stops the
# run after step 4, mid-epoch 2.
INTERRUPT = 6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(root, data folder, the single-device reference run, a run stopped after step 4)."""
    root = tmp_path_factory.mktemp("scale")
    assert jax.device_count() == 1
    data, reference = one_device_run(root)
    stopped = str(root / "stopped")
    with interrupt_at(INTERRUPT), pytest.raises(KeyboardInterrupt):
        modes.train(scale_config(data, {}), stopped)
    return root, data, reference, stopped


def _job(root, name, data, interrupt=None, **overrides):
    return dict(workdir=str(root / name), data=data, interrupt=interrupt, overrides=overrides)


def _resume_job(root, name, stopped, data, **overrides):
    """A job resuming a copy of the stopped run."""
    shutil.copytree(stopped, root / name)
    return _job(root, name, data, **overrides)


def _assert_restores_here(workdir, reference, data):
    """The last checkpoint of `workdir` restores onto this single device and equals the
    reference's, optimizer state included."""
    ours, theirs = _restored(workdir, data), _restored(reference, data)
    assert int(ours.step) == int(theirs.step) == 6
    np.testing.assert_array_equal(ours.rng, theirs.rng)
    for a, b in zip(jax.tree.leaves((ours.params, ours.opt_state, ours.ema_params)),
                    jax.tree.leaves((theirs.params, theirs.opt_state, theirs.ema_params)),
                    strict=True):
        assert len(a.sharding.device_set) == 1
        np.testing.assert_allclose(a, b, **PARAM_TOL)


def _restored(workdir, data):
    config = scale_config(data, {})
    run = setup.build_run(config, workdir)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), metric=config.train.best_metric,
                        mode=config.train.best_mode)
    state = ckpt.restore(ckpt.latest_step(), run.init_state())[0]
    ckpt.close()
    return state


def test_eight_devices_data_x_fsdp_equal_one_device(runs):
    root, data, reference, stopped = runs
    resumed = _resume_job(root, "8dev", stopped, data, **{"mesh.data": 2, "mesh.fsdp": 4})
    shardings = {**_job(root, "8dev_shardings", data, **{"mesh.fsdp": 4}), "shardings": True}
    run_jobs([resumed, shardings], devices=8)
    assert results(resumed["workdir"])["devices"] == 8
    assert_same_run(resumed["workdir"], reference)
    _assert_restores_here(resumed["workdir"], reference, data)

    with open(os.path.join(shardings["workdir"], "shardings.json"), encoding="utf-8") as f:
        specs = json.load(f)
    params, opt_state = specs["params"], specs["opt_state"]
    query = "backbone/encoder/layer_00/attention/query/kernel"
    assert "fsdp" in params[query] and params["head/classifier/kernel"] == "P()"
    moments = [path for path in opt_state if path.endswith("/" + query)]
    assert len(moments) == 3  # Adam's mu and nu, the MultiSteps gradient accumulator
    assert all(opt_state[path] == params[query] for path in moments)
    others = [spec for path, spec in opt_state.items()
              if not any(path.endswith("/" + p) for p in params)]
    assert others and all(spec == "P()" for spec in others)  # counts, lr scale


@pytest.mark.slow
def test_eight_devices_data_parallel_equal_one_device(runs):
    root, data, reference, _ = runs
    job = _job(root, "8dev_data", data)
    run_jobs([job], devices=8)
    assert_same_run(job["workdir"], reference)


def test_two_processes_resume_write_one_set_of_outputs_and_equal_one_device(runs):
    root, data, reference, stopped = runs
    # One device per process: the fsdp axis spans the two processes.
    job = _resume_job(root, "2proc", stopped, data, **{"mesh.fsdp": 2})
    run_jobs([job], devices=1, processes=2)
    workdir = job["workdir"]
    assert results(workdir)["devices"] == 2
    assert_same_run(workdir, reference)
    _assert_restores_here(workdir, reference, data)  # orbax's multi-host save

    assert records(workdir) == records(reference)  # written once, by process 0
    assert sorted(os.listdir(workdir)) == sorted(os.listdir(reference))
    with open(os.path.join(workdir, "data_split.json"), encoding="utf-8") as f:
        sizes = {split: info["size"] for split, info in json.load(f)["splits"].items()}
    for split in ("validation", "test"):  # every example counted once across the processes
        with open(os.path.join(workdir, split, "report.json"), encoding="utf-8") as f:
            rows = json.load(f)["per_class"]
        assert sum(r["support"] for r in rows if r["class"] in ("blue", "green", "red")) \
            == sizes[split]


@pytest.mark.slow
def test_two_processes_stop_and_resume(runs):
    """Stopped and resumed within two processes (orbax multi-host save and restore)."""
    root, data, reference, _ = runs
    job = _job(root, "2proc_stop", data, INTERRUPT, **{"mesh.fsdp": 2})
    run_jobs([job, {**job, "interrupt": None}], devices=1, processes=2)
    assert_same_run(job["workdir"], reference)
    assert records(job["workdir"]) == records(reference)


@pytest.mark.slow
def test_a_sigterm_to_one_process_stops_every_process_at_the_same_saved_step(runs):
    """JAX's preemption sync point: process 1 alone is preempted; both save one step and resume."""
    root, data, reference, _ = runs
    job = {**_job(root, "2proc_sigterm", data, **{"mesh.fsdp": 2}), "sigterm": [1, 3]}
    run_jobs([job], devices=1, processes=2)
    said = [open(os.path.join(job["workdir"], f"stopped_{i}.txt"), encoding="utf-8").read()
            for i in range(2)]
    step = int(re.search(r"at step (\d+) of 6", said[0]).group(1))
    assert all(s.startswith("143 stopped by SIGTERM at step %d of 6; saved" % step) for s in said), said
    assert 1 <= step < 6  # the step the processes agreed on, before the end
    assert max(int(n) for n in os.listdir(os.path.join(job["workdir"], "checkpoints"))
               if n.isdigit()) == step
    run_jobs([{**job, "sigterm": None}], devices=1, processes=2)
    assert_same_run(job["workdir"], reference)


def test_distributed_start_up_checks_its_settings(monkeypatch):
    config = scale_config("unused", {})
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    monkeypatch.delenv("SLURM_STEP_NUM_TASKS", raising=False)
    parallel.initialize_distributed(config.distributed)  # one process: nothing to start
    assert not jax.distributed.is_initialized()
    config.distributed.coordinator = "127.0.0.1:1234"
    with pytest.raises(ValueError, match="config.distributed.num_processes"):
        parallel.initialize_distributed(config.distributed)
    config.distributed.mode = "sometimes"
    with pytest.raises(ValueError, match="config.distributed.mode"):
        parallel.initialize_distributed(config.distributed)


@pytest.mark.parametrize("processes", [2, 4])
def test_process_shards_make_the_single_process_batches_in_order(processes):
    """Process p's rows come p-th in the global batch: the same records in the same order as
    one process reads, so per-row randomness (dropout, mixup) lines up too."""
    split = ArraySource("ids", np.zeros((40, 4, 4, 3), np.uint8), np.arange(40))
    cfg = data_config(augment__crop_scale=(1.0, 1.0), augment__crop_ratio=(1.0, 1.0))

    def stream(index, count):
        it = pipeline.train_iterator(split, FakePreprocessing((4, 4)), cfg,
                                     batch_size=8 // count, seed=0, shard_index=index,
                                     shard_count=count)
        return [next(it)["label"] for _ in range(7)]  # across the epoch boundary

    one = stream(0, 1)
    shards = [stream(p, processes) for p in range(processes)]
    for step, batch in enumerate(one):
        np.testing.assert_array_equal(np.concatenate([s[step] for s in shards]), batch)
