"""The train mode, read top to bottom: set up, train, keep the final and best checkpoints, report,
export.

`train(config, workdir)` builds the run (`setup.build_run`), resumes from the newest checkpoint that
fits it (`LoopState` is what a checkpoint holds besides the train state and the data position),
trains with an evaluation every `train.eval_every` (`_fit`), keeps the best and latest checkpoints,
stops early when asked, and ends with the best checkpoint's validation/test reports, results.json
and the export (`outputs`). Each phase sits under a banner comment.

SIGTERM and Ctrl-C: inside the train steps they finish the step under way, save it and raise
`preemption.Stopped` (which says where the checkpoint is; every process of a multi-process run stops
at the same step); in the phases before and after, they stop at once where there is nothing to
finish, or once the checkpoint / export being written is complete, and say so (exit 143 / 130).
An optional `train.checkpoint_every` also saves between evaluations, bounding what a hard kill loses.
A second Ctrl-C stops at once (`Interrupted`, saving only a state that matches its step); a
non-finite loss or non-finite parameters stop the run with the step named, and no checkpoint is ever
written from such a state, so the last good one stays the latest.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from vitjax import optim, trackers
from vitjax.errors import UserError
from vitjax.tracking import tracked_value
from vitjax.train import evaluation, feature_cache, outputs, setup
from vitjax.train.checkpointing import Checkpointer
from vitjax.train.early_stopping import EarlyStopping
from vitjax.train.preemption import StopSignals, Stopped, signal_name
from vitjax.train.progress import Progress
from vitjax.train.writer import MetricWriter

log = logging.getLogger(__name__)


class NonFiniteLoss(UserError, FloatingPointError):
    pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after the checkpoint named in the message was saved."""


