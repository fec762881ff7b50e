"""The four modes of the CLI — train, evaluate, predict, export — as plain functions.

Each prepares what every mode shares (the persistent compilation cache, the distributed
runtime, the workdir check) and hands over to the room that does the work.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil

import jax

from vitjax import config as config_lib
from vitjax import errors, parallel, workdir_lock
from vitjax.files import read_json

UserError = errors.UserError  # what the CLI prints as one line (VITJAX_TRACEBACK=1: with traceback)


def enable_compilation_cache(path: str) -> None:
    """Keeps compiled programs (those taking over a second to build) in `path` across runs."""
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _prepare(config) -> None:
    config_lib.validate(config)
    if config.compilation_cache:
        enable_compilation_cache(config.compilation_cache)
    parallel.initialize_distributed(config.distributed)


def _user_errors(fn):
    """The mode, with an OSError (a missing file, permissions, a full disk: the user's to fix) as
    a UserError. Every other exception but a UserError is a bug and keeps its traceback."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as e:
            raise UserError(f"{type(e).__name__}: {e}") from e
    return wrapped


def prepare_workdir(config, workdir: str, overwrite: bool) -> None:
    """Creates the workdir; refuses one holding a run with another config unless `overwrite`.

    Every process reads and checks (so all raise the same error); process 0 alone removes and
    writes, after all have read.
    """
    saved = os.path.join(workdir, "config.json")
    remove = False
    if os.path.exists(saved):
        previous = read_json(saved, "pass --overwrite to start afresh, or use another --workdir")
        diff = config_lib.differences(previous, config_lib.to_dict(config))
        if overwrite:
            remove = True
        elif diff:
            raise errors.BadValue(
                f"{workdir} holds a run with a different config ({'; '.join(diff[:8])}). "
                f"Resuming it with this config would mix two runs. Use another --workdir, or "
                f"pass --overwrite to delete the earlier run and start afresh.")
        elif not config.train.resume and os.path.isdir(os.path.join(workdir, "checkpoints")):
            raise errors.BadValue(f"{workdir} already holds checkpoints and config.train.resume=False; "
                                  f"pass --overwrite to start afresh, or drop resume=False to resume.")
    parallel.sync("vitjax: workdir checked")
    if jax.process_index() == 0:
        if remove:  # the caller holds the workdir's lock: no live run's files are deleted
            logging.warning("--overwrite: removing the earlier run in %s", workdir)
            for name in os.listdir(workdir):
                if name != workdir_lock.LOCK:
                    path = os.path.join(workdir, name)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        os.makedirs(workdir, exist_ok=True)
        config_lib.save(config, workdir)
    parallel.sync("vitjax: workdir ready")


@_user_errors
def train(config, workdir: str, overwrite: bool = False) -> dict:
    from vitjax.train import loop
    _prepare(config)
    lock = workdir_lock.hold(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock:  # process 0 speaks for the run
        prepare_workdir(config, workdir, overwrite)
        return loop.train(config, workdir)


def _model_dir(workdir: str | None, model: str | None) -> str:
    path = model or (workdir and os.path.join(workdir, "best"))
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(
            f"no model folder at {path!r}: pass --model <a Hugging Face format folder>, or a "
            f"--workdir whose training finished (it writes <workdir>/best). Tasks without a "
            f"transformers class (segmentation, detection) write best_vitjax/, which these "
            f"modes do not read yet.")
    return path


@_user_errors
def evaluate(config, workdir: str, model: str | None, split: str) -> dict:
    from vitjax.train import evaluation
    _prepare(config)
    config = config.copy_and_resolve_references()
    config.model.checkpoint = _model_dir(workdir, model)
    config.model.image_size = 0
    os.makedirs(workdir, exist_ok=True)
    return evaluation.evaluate_model(config, workdir, split)


@_user_errors
def predict(config, workdir: str | None, model: str | None, inputs: list[str], top_k: int,
            output: str | None) -> list[dict]:
    from vitjax.predict import predict_files
    if config is not None:
        _prepare(config)
    return predict_files(_model_dir(workdir, model), inputs, top_k, output)


@_user_errors
def export(config, workdir: str, output: str | None) -> str:
    from vitjax.train import outputs
    _prepare(config)
    return outputs.export_from_checkpoint(config, workdir, output)
