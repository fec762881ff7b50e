"""The modes of the CLI — train, evaluate, predict, export, robustness — each one short function.

Each prepares what every mode shares (the persistent compilation cache, the distributed runtime,
the workdir check) and builds only what it uses from `vitjax.train.setup`'s builders: train the
whole run (`vitjax.train.loop`), evaluate data + model (no optimizer), export the run whose best
checkpoint it restores, predict the exported model (`vitjax.api`); the robustness report lives in
`vitjax.robustness`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil

import jax

from vitjax import config as config_lib
from vitjax import errors, parallel, workdir_lock
from vitjax.data.folders import IMAGE_EXTENSIONS
from vitjax.errors import BadKey, BadValue
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
    from vitjax.train.checkpointing import has_checkpoints

    saved = os.path.join(workdir, "config.json")
    remove = False
    if os.path.exists(saved):
        previous = read_json(saved, "pass --overwrite to start afresh, or use another --workdir")
        diff = config_lib.differences(previous, config_lib.to_dict(config))
        if overwrite:
            remove = True
        elif diff and not has_checkpoints(os.path.join(workdir, "checkpoints")):
            remove = True  # nothing trained yet: the corrected config starts the run afresh
            logging.warning("%s holds no checkpoint yet: replacing its config (%s)", workdir,
                            "; ".join(diff[:8]))
        elif diff:
            raise BadValue(
                f"{workdir} holds a run with a different config ({'; '.join(diff[:8])}). "
                f"Resuming it with this config would mix two runs. Use another --workdir, or "
                f"pass --overwrite to delete the earlier run and start afresh.")
        elif not config.train.resume and os.path.isdir(os.path.join(workdir, "checkpoints")):
            raise BadValue(f"{workdir} already holds checkpoints and config.train.resume=False; "
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


def _model_dir(workdir: str | None, model: str | None, native_ok: bool = False) -> str:
    path = model or (workdir and os.path.join(workdir, "best"))
    if native_ok and not model and workdir and not os.path.isdir(path):
        path = os.path.join(workdir, "best_vitjax")
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(
            f"no model folder at {path!r}: pass --model <a Hugging Face format folder>, or a "
            f"--workdir whose training finished (it writes <workdir>/best). Tasks without a "
            f"transformers class (segmentation, detection) write best_vitjax/, which these "
            f"modes do not read yet.")
    return path


@_user_errors
def evaluate(config, workdir: str, model: str | None, split: str) -> dict:
    """The model at --model (or <workdir>/best) on one split of the data; reports in eval_<split>/."""
    from vitjax.train import evaluation, setup
    _prepare(config)
    config = config.copy_and_resolve_references()
    config.model.checkpoint = _model_dir(workdir, model)
    config.model.image_size = 0
    run = setup.build_eval_run(config, workdir)
    if split not in run.dataset.splits:
        raise BadKey(f"--split {split!r} is not a split of {run.dataset.source}; "
                     f"choose one of {sorted(run.dataset.splits)}.")
    os.makedirs(workdir, exist_ok=True)
    summary = evaluation.report(run, run.placed_params(), run.jit_eval_step(), split,
                                os.path.join(workdir, f"eval_{split}"))
    for k, v in sorted(summary.items()):
        print(f"{split} {k:<24} {v:.4f}")
    return summary


def saved_config(workdir: str):
    """The config a run saved in `workdir` (config.json), for modes run without --config."""
    import ml_collections

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: pass --config, or the --workdir of a run.")
    with open(path, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))


@_user_errors
def robustness(config, workdir: str, model: str | None, split: str, options) -> dict:
    from vitjax.robustness.run import robustness_report
    from vitjax.checkpoints.native import MODEL_FILE
    config = (config or saved_config(workdir)).copy_and_resolve_references()
    _prepare(config)
    native = os.path.join(workdir, "best_vitjax")  # tasks without a transformers class
    if model is None and not os.path.isdir(os.path.join(workdir, "best")) and os.path.isdir(native):
        model = native
    model_dir = _model_dir(workdir, model)
    if not os.path.isfile(os.path.join(model_dir, MODEL_FILE)):  # else the run's model, its weights
        config.model.checkpoint = model_dir
        config.model.image_size = 0
    return robustness_report(config, workdir, split, options, model_dir)


@_user_errors
def predict(config, workdir: str | None, model: str | None, inputs: list[str], top_k: int,
            output: str | None) -> list[dict]:
    """Top-k labels with probabilities for every image of `inputs` (files and folders); prints a
    table, writes JSON to `output` if given. An image that cannot be read gets an "error" naming it
    instead of predictions; the others are predicted all the same."""
    from vitjax.api import load_pretrained
    if config is not None:
        _prepare(config)
    classifier = load_pretrained(_model_dir(workdir, model))
    paths = expand_inputs(inputs)
    results = []
    for start in range(0, len(paths), _PREDICT_CHUNK):
        read = {path: _read_image(path) for path in paths[start:start + _PREDICT_CHUNK]}
        good = [path for path, (image, _) in read.items() if image is not None]
        predicted = dict(zip(good, classifier.predict([read[p][0] for p in good], top_k=top_k) if good else []))
        results += [{"file": path, "predictions": [{"label": l, "probability": p} for l, p in predicted[path]]}
                    if path in predicted else {"file": path, "error": read[path][1]} for path in read]
    width = max(len(r["file"]) for r in results)
    for r in results:
        shown = ("  ".join(f"{p['label']} {p['probability']:.3f}" for p in r["predictions"])
                 if "predictions" in r else f"ERROR {r['error']}")
        print(f"{r['file']:<{width}}  {shown}")
    failed = sum("error" in r for r in results)
    if failed:
        logging.warning("%d of %d input(s) could not be read; each is listed with its error%s", failed,
                        len(results), f" in {output}" if output else " above")
    if output:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


_PREDICT_CHUNK = 64  # images decoded and held at once


def _read_image(path: str):
    """(the decoded image, None), or (None, what went wrong, naming `path`)."""
    from PIL import Image

    try:
        image = Image.open(path)
        image.load()
        return image, None
    except Image.DecompressionBombError as e:
        return None, f"{path}: refused as a possible decompression bomb ({e})"
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ... for bad files
        return None, f"{path}: cannot decode the image ({type(e).__name__}: {e})"


def expand_inputs(inputs: list[str]) -> list[str]:
    """Image paths from files and folders (folders walked recursively, sorted)."""
    if not inputs:
        raise BadValue("--inputs is empty: pass image files and/or folders, comma-separated.")
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, files in sorted(os.walk(item)):
                paths += [os.path.join(root, f) for f in sorted(files)
                          if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"--inputs: {item!r} is neither a file nor a folder.")
    if not paths:
        raise BadValue(f"--inputs {inputs} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
    return paths


@_user_errors
def export(config, workdir: str, output: str | None) -> str:
    """The best orbax checkpoint of `workdir` in Hugging Face format (or vitjax's own format for
    tasks without a transformers class) to `output`, by default where training exports."""
    from vitjax.train import outputs, setup
    from vitjax.train.checkpointing import Checkpointer
    _prepare(config)
    run = setup.build_run(config, workdir)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), metric=config.train.best_metric,
                        mode=config.train.best_mode, keep_best=config.train.keep_best)
    step = ckpt.best_step()
    if step is None:
        ckpt.close()
        raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint; train first.")
    state, _, _ = ckpt.restore(step, run.init_state())
    checkpoint_metrics = ckpt.metrics(step)
    ckpt.close()
    output = output or outputs.export_dir(run)
    params = parallel.to_host(run.eval_params(state), run.mesh)
    if jax.process_index() != 0:
        return output
    return outputs.export(run, params, output, outputs.metrics_of(workdir, step, checkpoint_metrics))


@_user_errors
def export_deployable(workdir: str | None, model: str | None, fmt: str, output: str | None) -> str:
    """`--mode export --format onnx|onnx-int8|stablehlo`: the model folder (`--model`, else
    <workdir>/best or best_vitjax) as a deployable artifact in `output` (vitjax.deploy)."""
    from vitjax.deploy.artifacts import export as export_artifact
    if not output:
        raise BadValue(f"--mode export --format {fmt} needs --output DIR (the folder to write).")
    path = export_artifact(_model_dir(workdir, model, native_ok=True), fmt, output)
    logging.getLogger("vitjax").info("exported %s to %s", fmt, path)
    return path
