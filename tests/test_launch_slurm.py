"""launch/slurm.sbatch: asks SLURM for a warning SIGTERM and requeueing, and requeues the job with the
same command when the run stopped on that signal (exit status 143) — never after a success or an error.
`srun` and `scontrol` are stand-ins that record how they were called."""

from __future__ import annotations

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "launch", "slurm.sbatch")


def test_the_script_asks_for_a_warning_signal_and_requeueing():
    with open(SCRIPT, encoding="utf-8") as f:
        directives = [line.split()[1] for line in f if line.startswith("#SBATCH")]
    assert "--requeue" in directives
    assert any(d.startswith("--signal=TERM@") for d in directives)


@pytest.mark.parametrize("run_status, requeued, script_status", [(143, True, 0), (0, False, 0), (1, False, 1)])
def test_a_stopped_run_is_requeued_with_the_same_command(tmp_path, run_status, requeued, script_status):
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for name, status in (("srun", run_status), ("scontrol", 0)):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit {status}\n')
        (bin_dir / name).chmod(0o755)
    out = subprocess.run(["bash", SCRIPT, "configs/beans.py", "runs/beans", "--config.optim.lr=1e-4"],
                         env=dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="77"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == script_status, out.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == ("srun python -m vitjax.main --config configs/beans.py --workdir runs/beans "
                        "--config.optim.lr=1e-4")
    assert lines[1:] == (["scontrol requeue 77"] if requeued else [])
