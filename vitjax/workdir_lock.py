"""One training run per workdir: a lock file that names the run holding it.

`hold(workdir)` takes an exclusive `flock` on `<workdir>/.vitjax.lock` for as long as the run lasts
and writes into it who holds it (host, pid, start time, command). A second run in the same workdir
is refused with those details. The kernel drops the lock when its process ends, however it ends
(kill -9 included), so the lock file a dead run left behind is taken over, with a note naming it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import sys

from vitjax.errors import UserError
from vitjax.workdir import LOCK

log = logging.getLogger(__name__)


class WorkdirBusy(UserError, RuntimeError):
    """Another live run holds the workdir."""


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
            f"{holder.get('started', '?')}: {holder.get('command', '?')}")


def _read(f) -> dict:
    f.seek(0)
    try:
        return json.loads(f.read() or "{}")
    except ValueError:
        return {}


@contextlib.contextmanager
def hold(workdir: str):
    """Holds the workdir's lock inside the `with` block; raises `WorkdirBusy` when another run has it."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK)
    f = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusy(
                f"{workdir} is in use by another run ({_describe(_read(f))}; lock file {path}). Wait "
                f"for it to finish or stop it, or use another --workdir.") from None
        previous = _read(f)
        if previous:
            log.warning("taking over the lock of a run that ended without releasing it (%s)",
                        _describe(previous))
        f.seek(0)
        f.truncate()
        json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                   "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                   "command": " ".join(sys.argv)}, f)
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # released in good order: nothing for the next run to take over
            f.flush()
    finally:
        f.close()
