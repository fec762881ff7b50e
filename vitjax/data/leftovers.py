"""What a killed run would leave behind, prevented or cleaned up at the next start.

`die_with_parent` runs first thing in every grain worker process: the worker ends as soon as the
training process does, however it ends (kill -9 included), so no orphaned worker keeps its memory.
`remove_dead_ram_caches` deletes the RAM decode caches (`cache="ram"`, files in /dev/shm named after
the pid of their run) whose run is no longer alive.
"""

from __future__ import annotations

import glob
import logging
import os
import select
import threading
import time

log = logging.getLogger(__name__)


def die_with_parent(worker_index: int = 0, worker_count: int = 1) -> None:
    """grain's `worker_init_fn`: a thread of this process waits for its parent process to end (on a
    pidfd; where there is none, by polling the parent pid each second), then ends this process.

    Not Linux's PR_SET_PDEATHSIG: that fires when the *thread* that started the worker ends, and
    grain starts its workers from prefetch threads that its own orderly shutdown stops first, so the
    workers were killed with batches in flight, their shared-memory blocks never unlinked (Python's
    resource tracker then warned of "leaked shared_memory objects" at exit).
    """
    del worker_index, worker_count
    parent = os.getppid()
    try:
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):  # not Linux >= 5.3, or the parent has already gone
        pidfd = None
    if os.getppid() != parent:  # the parent died before the watch began
        os._exit(1)
    threading.Thread(target=_exit_with, args=(parent, pidfd), daemon=True,
                     name="vitjax-die-with-parent").start()


def _exit_with(parent: int, pidfd: int | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable once the parent process has ended
    else:
        while os.getppid() == parent:
            time.sleep(1.0)
    os._exit(1)


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
