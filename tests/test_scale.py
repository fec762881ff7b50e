"""Scale-out on CPU: 8 host devices (data, data x fsdp) and two jax.distributed processes give
the run one device gives, and checkpoints move between device counts (1 -> 8 by resuming,
8 -> 1 by restoring the whole train state).

The runs on 8 devices or 2 processes happen in subprocesses (`scale_helpers.run_jobs`); the
reference runs here, on this process's single CPU device. Parameters are compared after the
whole run (6 steps, AdamW, gradient accumulation, EMA, dropout, flips): only the order of
floating-point sums differs, which Adam's normalisation lifts to ~1e-5 in weights of size ~1.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from scale_helpers import interrupt_at, run_jobs, scale_config
from train_helpers import colour_folder
from vitjax import modes
from vitjax.train import setup
from vitjax.train.checkpointing import Checkpointer

# 3 train steps per epoch + 1 validation batch: the 6th batch is the first of epoch 2's second
# step, so step 4 is done and the run stops mid-epoch.
INTERRUPT = 6
PARAM_TOL = dict(rtol=1e-4, atol=5e-5)
METRIC_TOL = dict(rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The data folder, a workdir factory, and the single-device reference run."""
    root = tmp_path_factory.mktemp("scale")
    data = colour_folder(str(root / "data"), per_class=12)
    assert jax.device_count() == 1
    reference = str(root / "one")
    modes.train(scale_config(data, {}), reference)
    return root, data, reference


def _job(root, name, data, interrupt=None, **overrides):
    return dict(workdir=str(root / name), data=data, interrupt=interrupt, overrides=overrides)


def _train_here(job):
    with interrupt_at(job["interrupt"]):
        try:
            modes.train(scale_config(job["data"], job["overrides"]), job["workdir"])
        except KeyboardInterrupt:
            pass


def _assert_same_run(workdir, reference):
    ours, theirs = _results(workdir), _results(reference)
    assert ours["steps"] == theirs["steps"] == 6
    assert len(ours["history"]) == len(theirs["history"]) == 2
    for a, b in zip(ours["history"], theirs["history"]):
        for key in a:
            if not key.endswith("images_per_s"):
                assert a[key] == pytest.approx(b[key], **METRIC_TOL), key
    for split, values in theirs["metrics"].items():
        for key, value in values.items():
            assert ours["metrics"][split][key] == pytest.approx(value, **METRIC_TOL), (split, key)
    w, ref = _weights(workdir), _weights(reference)
    assert w.keys() == ref.keys()
    for name in ref:
        np.testing.assert_allclose(w[name], ref[name], err_msg=name, **PARAM_TOL)


def _results(workdir):
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        return json.load(f)


def _weights(workdir):
    return load_file(os.path.join(workdir, "best", "model.safetensors"))


def _restored(workdir, data):
    """The latest train state of `workdir`, restored onto this process's single device."""
    config = scale_config(data, {})
    run = setup.build_run(config, workdir)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), metric=config.train.best_metric,
                        mode=config.train.best_mode)
    state = ckpt.restore(ckpt.latest_step(), run.init_state())[0]
    ckpt.close()
    return state


def test_eight_devices_equal_one_and_checkpoints_move_between_device_counts(runs):
    root, data, reference = runs
    resumed = _job(root, "1to8", data, INTERRUPT)
    _train_here(resumed)  # steps 1-4 here on one device, 5-6 on 8 devices with fsdp
    run_jobs([
        _job(root, "data8", data),
        {**resumed, "interrupt": None, "overrides": {"mesh.fsdp": 4}},
        {**_job(root, "fsdp8", data, **{"mesh.fsdp": 4}), "shardings": True},
    ], devices=8)
    for name in ("data8", "1to8"):
        assert _results(str(root / name))["devices"] == 8
        _assert_same_run(str(root / name), reference)

    # The checkpoint written on 8 devices (fsdp-sharded) restores onto one device, optimizer
    # state included.
    ours, theirs = _restored(str(root / "1to8"), data), _restored(reference, data)
    assert int(ours.step) == int(theirs.step) == 6
    np.testing.assert_array_equal(ours.rng, theirs.rng)
    for a, b in zip(jax.tree.leaves((ours.params, ours.opt_state, ours.ema_params)),
                    jax.tree.leaves((theirs.params, theirs.opt_state, theirs.ema_params)),
                    strict=True):
        assert len(a.sharding.device_set) == 1
        np.testing.assert_allclose(a, b, **PARAM_TOL)

    with open(root / "fsdp8" / "shardings.json", encoding="utf-8") as f:
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


def test_two_processes_write_one_set_of_outputs_and_resume_to_the_same_run(runs):
    root, data, reference = runs
    job = _job(root, "two", data, INTERRUPT, **{"mesh.fsdp": 2})
    run_jobs([job, {**job, "interrupt": None}], devices=2, processes=2)
    workdir = str(root / "two")
    assert _results(workdir)["devices"] == 4
    _assert_same_run(workdir, reference)

    def records(path):
        with open(os.path.join(path, "metrics.jsonl"), encoding="utf-8") as f:
            return [(r["step"], r["split"]) for r in map(json.loads, f)]

    assert records(workdir) == records(reference)  # written once, by process 0
    assert sorted(os.listdir(workdir)) == sorted(os.listdir(reference))
    with open(os.path.join(workdir, "data_split.json"), encoding="utf-8") as f:
        sizes = {split: info["size"] for split, info in json.load(f)["splits"].items()}
    for split in ("validation", "test"):  # every example counted once across the processes
        with open(os.path.join(workdir, split, "report.json"), encoding="utf-8") as f:
            rows = json.load(f)["per_class"]
        assert sum(r["support"] for r in rows if r["class"] in ("blue", "green", "red")) \
            == sizes[split]