@dataclasses.dataclass
class LoopState:
    """What the loop carries from step to step besides the train state and the data iterator's
    position: a checkpoint's `host` item, saved as JSON."""

    history: list = dataclasses.field(default_factory=list)  # one record per evaluation
    elapsed: float = 0.0  # seconds spent training, over every process that ran the run
    early_stopping: dict | None = None  # `EarlyStopping.state_dict()`
    plateau: dict | None = None  # `Plateau.state_dict()`, when the plateau is on
    train_summary: dict = dataclasses.field(default_factory=dict)  # the last logged train metrics
    window: dict | None = None  # train metrics accumulated since the last log line (`_Window`)

    @classmethod
    def from_json(cls, saved: dict) -> "LoopState":
        """A checkpoint's `host` item (an older vitjax saved fewer fields: theirs are the defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def evaluated(self) -> int:
        """The step of the last evaluation (0: none)."""
        return self.history[-1]["step"] if self.history else 0


class _Window:
    """The train metrics since the last log line and their throughput clock."""

    def __init__(self, saved: dict | None):
        self.metrics, self.steps, self.start, self._saved = None, 0, time.time(), saved

    def add(self, update) -> None:
        if self._saved:  # train metrics a checkpoint held, not yet logged when it was saved
            self.metrics, self.steps = _window_from_json(self._saved, update)
            self._saved = None
        self.metrics = update if self.metrics is None else self.metrics.merge(update)
        self.steps += 1

    def reset(self) -> None:
        self.metrics, self.steps, self.start = None, 0, time.time()

    def to_json(self) -> dict | None:
        return _window_to_json(self.metrics, self.steps) if self.metrics is not None else self._saved


def train(config, workdir: str, sinks=()) -> dict:
    """Runs (or resumes) training in `workdir`; returns the results dict (also results.json).
    `sinks` receive every logged record too (`MetricWriter`). A SIGTERM or Ctrl-C in any phase saves
    what the phase has, says so and raises `preemption.Stopped` (exit status 143 / 130)."""
    signals = StopSignals()
    with signals:
        # ---- Setup: the run and the checkpoints it resumes from ---------------------------------
        setting_up = lambda what: (f"stopped by {what} while setting up the run in {workdir}, "  # noqa: E731
                                   f"before training; run the same command again.")
        with signals.at_once(setting_up):
            run = feature_cache.cached_run(setup.build_run(config, workdir))
            cfg = config.train
            ckpt = Checkpointer(run.workdir.checkpoints, metric=cfg.best_metric, mode=cfg.best_mode,
                                keep_best=cfg.keep_best)
        try:
            with signals.at_once(setting_up):
                start = _start(run, ckpt)
                setup.write_run_files(run)  # after the checkpoints were found to fit the model
                eval_step = run.jit_eval_step()

            # ---- Training ---------------------------------------------------------------------
            state, loop, step = _fit(run, ckpt, start, eval_step, signals, sinks)

            # ---- The final checkpoint, then the best one --------------------------------------
            ckpt.wait()
            total = run.training.total_steps
            signals.check(lambda what: _stopped(what, step, total, ckpt.directory))
            with signals.at_once(lambda what: _after_training(what, "restoring the best checkpoint", step,
                                                             ckpt.directory)):
                best = ckpt.best_step()
                best_state = state if best in (None, step) else ckpt.restore(best, state)[0]
        finally:
            ckpt.close()

        # ---- Reports, results and the export --------------------------------------------------
        params = run.eval_params(best_state)
        with signals.at_once(lambda what: _after_training(what, "evaluating the best checkpoint", step,
                                                         ckpt.directory)):
            metrics = outputs.reports(run, params, eval_step)
        results = outputs.finish(run, params, metrics, loop, best_step=best or step)
        signals.check(lambda what: _after_training(what, "writing the results and the export (both "
                                                        "complete)", step, ckpt.directory))
        return results


@dataclasses.dataclass
class _Start:
    """Where training starts: the train state, the data iterator's state (None: from the start),
    the loop state and the step of the checkpoint resumed (None: none)."""

    state: object
    data: dict | None
    loop: LoopState
    latest: int | None


def _start(run, ckpt: Checkpointer) -> _Start:
    """The newest checkpoint that fits the run, or step 0."""
    state = run.init_state()
    restored = ckpt.restore_latest(state) if run.config.train.resume else None
    if restored is None:
        plateau = run.training.plateau
        fresh = LoopState(early_stopping=_stopper(run).state_dict(),
                          plateau=plateau.state_dict() if plateau else None)
        return _Start(state, None, fresh, None)
    latest, state, data_state, host = restored
    log.info("resumed from the checkpoint of step %d in %s", latest, ckpt.directory)
    return _Start(state, data_state, LoopState.from_json(host), latest)


def _stopper(run) -> EarlyStopping:
    cfg = run.config.train
    return EarlyStopping(mode=cfg.best_mode, patience=cfg.early_stopping_patience,
                         min_delta=cfg.early_stopping_min_delta)


def _fit(run, ckpt: Checkpointer, start: _Start, eval_step, signals: StopSignals, sinks):
    """The train steps from `start` to the end (or an early stop), evaluating and saving as the
    config asks; returns (state, loop state, step)."""
    cfg, training = run.config.train, run.training
    total, eval_every = training.total_steps, training.eval_every_steps
    state, loop = start.state, start.loop
    stopper = _stopper(run).resumed(loop.early_stopping or {})
    plateau = training.plateau.resumed(loop.plateau) if training.plateau and loop.plateau else training.plateau
    train_iter = run.train_iterator()
    if start.data is not None:
        train_iter.set_state(start.data)
    writer = MetricWriter(run.workdir.path, start_step=start.latest or 0, sinks=sinks,
                          tensorboard="tensorboard" in trackers.reporters(cfg.report_to))
    train_step = run.jit_train_step()
    if start.latest is None or start.latest < total:
        evaluation.check_tracked_metrics(run, run.eval_params(state), eval_step, {
            "config.train.best_metric": cfg.best_metric,
            **({"config.optim.plateau.metric": plateau.metric} if plateau else {})})
    step = int(jax.device_get(state.step))
    progress = Progress(total, step, enabled=cfg.progress and jax.process_index() == 0)
    window = _Window(loop.window)
    run_start = time.time() - loop.elapsed
    stop = stopper.should_stop()
    # The iterator's state as of the last completed step: an interruption between `next()` and
    # the end of a step must not skip the batch it had already drawn.
    data_state = train_iter.get_state()

    def save(metrics=None):
        loop.elapsed = time.time() - run_start
        loop.window = window.to_json()
        _check_finite_params(state, step, run, ckpt.latest_step())
        ckpt.save(step, state, data_state, loop.to_json(), metrics=metrics)

    def save_as_is():
        """Saves the current step, keeping an evaluation's metrics when it already ran."""
        last = loop.history[-1] if loop.history else {}
        save(metrics=_validation_metrics(last) if last.get("step") == step else None)

    try:
        while True:
            # ---- A stop request: save this step and stop ----------------------------------------
            if signals.requested(step):
                save_as_is()
                raise Stopped(_stopped(signal_name(signals.signum), step, total, ckpt.directory),
                              signals.signum)
            # ---- Evaluation (also right after resuming a checkpoint saved before its own) --------
            if _evaluation_due(step, loop, eval_every, total):
                state, stop, record = _validate(run, state, step, eval_step, loop, stopper, plateau,
                                                writer)
                save(metrics=_validation_metrics(record))
                progress.epoch_table(record)
                window.start = time.time()  # evaluation time is not training throughput
                if stop:
                    log.info("early stopping at step %d: %s", step, stopper.why(cfg.best_metric))
            if step >= total or stop:
                return state, loop, step
            # ---- One train step ------------------------------------------------------------------
            state, (update, grad_norm) = train_step(state, next(train_iter))
            data_state = train_iter.get_state()
            window.add(update)
            step += 1
            # ---- Logging and the periodic checkpoint ---------------------------------------------
            if step % cfg.log_every == 0 or step % eval_every == 0 or step == total:
                loop.train_summary = _train_summary(run, window, step, state, grad_norm, ckpt)
                writer.write(step, loop.train_summary, "train")
                progress.update(step, loop.train_summary)
                window.reset()
            every = training.checkpoint_every_steps
            if every and step % every == 0 and not _evaluation_due(step, loop, eval_every, total):
                save()
    except KeyboardInterrupt as e:
        if isinstance(e, Stopped):
            raise
        # Nothing to save after Ctrl-C inside a step (jit took the donated state) or just after
        # one (the state is ahead of `step` and its data state): the run resumes from the
        # checkpoint before and repeats those steps. A state saved before its evaluation ran is
        # evaluated first thing on resume; one saved after it keeps its metrics.
        if _alive(state) and int(jax.device_get(state.step)) == step:
            log.warning("interrupted at step %d: saving a checkpoint before stopping", step)
            save_as_is()
        ckpt.wait()
        raise Interrupted(_interrupted(step, total, ckpt.latest_step(), ckpt.directory)) from None
    finally:
        loop.elapsed = time.time() - run_start
        train_iter.close()  # its worker processes end here, not after the final evaluation
        progress.close()
        writer.close()


