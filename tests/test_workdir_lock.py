"""One run per workdir: a second run is refused naming the first (host, pid, start time); the lock
of a run killed with -9 is taken over; `--overwrite` cannot delete a live run's files."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from train_helpers import tiny_config
from vitjax import modes, workdir_lock
from vitjax.workdir import Workdir

_HOLDER = """
import sys, time
from vitjax import workdir_lock
with workdir_lock.hold(sys.argv[1]):
    open(sys.argv[2], "w").close()
    time.sleep(600)
"""


def _start_holder(workdir, tmp_path):
    marker = str(tmp_path / "holding")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, workdir, marker])
    deadline = time.time() + 60
    while not os.path.exists(marker) and time.time() < deadline:
        time.sleep(0.05)
    assert os.path.exists(marker)
    return holder


def test_a_second_run_is_refused_naming_the_first_and_overwrite_deletes_nothing(tmp_path):
    workdir = str(tmp_path / "run")
    Workdir(workdir).create()  # a live run's workdir
    open(os.path.join(workdir, "results.json"), "w").close()
    holder = _start_holder(workdir, tmp_path)
    try:
        with pytest.raises(modes.UserError, match=rf"{workdir} is in use by another run \(pid {holder.pid} "
                                                  rf"on host {socket.gethostname()}, started 20\d\d-.*"
                                                  rf"Wait for it to finish or stop it, or use another --workdir"):
            modes.train(tiny_config("demo:digits"), workdir, overwrite=True)
        assert os.path.exists(os.path.join(workdir, "results.json"))
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    workdir = str(tmp_path / "run")
    holder = _start_holder(workdir, tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.WARNING), workdir_lock.hold(workdir):
        with open(os.path.join(workdir, workdir_lock.LOCK), encoding="utf-8") as f:
            assert json.load(f)["pid"] == os.getpid()
    assert f"taking over the lock of a run that ended without releasing it (pid {holder.pid}" in caplog.text
    with open(os.path.join(workdir, workdir_lock.LOCK), encoding="utf-8") as f:
        assert f.read() == ""  # released in good order: the next run takes it silently
