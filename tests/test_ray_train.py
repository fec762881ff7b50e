"""Ray Train (launch/ray_train.py, vitjax.ray_train) on a local Ray cluster of 2 CPUs, with 2 workers: the
run equals the one-device run within the scale-out tests' tolerances, every logged record is reported to
Ray and Ray holds the results, and a
worker killed mid-run is restarted by Ray and the run resumes from its last checkpoint to the same end.

Slow, and ray is not in the test extra: CI installs it and runs this file in a step of its own
(.ci/run), where a missing ray fails instead of skipping. The launcher runs as a user runs it, in its
own process (which starts the local cluster); the workers' processes run `scale_helpers.ray_worker_setup`
(Ray's worker_process_setup_hook, given the way `ray job submit` gives a job its runtime_env).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from doc_blocks import code_blocks
from scale_helpers import ROOT, assert_same_run, one_device_run, records, results

if os.environ.get("CI") != "true":
    pytest.importorskip("ray", reason="ray is not installed (not in the test extra): pip install 'ray[train]>=2.40'")

pytestmark = pytest.mark.slow


def _command(config: str, workdir: str) -> list[str]:
    """docs/scale-out.md's Ray Train command with the test's config and workdir, to run here."""
    (command,) = [c for b in code_blocks("docs/scale-out.md", "bash") for c in b.commands
                  if c.startswith("python launch/ray_train.py")]
    words = shlex.split(command)
    words[words.index("--config") + 1] = config
    words[words.index("--workdir") + 1] = workdir
    return [sys.executable, *words[1:]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(root, the config file of the scale-out tests' run, the one-device run of it)."""
    root = tmp_path_factory.mktemp("ray")
    data, reference = one_device_run(str(root))
    config = root / "config.py"
    config.write_text(f"import sys\nsys.path.insert(0, {os.path.join(ROOT, 'tests')!r})\n"
                      f"from scale_helpers import scale_config\n\n\n"
                      f"def get_config():\n    return scale_config({data!r}, {{}})\n", encoding="utf-8")
    return root, str(config), reference


def _launch(config: str, workdir: str, **hooks) -> tuple[dict, str]:
    """Runs the documented command with the test's config and workdir (Ray's records beside it);
    returns (the metrics Ray holds, the output). `hooks`: `ray_worker_setup`'s, as keyword arguments
    (`kill=...`, `reports=...`)."""
    command = [*_command(config, workdir), "--storage_path", workdir + "_ray"]
    runtime_env = {"worker_process_setup_hook": "scale_helpers.ray_worker_setup",
                   "env_vars": {"PYTHONPATH": f"{ROOT}{os.pathsep}{os.path.join(ROOT, 'tests')}",
                                "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1",
                                **{f"VITJAX_TEST_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
                                   for name, value in hooks.items()}}}
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", RAY_DEDUP_LOGS="0",
               RAY_JOB_CONFIG_JSON_ENV_VAR=json.dumps({"runtime_env": runtime_env}))
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(line), output


def _assert_ray_holds_the_results(metrics: dict, workdir: str) -> None:
    ours = results(workdir)
    assert metrics["step"] == 6 and metrics["best_step"] == ours["best_step"]
    for split, values in ours["metrics"].items():
        for key, value in values.items():
            assert metrics[f"{split}/{key}"] == pytest.approx(value), (split, key)


def test_two_workers_equal_one_device(runs):
    root, config, reference = runs
    workdir, reports = str(root / "two_workers"), str(root / "reports.jsonl")
    metrics, _ = _launch(config, workdir, reports=reports)
    assert results(workdir)["devices"] == 2
    assert_same_run(workdir, reference)
    assert records(workdir) == records(reference)  # written once, by process 0
    _assert_ray_holds_the_results(metrics, workdir)
    # Every record vitjax logged went to Ray as it was logged, the run's summary last.
    with open(reports, encoding="utf-8") as f:
        reported = [json.loads(line) for line in f]
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        logged = [json.loads(line) for line in f]
    assert reported[:-1] == [{"step": r["step"], **{f"{r['split']}/{k}": v for k, v in r.items()
                                                   if k not in ("step", "split", "time")}} for r in logged]
    assert reported[-1] == metrics


def test_a_killed_worker_is_restarted_and_the_run_resumes_to_the_same_end(runs):
    """Rank 0 (the process holding the workdir lock) is killed at its first batch after a checkpoint
    is committed (the one of step 3, in a train step of epoch 2; at the latest that of step 6, in the
    final evaluation): Ray restarts the group, which takes over the dead run's lock and resumes from
    the newest checkpoint."""
    root, config, reference = runs
    workdir = str(root / "restarted")
    marker = str(root / "killed.txt")
    metrics, output = _launch(config, workdir, kill=dict(rank=0, marker=marker,
                                                         checkpoints=os.path.join(workdir, "checkpoints")))
    assert os.path.exists(marker)  # the crash happened
    assert "taking over the lock of a run that ended without releasing it" in output
    assert re.search(r"resumed from the checkpoint of step [36] ", output)
    assert_same_run(workdir, reference)
    assert records(workdir) == records(reference)
    _assert_ray_holds_the_results(metrics, workdir)


def test_a_bad_config_is_refused_before_any_worker_starts(runs):
    root, config, _ = runs
    command = [*_command(config, str(root / "refused")), "--config.train.batch_size=0"]
    done = subprocess.run(command, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "vitjax: config.train.batch_size must be a positive integer, got 0."
    assert not os.path.exists(root / "refused")
