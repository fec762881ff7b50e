"""Run checkpoints with orbax: the best k by the tracked metric plus the latest, for resume.

A checkpoint holds three items: `state` (step, params, optimizer state, EMA, RNG; restored
with the current shardings, so a run may resume on another device count), `data` (the input
iterator's state, so a resumed run sees the very next batch) and `host` (epoch, history,
early-stopping and plateau state). orbax writes each step to a temporary directory and renames
it when complete, so an interrupted save is never mistaken for a finished one; the temporary
directories a killed run leaves behind are removed when the next run opens the directory.
Checkpoints the policy drops are first renamed into `.deleted/` and removed from there before
the next save, so a kill during a deletion never leaves a half-deleted step that looks complete.
A save that cannot be written (disk full, read-only or unwritable directory) raises
`CheckpointWriteError` naming the step, the cause and the checkpoints still intact.
`restore_latest` skips a damaged newest checkpoint (a file lost or cut short, after it was
committed): it is moved aside into `.damaged-<step>` with a warning, and the run resumes from the
previous complete one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from vitjax.parallel import sync as parallel_sync


log = logging.getLogger(__name__)

TRASH = ".deleted"


class CheckpointWriteError(OSError):
    pass


def _write_failure(e: BaseException) -> bool:
    """A failure to write files: an OSError, or tensorstore's report of one (a ValueError)."""
    return isinstance(e, OSError) or (isinstance(e, ValueError) and "os_error_code=" in str(e))


class _ReportedHere(logging.Filter):
    """Drops orbax's logged tracebacks of what this module reports itself in one message (a write
    failure, as CheckpointWriteError) and of Ctrl-C, which is no failure, and its warning about a
    save without metrics."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(_UNRANKED_SAVE):
            return False  # a save between evaluations (an interruption): ranked once its evaluation runs
        error = record.exc_info[1] if record.exc_info else None
        return error is None or not (_write_failure(error) or isinstance(error, KeyboardInterrupt))


_UNRANKED_SAVE = "Requested `tracked_metric`; did not provide metrics"


_ORBAX_LOG = logging.getLogger("absl")  # orbax logs through absl.logging
if not any(isinstance(f, _ReportedHere) for f in _ORBAX_LOG.filters):
    _ORBAX_LOG.addFilter(_ReportedHere())


def has_checkpoints(directory: str) -> bool:
    """Whether `directory` holds a committed checkpoint (orbax names each step's folder by its number)."""
    return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


class Checkpointer:
    """Keeps the latest checkpoint and the `keep_best` best by `metric` (mode "max"/"min")."""

    def __init__(self, directory: str, *, metric: str, mode: str, keep_best: int = 1,
                 async_save: bool = True):
        best = lambda m: m[metric]  # noqa: E731
        policy = policies.AnyPreservationPolicy([
            policies.LatestN(1),
            policies.BestN(get_metric_fn=best, reverse=mode == "min", n=keep_best,
                           keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            best_fn=best, best_mode=mode, preservation_policy=policy,
            enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True,
            todelete_subdir=TRASH)
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._writing = None  # the step whose (asynchronous) save may still be under way

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The best step by the tracked metric, or the latest when none carries metrics."""
        return self._manager.best_step()

    def save(self, step: int, state, data_state: dict, host_state: dict,
             metrics: dict | None = None) -> None:
        """Saves asynchronously; `metrics` (scalar floats incl. the tracked one, which the loop
        checks with `vitjax.tracking.tracked_value` as each evaluation ends) rank it.

        A step already saved is kept as it is, unless it was saved without metrics (an
        interruption before its evaluation) and now comes with them: then it is replaced.
        """
        if step in self._manager.all_steps():
            if metrics is None or self._manager.metrics(step) is not None:
                return
            self._manager.wait_until_finished()
            self._manager.delete(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state),
                                  host=ocp.args.JsonSave(host_state))
        with self._reporting_write_errors():  # a failure of the previous save surfaces here
            self._manager.wait_until_finished()
        self._empty_trash()
        self._writing = step
        with self._reporting_write_errors():
            self._probe_writable()
            self._manager.save(step, args=args, metrics=metrics, force=True)

    def _empty_trash(self) -> None:
        if jax.process_index() == 0:
            shutil.rmtree(os.path.join(self.directory, TRASH), ignore_errors=True)

    def _probe_writable(self) -> None:
        """Fails fast on a read-only or full directory: orbax, failing to create a step's
        directory in its background thread, would wait minutes before giving up."""
        with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".write-probe-") as f:
            f.write(b"vitjax")
            f.flush()

    @contextlib.contextmanager
    def _reporting_write_errors(self):
        """Turns an OSError of the save under way into a `CheckpointWriteError` saying what to do."""
        try:
            yield
        except (OSError, ValueError) as e:
            if self._writing is None or isinstance(e, CheckpointWriteError) or not _write_failure(e):
                raise
            step, self._writing = self._writing, None
            self._manager.reload()  # what is on disk, not the failed step it had listed
            kept = self.latest_step()
            intact = f"step {kept}" if kept is not None else "none yet"
            raise CheckpointWriteError(
                f"could not write the checkpoint of step {step} to {self.directory}: {e}. The "
                f"complete checkpoints there are intact (latest: {intact}). Free disk space or make "
                f"the directory writable, then run the same command again to resume.") from e

    def restore(self, step: int, abstract_state):
        """Returns (state, data_state, host_state); `abstract_state` carries target shardings."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  data=ocp.args.JsonRestore(), host=ocp.args.JsonRestore())
        out = self._manager.restore(step, args=args)
        return out["state"], out["data"], out["host"]

    def metrics(self, step: int) -> dict | None:
        """The metrics the checkpoint of `step` was saved with (None: saved without)."""
        return self._manager.metrics(step)

    def restore_latest(self, abstract_state):
        """(step, state, data_state, host_state) of the newest checkpoint that restores whole, or
        None when there is none; damaged newer ones are moved aside with a warning."""
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                return (step, *self.restore(step, abstract_state))
            except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds for lost files
                aside = os.path.join(self.directory, f".damaged-{step}")
                if jax.process_index() == 0:
                    shutil.rmtree(aside, ignore_errors=True)
                    os.rename(os.path.join(self.directory, str(step)), aside)
                parallel_sync(f"vitjax: damaged checkpoint {step} moved")
                self._manager.reload()
                first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                log.warning("the checkpoint of step %d in %s is damaged (%s: %s); moved it to %s and "
                            "resuming from the previous complete checkpoint, if any.", step,
                            self.directory, type(e).__name__, first_line[:300], aside)
        return None

    def restore_params(self, step: int, abstract_params, ema: bool = False):
        """Only the params (the EMA params with `ema`) of `step`, placed like `abstract_params`:
        no optimizer needs to be built (export)."""
        key = "ema_params" if ema else "params"
        target = {key: jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_params)}
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
        args = ocp.args.Composite(state=ocp.args.PyTreeRestore(target, restore_args=restore_args,
                                                               partial_restore=True))
        return self._manager.restore(step, args=args)["state"][key]

    def wait(self) -> None:
        with self._reporting_write_errors():
            self._manager.wait_until_finished()
        self._writing = None

    def close(self) -> None:
        try:
            self.wait()
            self._empty_trash()
        finally:
            self._manager.close()
