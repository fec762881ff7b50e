"""One training run per workdir: a lock file that names the run holding it.

`hold(workdir)` takes an exclusive `flock` on `<workdir>/.vitjax.lock` for as long as the run lasts
and writes into it who holds it (host, pid, start time, command). A second run in the same workdir
is refused with those details. The kernel drops the lock when its process ends, however it ends
(kill -9 included), so the lock file a dead run left behind is taken over, with a note naming it.

Object storage (`gs://`, `s3://`) has no flock: the lock is an object created only when none is there
(a conditional write: S3's `If-None-Match: *`, GCS's `ifGenerationMatch=0`), so of two runs starting
together exactly one gets it. It holds the same details and is deleted when the run ends in good order.
A run that dies without ending (kill -9, a lost machine) leaves it: the next run takes it over only when
it names this very host and a process that no longer runs; otherwise the next run is refused, with the
object named and how to remove it once that run is known to be dead.
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

from vitjax import storage
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


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}


@contextlib.contextmanager
def hold(workdir: str):
    """Holds the workdir's lock inside the `with` block; raises `WorkdirBusy` when another run has it."""
    if storage.is_remote(workdir):
        with _hold_object(storage.join(workdir, LOCK), workdir):
            yield
        return
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
        json.dump(_holder(), f)
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # released in good order: nothing for the next run to take over
            f.flush()
    finally:
        f.close()


def _dead_here(holder: dict) -> bool:
    """Whether `holder` names a process of this host that no longer runs."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    return False


@contextlib.contextmanager
def _hold_object(path: str, workdir: str):
    """The lock as an object on object storage, created only when none is there (`storage.create_exclusive`)."""
    mine = json.dumps(_holder()).encode()
    while not storage.create_exclusive(path, mine):
        try:
            holder = json.loads(storage.read_text(path) or "{}")
        except FileNotFoundError:
            continue  # released meanwhile: try again
        except ValueError:
            holder = {}
        if not _dead_here(holder):
            raise WorkdirBusy(
                f"{workdir} is in use by another run ({_describe(holder)}; lock object {path}). Wait for it "
                f"to finish or stop it, or use another --workdir. Object storage keeps the lock of a run that "
                f"died (kill -9, a lost machine): once that run is known to be dead, delete the object "
                f"(e.g. `aws s3 rm {path}` or `gcloud storage rm {path}`) and run the same command again.")
        log.warning("taking over the lock of a run that ended without releasing it (%s)", _describe(holder))
        storage.remove(path)
    try:
        yield
    finally:
        try:  # released in good order; never another run's lock
            if storage.read_bytes(path) == mine:
                storage.remove(path)
        except FileNotFoundError:
            pass
