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
previous complete one. A checkpoint that reads but holds other tensors than the run's model and
optimizer (the config changed) is refused (`CheckpointMismatch`), never set aside. A reader of a
workdir (export) opens the directory `read_only`: it never writes there or cleans it up.

On `gs://` orbax reads and writes the bucket itself. On another object store (`s3://`), whose arrays
orbax cannot write, the checkpoints are staged: orbax works in a local staging folder, each step it has
committed is uploaded whole with its commit file (`_CHECKPOINT_METADATA`) last, so a step cut short by a
kill is never taken for a checkpoint; the steps the policy drops are deleted from the bucket too (commit
file first). Opening the directory downloads its committed steps (the best k and the latest).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile

import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from vitjax import storage
from vitjax.errors import BadValue
from vitjax.parallel import sync as parallel_sync


log = logging.getLogger(__name__)

TRASH = ".deleted"
COMMIT_FILE = "_CHECKPOINT_METADATA"  # orbax writes it into a step's folder when the step is complete


class CheckpointWriteError(OSError):
    pass


class CheckpointMismatch(BadValue):
    """A complete checkpoint of another model or optimizer than the run's (a config change)."""


def _flat_shapes(tree) -> dict[str, tuple]:
    """Slash-joined leaf paths -> shapes, alike for a train state and orbax's metadata of one."""
    def name(key) -> str:
        return str(next(getattr(key, a) for a in ("name", "key", "idx") if hasattr(key, a)))
    return {"/".join(name(k) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _differences(saved, abstract_state) -> list[str]:
    """How the saved state's tensors differ from the run's (paths and shapes; nothing: they fit)."""
    ours, theirs = _flat_shapes(abstract_state), _flat_shapes(saved)
    out = [f"{p}: {theirs[p]} in the checkpoint, {ours[p]} in the model"
           for p in ours if p in theirs and ours[p] != theirs[p]]
    out += [f"{p}: not in the checkpoint" for p in ours if p not in theirs]
    out += [f"{p}: in the checkpoint, not in the model" for p in theirs if p not in ours]
    return out


def _write_failure(e: BaseException) -> bool:
    """A failure to write files: an OSError, or tensorstore's report of one (a ValueError)."""
    return isinstance(e, OSError) or (isinstance(e, ValueError) and "os_error_code=" in str(e))


class _ReportedHere(logging.Filter):
    """Drops orbax's logged tracebacks of what this module reports itself in one message (a write
    failure, as CheckpointWriteError) and of Ctrl-C, which is no failure, and its warning about a
    save without metrics."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Given directory is read only"):
            return False  # a reader's manager (`read_only`), as asked
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
    return bool(_committed_steps(directory)) if staged(directory) else (
        storage.isdir(directory) and any(name.isdigit() for name in storage.listdir(directory)))


def staged(directory: str) -> bool:
    """Whether checkpoints in `directory` go through a local staging folder: object storage other than
    gs:// (whose arrays orbax writes itself)."""
    return storage.is_remote(directory) and storage.scheme(directory) != "gs"


def _committed_steps(directory: str) -> list[int]:
    """The steps uploaded whole to staged `directory` (their commit file is there)."""
    return sorted(int(name) for name in storage.listdir(directory)
                  if name.isdigit() and storage.isfile(storage.join(directory, name, COMMIT_FILE)))


class Checkpointer:
    """Keeps the latest checkpoint and the `keep_best` best by `metric` (mode "max"/"min")."""

    def __init__(self, directory: str, *, metric: str, mode: str, keep_best: int = 1,
                 async_save: bool = True, read_only: bool = False):
        """`read_only`: a reader of a workdir (export), which never writes to the directory or
        cleans it (a live run's temporary step directories and trash stay as they are)."""
        best = lambda m: m[metric]  # noqa: E731
        policy = policies.AnyPreservationPolicy([
            policies.LatestN(1),
            policies.BestN(get_metric_fn=best, reverse=mode == "min", n=keep_best,
                           keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            best_fn=best, best_mode=mode, preservation_policy=policy,
            save_interval_steps=0 if read_only else 1,
            enable_async_checkpointing=async_save and not read_only, create=not read_only,
            cleanup_tmp_directories=not read_only, todelete_subdir=None if read_only else TRASH,
            read_only=read_only,
            save_root_metadata=not read_only)
        self.read_only = read_only
        self.directory = storage.absolute(directory)  # what messages name
        # Where orbax writes: the directory itself, or a local staging folder mirrored to it.
        self._root = storage.staging_dir("vitjax-checkpoints-") if staged(directory) else self.directory
        self._uploaded = self._download() if staged(directory) else set()
        self._manager = ocp.CheckpointManager(self._root, options=options)
        self._writing = None  # the step whose (asynchronous) save may still be under way

    # ---- staging (object storage that orbax cannot write: s3://) ---------------------------------------
    def _download(self) -> set[int]:
        """Fetches the committed steps of the bucket into the staging folder; a writer first deletes
        the steps a killed run left half uploaded (it holds the workdir's lock)."""
        steps = _committed_steps(self.directory)
        if not self.read_only:
            for name in storage.listdir(self.directory):
                if name.isdigit() and int(name) not in steps:
                    storage.rmtree(storage.join(self.directory, name))
        for step in steps:
            storage.copy(storage.join(self.directory, str(step)), os.path.join(self._root, str(step)))
        return set(steps)

    def _upload(self) -> None:
        """Mirrors the staging folder's committed steps to the bucket: new steps uploaded whole (commit
        file last), dropped ones deleted (commit file first). Called once orbax has finished saving."""
        if self._root == self.directory or self.read_only or jax.process_index() != 0:
            return
        local = {int(name) for name in os.listdir(self._root)
                 if name.isdigit() and os.path.isfile(os.path.join(self._root, name, COMMIT_FILE))}
        for step in sorted(self._uploaded - local):
            self._delete_remote(step)
        for step in sorted(local - self._uploaded):
            storage.copy(os.path.join(self._root, str(step)), storage.join(self.directory, str(step)),
                         last=COMMIT_FILE)
            self._uploaded.add(step)

    def _delete_remote(self, step: int) -> None:
        if self._root != self.directory and step in self._uploaded:
            storage.remove(storage.join(self.directory, str(step), COMMIT_FILE))
            storage.rmtree(storage.join(self.directory, str(step)))
            self._uploaded.discard(step)

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
            self._delete_remote(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state),
                                  host=ocp.args.JsonSave(host_state))
        with self._reporting_write_errors():  # a failure of the previous save surfaces here
            self._manager.wait_until_finished()
            self._upload()
        self._empty_trash()
        self._writing = step
        with self._reporting_write_errors():
            self._probe_writable()
            self._manager.save(step, args=args, metrics=metrics, force=True)

    def _empty_trash(self) -> None:
        if jax.process_index() == 0 and not self.read_only:
            storage.rmtree(storage.join(self._root, TRASH))

    def _probe_writable(self) -> None:
        """Fails fast on a read-only or full directory: orbax, failing to create a step's
        directory in its background thread, would wait minutes before giving up."""
        if storage.is_remote(self._root):
            return  # a bucket is not full, and orbax reports a refused write at once
        with tempfile.NamedTemporaryFile(dir=self._root, prefix=".write-probe-") as f:
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
        None when there is none; damaged newer ones (unreadable files) are moved aside with a
        warning. A checkpoint that reads but does not fit `abstract_state` (another model or
        optimizer) is no damage: `CheckpointMismatch` names the difference."""
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                saved = ocp.StandardCheckpointHandler().metadata(
                    epath.Path(self._root) / str(step) / "state")
            except Exception as e:  # noqa: BLE001 - unreadable: damage, as below
                self._set_aside(step, e)
                continue
            differences = _differences(saved, abstract_state)
            if differences:
                raise CheckpointMismatch(
                    f"the checkpoint of step {step} in {self.directory} does not fit the model and "
                    f"optimizer of this config ({'; '.join(differences[:6])}"
                    f"{'; ...' if len(differences) > 6 else ''}): it was saved by a run with another "
                    f"config. Resume it with that config, or pass --overwrite to delete the earlier "
                    f"run, or use another --workdir.")
            try:
                return (step, *self.restore(step, abstract_state))
            except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds for lost files
                self._set_aside(step, e)
        return None

    def _set_aside(self, step: int, error: Exception) -> None:
        """Moves the damaged checkpoint of `step` into `.damaged-<step>`, with a warning."""
        aside = storage.join(self.directory, f".damaged-{step}")
        if jax.process_index() == 0:
            bucket = [self.directory] if self._root != self.directory and not self.read_only else []
            for root in [self._root, *bucket]:  # (and the bucket's copy of a staged step)
                storage.rmtree(storage.join(root, f".damaged-{step}"))
                if storage.exists(storage.join(root, str(step))):
                    storage.rename(storage.join(root, str(step)), storage.join(root, f".damaged-{step}"))
            self._uploaded.discard(step)
        parallel_sync(f"vitjax: damaged checkpoint {step} moved")
        self._manager.reload()
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else type(error).__name__
        log.warning("the checkpoint of step %d in %s is damaged (%s: %s); moved it to %s and "
                    "resuming from the previous complete checkpoint, if any.", step,
                    self.directory, type(error).__name__, first_line[:300], aside)

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
            self._upload()
        self._writing = None

    def close(self) -> None:
        try:
            self.wait()
            self._empty_trash()
        finally:
            self._manager.close()
            if self._root != self.directory:
                shutil.rmtree(self._root, ignore_errors=True)
