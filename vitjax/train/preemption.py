"""Stop requests: SIGTERM (preemption) and Ctrl-C end training at a step boundary, on every process alike.

`StopSignals` is a context manager around the training loop; `requested(step)` is asked before every
step. One process: SIGTERM (what SLURM, Kubernetes and TPU maintenance send) and the first Ctrl-C set
a flag, so the step under way finishes and the loop saves and raises `Stopped`; a second Ctrl-C
stops at once (KeyboardInterrupt). Several processes (`jax.distributed`): JAX's preemption sync
service catches SIGTERM on whichever host receives it and agrees with every other host on the step
at which all of them stop (`multihost_utils.reached_preemption_sync_point`), so they all save the
same step; Ctrl-C is forwarded to that service as a SIGTERM of its own process.

Outside the train steps a run has phases with nothing to finish (setting up, restoring, evaluating the
best checkpoint): inside `at_once(...)` a signal raises `Stopped` at once. Phases that write (the final
checkpoint, results and export) complete first; `check(...)` after them raises `Stopped` for a signal
that came meanwhile. Either way the run says what it saved and exits 143 / 130, never silently.
(Several processes: these phases follow JAX's preemption service, which owns SIGTERM, as before.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

import jax
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


class Stopped(KeyboardInterrupt):
    """Training stopped on a signal after saving the checkpoint named in the message.

    `exit_code` is the shell's code for the signal: 143 for SIGTERM, 130 for Ctrl-C.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class StopSignals:
    """Installs the SIGTERM/SIGINT handlers for the `with` block (main thread only)."""

    def __init__(self):
        self.signum: int | None = None
        self._shared = jax.process_count() > 1
        self._previous = {}
        self._at_once = None  # inside `at_once`: the message of a stop there

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)
        if not self._shared:  # with several processes JAX's preemption service owns SIGTERM
            self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, the step under way is lost
        first = self.signum is None
        self.signum = signum
        if self._at_once is not None and not self._shared:
            raise Stopped(self._at_once(signal_name(signum)), signum)
        if first:
            log.warning("%s received: finishing the step under way, then saving a checkpoint "
                        "(Ctrl-C again to stop at once)", signal_name(signum))
        if self._shared and signum == signal.SIGINT:
            os.kill(os.getpid(), signal.SIGTERM)  # tell every host, through JAX's service

    def requested(self, step: int) -> bool:
        """True when training should stop after `step` (every process gets the same answer)."""
        if self._shared:
            if multihost_utils.reached_preemption_sync_point(step):
                self.signum = self.signum or signal.SIGTERM
                return True
            return False
        return self.signum is not None

    @contextlib.contextmanager
    def at_once(self, message):
        """Inside the block a stop signal (or one already received) raises `Stopped` at once, with
        `message(signal name)`: for phases that have nothing to finish or save."""
        self.check(message)
        self._at_once = message
        try:
            yield
        finally:
            self._at_once = None

    def check(self, message) -> None:
        """Raises `Stopped(message(signal name))` when a stop signal came (one process)."""
        if self.signum is not None and not self._shared:
            raise Stopped(message(signal_name(self.signum)), self.signum)