def _evaluation_due(step: int, loop: LoopState, eval_every: int, total: int) -> bool:
    return step > loop.evaluated and (step % eval_every == 0 or step == total)


def _validate(run, state, step: int, eval_step, loop: LoopState, stopper: EarlyStopping, plateau, writer):
    """Evaluates `state` on the validation split, records it in `loop` (history, early stopping,
    plateau, whose scale goes into the optimizer state); returns (state, whether to stop, record)."""
    val = evaluation.evaluate(run, run.eval_params(state), eval_step, "validation")
    writer.write(step, val, "validation")
    record = {"step": step, "epoch": step / run.training.steps_per_epoch,
              **{f"train/{k}": v for k, v in loop.train_summary.items()},
              **{f"validation/{k}": v for k, v in val.items()}}
    loop.history.append(record)
    task, cfg = run.model.task, run.config.train
    stop = stopper.update(tracked_value(val, cfg.best_metric, task.name, "config.train.best_metric"))
    loop.early_stopping = stopper.state_dict()
    if plateau:
        scale = plateau.update(tracked_value(val, plateau.metric, task.name, "config.optim.plateau.metric"))
        state = state.replace(opt_state=optim.set_lr_scale(state.opt_state, scale))
        loop.plateau = plateau.state_dict()
    return state, stop, record


