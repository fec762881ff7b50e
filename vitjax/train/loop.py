"""The training loop: resume, train steps, periodic evaluation, checkpoints, early stopping.

`train(config, workdir)` is the whole `train` mode: it builds the run (`setup.build_run`),
resumes from the latest complete checkpoint when there is one, trains with an evaluation every
`train.eval_every`, keeps the best and latest checkpoints, stops early when asked, and ends with
the best checkpoint's validation/test reports and the run outputs (`outputs.finish`).
SIGTERM and Ctrl-C finish the step under way, save it and raise `preemption.Stopped` (which says
where the checkpoint is; every process of a multi-process run stops at the same step); an optional
`train.checkpoint_every` also saves between evaluations, bounding what a hard kill loses. A second
Ctrl-C stops at once (`Interrupted`, saving only a state that matches its step); a non-finite loss or non-finite parameters stop the run with the step named, and no checkpoint
is ever written from such a state, so the last good one stays the latest.
"""

from __future__ import annotations

import logging
import math
import os
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


def train(config, workdir: str, sinks=()) -> dict:
    """Runs (or resumes) training in `workdir`; returns the results dict (also results.json).
    `sinks` receive every logged record too (`MetricWriter`)."""
    run = feature_cache.cached_run(setup.build_run(config, workdir))
    setup.write_run_files(run)
    cfg = config.train
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), metric=cfg.best_metric,
                        mode=cfg.best_mode, keep_best=cfg.keep_best)
    stopper = EarlyStopping(mode=cfg.best_mode, patience=cfg.early_stopping_patience,
                            min_delta=cfg.early_stopping_min_delta)
    plateau = run.plateau
    host = {"history": [], "elapsed": 0.0, "early_stopping": stopper.state_dict(),
            "plateau": plateau.state_dict() if plateau else None}
    state = run.init_state()
    train_iter = run.train_iterator()
    restored = ckpt.restore_latest(state) if cfg.resume else None
    latest = restored[0] if restored else None
    if restored:
        _, state, data_state, host = restored
        train_iter.set_state(data_state)
        stopper = stopper.resumed(host["early_stopping"])
        if plateau:
            plateau = plateau.resumed(host["plateau"])
        log.info("resumed from the checkpoint of step %d in %s/checkpoints", latest, workdir)

    writer = MetricWriter(workdir, start_step=latest or 0, sinks=sinks,
                          tensorboard="tensorboard" in trackers.reporters(cfg.report_to))
    train_step, eval_step = run.jit_train_step(), run.jit_eval_step()
    if latest is None or latest < run.total_steps:
        evaluation.check_tracked_metrics(run, run.eval_params(state), eval_step, {
            "config.train.best_metric": cfg.best_metric,
            **({"config.optim.plateau.metric": plateau.metric} if plateau else {})})
    total, eval_every, checkpoint_every = run.total_steps, run.eval_every_steps, run.checkpoint_every_steps
    step = int(jax.device_get(state.step))
    progress = Progress(total, step, enabled=cfg.progress and jax.process_index() == 0)
    window, window_steps, window_start = None, 0, time.time()
    saved_window = host.get("window")  # merged into the first step's metrics after a resume
    train_summary = host.get("train_summary", {})
    run_start = time.time() - host["elapsed"]
    stop = stopper.should_stop()
    # The iterator's state as of the last completed step: an interruption between `next()` and
    # the end of a step must not skip the batch it had already drawn.
    data_state = train_iter.get_state()

    def save(metrics=None):
        host["elapsed"] = time.time() - run_start
        host["train_summary"] = train_summary  # for an evaluation still due when resumed
        host["window"] = _window_to_json(window, window_steps)  # train metrics not yet logged
        _check_finite_params(state, step, run, ckpt.latest_step())
        ckpt.save(step, state, data_state, host, metrics=metrics)

    def evaluation_due() -> bool:
        # Also true right after resuming from a checkpoint saved before its evaluation ran.
        done = host["history"][-1]["step"] if host["history"] else 0
        return step > done and (step % eval_every == 0 or step == total)

    def save_as_is():
        """Saves the current step, keeping an evaluation's metrics when it already ran."""
        last = host["history"][-1] if host["history"] else {}
        save(metrics=_validation_metrics(last) if last.get("step") == step else None)

    signals = StopSignals()
    try:
        with signals:
            while True:
                if signals.requested(step):
                    save_as_is()
                    ckpt.close()
                    raise Stopped(_stopped(signal_name(signals.signum), step, total, ckpt.directory),
                                  signals.signum)
                if evaluation_due():
                    val = evaluation.evaluate(run, run.eval_params(state), eval_step, "validation")
                    writer.write(step, val, "validation")
                    record = {"step": step, "epoch": step / run.steps_per_epoch,
                              **{f"train/{k}": v for k, v in train_summary.items()},
                              **{f"validation/{k}": v for k, v in val.items()}}
                    host["history"].append(record)
                    stop = stopper.update(tracked_value(val, cfg.best_metric, run.task.name,
                                                        "config.train.best_metric"))
                    host["early_stopping"] = stopper.state_dict()
                    if plateau:
                        scale = plateau.update(tracked_value(val, plateau.metric, run.task.name,
                                                             "config.optim.plateau.metric"))
                        state = state.replace(opt_state=optim.set_lr_scale(state.opt_state, scale))
                        host["plateau"] = plateau.state_dict()
                    save(metrics=_validation_metrics(record))
                    progress.epoch_table(record)
                    window_start = time.time()  # evaluation time is not training throughput
                    if stop:
                        log.info("early stopping at step %d: %s", step, stopper.why(cfg.best_metric))
                if step >= total or stop:
                    break
                state, (update, grad_norm) = train_step(state, next(train_iter))
                data_state = train_iter.get_state()
                if saved_window:
                    window, window_steps = _window_from_json(saved_window, update)
                    saved_window = None
                window = update if window is None else window.merge(update)
                step, window_steps = step + 1, window_steps + 1
                if step % cfg.log_every == 0 or step % eval_every == 0 or step == total:
                    train_summary = run.task.summarize(jax.device_get(window.compute()))
                    _check_finite(train_summary, step, run, ckpt.latest_step())
                    train_summary.update(
                        lr=run.lr_at(step - 1, state.opt_state), grad_norm=float(grad_norm),
                        images_per_s=window_steps * cfg.batch_size / max(time.time() - window_start, 1e-9))
                    writer.write(step, train_summary, "train")
                    progress.update(step, train_summary)
                    window, window_steps, window_start = None, 0, time.time()
                if checkpoint_every and step % checkpoint_every == 0 and not evaluation_due():
                    save()
    except Stopped:
        raise
    except KeyboardInterrupt:
        try:
            # Nothing to save after Ctrl-C inside a step (jit took the donated state) or just
            # after one (the state is ahead of `step` and its data state): the run resumes from
            # the checkpoint before and repeats those steps. A state saved before its evaluation
            # ran is evaluated first thing on resume; one saved after it keeps its metrics.
            if _alive(state) and int(jax.device_get(state.step)) == step:
                log.warning("interrupted at step %d: saving a checkpoint before stopping", step)
                save_as_is()
            latest = ckpt.latest_step()
        finally:
            ckpt.close()
        raise Interrupted(_interrupted(step, total, latest, ckpt.directory)) from None
    except BaseException:
        ckpt.close()  # a save under way completes: the last good checkpoint stays whole
        raise
    finally:
        train_iter.close()  # its worker processes end here, not after the final evaluation
        progress.close()
        writer.close()
    host["elapsed"] = time.time() - run_start
    ckpt.wait()
    best = ckpt.best_step()
    best_state = state if best in (None, step) else ckpt.restore(best, state)[0]
    ckpt.close()
    return outputs.finish(run, best_state, eval_step, host, best_step=best or step)


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
             f"The last good checkpoint (step {kept}) in {run.workdir}/checkpoints is kept.")
    return (f"{what} by step {step}. {saved} Lower config.optim.lr (now {run.config.optim.lr}) "
            f"or set config.optim.clip_grad_norm, then start again with --overwrite (or in "
            f"another --workdir).")
