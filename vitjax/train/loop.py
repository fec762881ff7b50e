"""The training loop: resume, train steps, periodic evaluation, checkpoints, early stopping.

`train(config, workdir)` is the whole `train` mode: it builds the run (`setup.build_run`),
resumes from the latest complete checkpoint when there is one, trains with evaluation every
`train.eval_every`, keeps the best and latest checkpoints, stops early when asked, and ends
with the best checkpoint's test evaluation and the run outputs (`outputs.finish`).
Ctrl-C saves a checkpoint before stopping; a non-finite loss stops with the step named and
leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import logging
import math
import time

import jax

from vitjax import parallel
from vitjax.train import evaluation, outputs, setup
from vitjax.train.checkpointing import Checkpointer
from vitjax.train.early_stopping import EarlyStopping
from vitjax.train.progress import Progress
from vitjax.train.writer import MetricWriter


class NonFiniteLoss(RuntimeError):
    pass


def train(config, workdir: str) -> dict:
    """Runs (or resumes) training in `workdir`; returns the results dict (also results.json)."""
    run = setup.build_run(config, workdir)
    cfg = config.train
    writer = MetricWriter(workdir)
    ckpt = Checkpointer(f"{workdir}/checkpoints", metric=cfg.best_metric, mode=cfg.best_mode,
                        keep_best=cfg.keep_best)
    stopper = EarlyStopping(mode=cfg.best_mode, patience=cfg.early_stopping_patience,
                            min_delta=cfg.early_stopping_min_delta)
    host = {"history": [], "elapsed": 0.0, "early_stopping": stopper.state(),
            "plateau": run.optimizer.plateau_state()}
    state = run.init_state()
    train_iter = run.train_iterator()
    latest = ckpt.latest_step() if cfg.resume else None
    if latest is not None:
        state, data_state, host = ckpt.restore(latest, state)
        train_iter.set_state(setup.decode_iterator_state(data_state))
        stopper.restore(host["early_stopping"])
        logging.info("resumed from step %d (%s)", latest, ckpt.directory_of(latest))

    train_step = run.jit_train_step()
    eval_step = run.jit_eval_step()
    total, per_epoch, eval_every = run.total_steps, run.steps_per_epoch, run.eval_every_steps
    step = int(jax.device_get(state.step))
    progress = Progress(total, step, enabled=cfg.progress and jax.process_index() == 0)
    window, window_start, stop = None, time.time(), False
    run_start = time.time() - host["elapsed"]
    try:
        while step < total and not stop:
            batch = parallel.global_batch(next(train_iter), run.mesh)
            state, (metrics, grad_norm) = train_step(state, batch)
            window = metrics if window is None else window.merge(metrics)
            step += 1
            if step % cfg.log_every == 0 or step == total or step % eval_every == 0:
                scalars = run.task.summarize(jax.device_get(window.compute()))
                _check_finite(scalars, step, run)
                scalars.update(lr=run.optimizer.lr_at(step, state.opt_state),
                               grad_norm=float(grad_norm),
                               images_per_s=cfg.batch_size * (step % cfg.log_every or cfg.log_every)
                               / max(time.time() - window_start, 1e-9))
                writer.write(step, scalars, "train")
                progress.update(step, scalars)
                train_summary, window, window_start = scalars, None, time.time()
            if step % eval_every == 0 or step == total:
                val = evaluation.evaluate(run, state, eval_step, run.validation_split_name)
                writer.write(step, val, "validation")
                host["history"].append({"step": step, "epoch": step / per_epoch,
                                        "train": train_summary, "validation": val})
                tracked = _tracked(val, cfg.best_metric, run)
                stop = stopper.update(tracked)
                host["early_stopping"] = stopper.state()
                host["plateau"] = run.optimizer.plateau_update(state, tracked)
                state = run.optimizer.apply_plateau(state, host["plateau"])
                host["elapsed"] = time.time() - run_start
                ckpt.save(step, state, setup.encode_iterator_state(train_iter.get_state()), host,
                          metrics={k: float(v) for k, v in val.items()})
                progress.epoch_table(host["history"][-1])
                if stop:
                    logging.info("early stopping at step %d: no %s improvement in %d evaluations",
                                 step, cfg.best_metric, cfg.early_stopping_patience)
    except KeyboardInterrupt:
        logging.warning("interrupted at step %d: saving a checkpoint before stopping", step)
        host["elapsed"] = time.time() - run_start
        ckpt.save(step, state, setup.encode_iterator_state(train_iter.get_state()), host)
        ckpt.close()
        raise
    finally:
        progress.close()
    ckpt.wait()
    host["elapsed"] = time.time() - run_start
    best_state = state
    best = ckpt.best_step()
    if best is not None and best != step:
        best_state, _, _ = ckpt.restore(best, state)
    ckpt.close()
    results = outputs.finish(run, best_state, eval_step, host, best_step=best or step)
    writer.close()
    return results


def _tracked(val: dict, metric: str, run) -> float:
    if metric not in val:
        raise KeyError(f"config.train.best_metric={metric!r} is not produced by the "
                       f"{run.task.name!r} task; it produces {sorted(val)}.")
    return float(val[metric])


def _check_finite(scalars: dict, step: int, run) -> None:
    loss = scalars.get("loss", 0.0)
    if not math.isfinite(loss):
        raise NonFiniteLoss(
            f"the training loss became {loss} by step {step}. The last good checkpoint in "
            f"{run.workdir}/checkpoints is kept. Lower config.optim.lr (now "
            f"{run.config.optim.lr}) or set config.optim.clip_grad_norm, then run again with "
            f"--overwrite (or resume from the last checkpoint).")