def _train_summary(run, window: _Window, step: int, state, grad_norm, ckpt) -> dict:
    """The task's summary of the train metrics since the last log line, with lr, gradient norm and
    throughput; a non-finite loss stops the run."""
    summary = run.model.task.summarize(jax.device_get(window.metrics.compute()))
    _check_finite(summary, step, run, ckpt.latest_step())
    summary.update(lr=run.lr_at(step - 1, state.opt_state), grad_norm=float(grad_norm),
                   images_per_s=window.steps * run.config.train.batch_size
                   / max(time.time() - window.start, 1e-9))
    return summary


def _window_to_json(window, steps: int) -> dict | None:
    """The train metrics accumulated since the last log line, exactly, as JSON for a checkpoint."""
    if window is None:
        return None
    return {"leaves": [np.asarray(x).tolist() for x in jax.tree.leaves(jax.device_get(window))],
            "steps": steps}


def _window_from_json(saved: dict, like):
    """(window, steps) from `_window_to_json`'s output, shaped like the metrics `like`."""
    leaves = [np.asarray(v, np.asarray(x).dtype) for v, x in zip(saved["leaves"], jax.tree.leaves(like))]
    return jax.tree.unflatten(jax.tree.structure(like), leaves), saved["steps"]


def _validation_metrics(record: dict) -> dict[str, float]:
    """The validation metrics of a history record, as a checkpoint ranks them."""
    return {k.removeprefix("validation/"): float(v) for k, v in record.items()
            if k.startswith("validation/")}


def _alive(state) -> bool:
    return not any(x.is_deleted() for x in jax.tree.leaves(state) if isinstance(x, jax.Array))


def _interrupted(step: int, total: int, latest: int | None, directory: str) -> str:
    if latest is None:
        return (f"stopped by Ctrl-C at step {step} of {total}, before any checkpoint; run the "
                f"same command again to start over.")
    return (f"stopped by Ctrl-C at step {step} of {total}; the latest checkpoint is step "
            f"{latest} in {directory}. Run the same command again to resume from it.")


def _after_training(what: str, phase: str, step: int, directory: str) -> str:
    return (f"stopped by {what} while {phase}, after training ended at step {step}; the checkpoints "
            f"in {directory} are complete. Run the same command again to finish the run's reports "
            f"and export.")


def _stopped(what: str, step: int, total: int, directory: str) -> str:
    return (f"stopped by {what} at step {step} of {total}; saved the checkpoint of step {step} in "
            f"{directory}. Run the same command again to resume from it.")


def _check_finite(scalars: dict, step: int, run, kept: int | None) -> None:
    loss = scalars.get("loss", 0.0)
    if not math.isfinite(loss):
        raise NonFiniteLoss(_non_finite(f"the training loss became {loss}", step, run, kept))


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _check_finite_params(state, step: int, run, kept: int | None) -> None:
    """Refuses to checkpoint parameters holding NaN/inf (a loss can look finite one step longer)."""
    if not bool(_all_finite(state.params)):
        raise NonFiniteLoss(_non_finite("the parameters became NaN/inf", step, run, kept))


def _non_finite(what: str, step: int, run, kept: int | None) -> str:
    saved = ("No checkpoint had been saved yet." if kept is None else
             f"The last good checkpoint (step {kept}) in {run.workdir.checkpoints} is kept.")
    return (f"{what} by step {step}. {saved} Lower config.optim.lr (now {run.config.optim.lr}) "
            f"or set config.optim.clip_grad_norm, then start again with --overwrite (or in "
            f"another --workdir).")
