"""What a killed run would leave behind, prevented or cleaned up at the next start.

`die_with_parent` runs first thing in every grain worker process: the kernel sends the worker a
SIGKILL when the training process ends, however it ends (kill -9 included), so no orphaned worker
keeps its memory. `remove_dead_ram_caches` deletes the RAM decode caches (`cache="ram"`, files in
/dev/shm named after the pid of their run) whose run is no longer alive.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent(worker_index: int = 0, worker_count: int = 1) -> None:
    """grain's `worker_init_fn`: this process gets SIGKILL when its parent dies (Linux only)."""
    del worker_index, worker_count
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_dead_ram_caches(folder: str, pattern: str = "*-vitjax-*.u8*") -> list[str]:
    """Removes `<pid>-vitjax-...` cache files in `folder` whose pid is not running; returns them."""
    removed = []
    for path in glob.glob(os.path.join(folder, pattern)):
        pid = os.path.basename(path).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass  # another run cleaning up at the same moment, or not ours to remove
    if removed:
        log.warning("removed %d RAM decode cache file(s) left in %s by runs that no longer exist",
                    len(removed), folder)
    return removed
