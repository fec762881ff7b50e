"""The `kill -9` / Ctrl-C resume check of tests/kill_resume.py as a slow test (several minutes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "kill_resume.py")
    out = subprocess.run([sys.executable, script, "--kills", "8", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "8 stops tried" in out.stdout and "every resumed run equals the uninterrupted one" in out.stdout
