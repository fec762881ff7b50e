"""The modes of the CLI — train, evaluate, predict, export, robustness, sweep — each one short function.

Each prepares what every mode shares (the persistent compilation cache, the distributed runtime,
the workdir check) and composes only the parts it uses from `vitjax.train.setup`'s builders, each
whole: train a `Run` (model, data, training: `vitjax.train.loop`); evaluate an `Evaluation` (the
exported model over the data); export an `Export` (the recorded model and its parameter groups, the
best checkpoint's params read with the checkpoints opened read-only: a live run's are never
touched); predict the exported model (`vitjax.trained`); the robustness report lives in
`vitjax.robustness`. Modes after train read the workdir's saved config when given none. Every file
name of a workdir comes from `vitjax.workdir.Workdir`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os

import jax

from vitjax import config as config_lib
from vitjax import errors, parallel, storage, workdir_lock
from vitjax.data.folders import IMAGE_EXTENSIONS, is_image_file
from vitjax.errors import BadKey, BadValue
from vitjax.files import read_json
from vitjax.storage import is_remote
from vitjax.workdir import Workdir

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
            full = "; free disk space and run the same command again" if e.errno == errno.ENOSPC else ""
            raise UserError(f"{type(e).__name__}: {e}{full}") from e
    return wrapped


def prepare_workdir(config, workdir: str, overwrite: bool) -> None:
    """Creates the workdir (with vitjax's marker); refuses one holding a run with another config
    unless `overwrite`, and a folder vitjax did not create unless it is empty (`Workdir.check_usable`).
    Replacing a run removes only vitjax's own files (`Workdir.clear`).

    Every process reads and checks (so all raise the same error); process 0 alone removes and
    writes, after all have read.
    """
    from vitjax.train.checkpointing import has_checkpoints

    folder = Workdir(workdir)
    folder.check_usable(overwrite)
    remove, previous = False, None
    if storage.exists(folder.config):
        previous = read_json(folder.config, "pass --overwrite to start afresh, or use another --workdir")
        diff = config_lib.differences(previous, config_lib.to_dict(config))
        if overwrite:
            remove = True
        elif diff and not has_checkpoints(folder.checkpoints):
            remove = True  # nothing trained yet: the corrected config starts the run afresh
            logging.warning("%s holds no checkpoint yet: replacing its config (%s)", workdir,
                            "; ".join(diff[:8]))
        elif diff:
            raise BadValue(
                f"{workdir} holds a run with a different config ({'; '.join(diff[:8])}). "
                f"Resuming it with this config would mix two runs. Use another --workdir, or "
                f"pass --overwrite to delete the earlier run and start afresh.")
        elif not config.train.resume and storage.isdir(folder.checkpoints):
            raise BadValue(f"{workdir} already holds checkpoints and config.train.resume=False; "
                           f"pass --overwrite to start afresh, or drop resume=False to resume.")
    elif overwrite and folder.foreign_entries():
        remove = True  # a run whose config.json is gone
    parallel.sync("vitjax: workdir checked")
    if jax.process_index() == 0:
        if remove:  # the caller holds the workdir's lock: no live run's files are deleted
            logging.warning("--overwrite: removing the earlier run in %s", workdir)
            test_split = ((previous or {}).get("train") or {}).get("test_split", "test")
            kept = folder.clear(test_split if isinstance(test_split, str) else "test")
            if kept:
                logging.warning("kept what vitjax did not write in %s: %s", workdir, ", ".join(kept))
        folder.create()
        config_lib.save(config, workdir)
    parallel.sync("vitjax: workdir ready")


@_user_errors
def train(config, workdir: str, overwrite: bool = False, sinks=()) -> dict:
    """`sinks`: receivers of every logged record besides the trackers (a sweep's pruning callback)."""
    from vitjax import trackers
    from vitjax.train import loop
    from vitjax.train.preemption import StopSignals
    _prepare(config)
    check_workdir_store(workdir)
    Workdir(workdir).check_usable(overwrite)  # before the lock file is written into it
    lock = workdir_lock.hold(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
    signals = StopSignals()  # the phases around the loop (which holds its own while it runs)
    with lock, signals:  # process 0 speaks for the run
        prepare_workdir(config, workdir, overwrite)  # completes, then a stop that came meanwhile
        signals.check(lambda what: f"stopped by {what} while preparing the workdir {workdir}, before "
                                   f"training; run the same command again.")
        with trackers.open_trackers(config, workdir) as tracked:
            results = loop.train(config, workdir, sinks=[*tracked.sinks, *sinks])
            with signals.at_once(lambda what: f"stopped by {what} while handing the results to the "
                                              f"trackers; the run in {workdir} is complete (results.json, "
                                              f"the export): the trackers may miss its last files."):
                tracked.finish(results)
        return results


def check_workdir_store(workdir: str) -> None:
    """Refuses what a workdir on object storage cannot hold: a multi-process run on a store whose
    checkpoints are staged locally (s3://: each process would stage its own part, and none holds the
    others' to commit the step)."""
    from vitjax.train.checkpointing import staged
    if jax.process_count() > 1 and staged(workdir):
        raise BadValue(f"--workdir {workdir}: a run of {jax.process_count()} processes cannot write its "
                       f"checkpoints to {storage.scheme(workdir)}:// (orbax writes them to gs:// or a "
                       f"shared file system only); use a gs:// workdir or a folder every host mounts.")


@_user_errors
def sweep(config, workdir: str, storage: str | None = None, overwrite: bool = False) -> dict:
    from vitjax import sweep as sweep_lib
    _prepare(config)
    if is_remote(workdir):
        raise BadValue(f"--workdir {workdir}: a sweep keeps its trials in a SQLite database, which object "
                       f"storage cannot hold; sweep into a local or shared folder.")
    Workdir(workdir).check_usable(overwrite)
    lock = workdir_lock.hold(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock:  # the sweep's trials run in subfolders; the sweep holds its own folder
        prepare_workdir(config, workdir, overwrite)
        return sweep_lib.run(config, workdir, storage, train)


def saved_config(config, workdir: str | None):
    """`config`, or when None the config the run in `workdir` saved (so evaluate, predict and export
    need no repeated --config or overrides), over the defaults: keys added to vitjax since the run
    was saved take their defaults."""
    if config is not None:
        return config
    path = workdir and Workdir(workdir).config
    if not path or not storage.isfile(path):
        raise FileNotFoundError(f"no config: pass --config, or a --workdir holding a run's config.json "
                                f"(not found at {path!r}).")
    return config_lib.over_defaults(read_json(path, "pass the run's --config instead"), path)


def _model_dir(workdir: str | None, model: str | None) -> str:
    """--model (a model folder, or a workdir holding one), else the run's export: <workdir>/best
    (its family's format), else <workdir>/best_vitjax (vitjax's)."""
    from vitjax.trained import find_model
    found = find_model(model or workdir) if model or workdir else None
    if found is None or not storage.isdir(found) or (not model and found == storage.normalize(workdir)):
        raise FileNotFoundError(
            f"no model folder at {model or workdir!r}: pass --model <an exported model folder>, or a "
            f"--workdir whose training finished (it writes <workdir>/best, or best_vitjax/ when the "
            f"model has no class in its family's format).")
    return found


@_user_errors
def evaluate(config, workdir: str, model: str | None, split: str) -> dict:
    """The model at --model (or the run's export) on one split of the data; reports in
    <workdir>/eval_<split>/, and refreshes <workdir>/report.html. `config` None: the run's saved config."""
    from vitjax.train import evaluation, setup
    from vitjax.trained import load_trained
    config = saved_config(config, workdir)
    _prepare(config)
    trained = load_trained(_model_dir(workdir, model), config.task)
    run = setup.build_eval_run(config, workdir, trained)
    dataset = run.data.dataset
    if split not in dataset.splits:
        raise BadKey(f"--split {split!r} is not a split of {dataset.source}; "
                     f"choose one of {sorted(dataset.splits)}.")
    storage.makedirs(workdir)
    folder = Workdir(workdir)
    outdir = folder.evaluation(split)
    summary = evaluation.report(run, run.model.placed_params(), run.jit_eval_step(), split, outdir)
    if jax.process_index() == 0:
        from vitjax import report_page
        report_page.write(folder, run.model.task, dataset, config.train.test_split, trained)
    for k, v in sorted(summary.items()):
        print(f"{split} {k:<24} {v:.4f}")
    print(f"the {split} report (per class, and the task's files) is in {outdir}")
    return summary


@_user_errors
def robustness(config, workdir: str, model: str | None, split: str, options) -> dict:
    from vitjax.robustness.run import robustness_report
    config = saved_config(config, workdir).copy_and_resolve_references()
    _prepare(config)
    return robustness_report(config, workdir, split, options, _model_dir(workdir, model))


@_user_errors
def predict(config, workdir: str | None, model: str | None, inputs: list[str], top_k: int | None,
            output: str | None, explain: bool = False) -> list[dict]:
    """The task's predictions for every image of `inputs` (files and folders), through the task's
    `predict` and `prediction_records` hooks as the service computes them, written to `output`
    (default <workdir>/predictions): the task's files and predictions.json; prints one line per image.
    An image that cannot be read gets an "error" naming it instead, and the others are predicted all
    the same (the command line then exits with status 1). `config` None: the run's saved config, if
    any (a bare --model folder describes itself). `top_k`: ranked entries per image (labels,
    detections); None: the task's default (`Task.default_top_k`, as the service's). `explain`: also
    what the model looks at, `<name>_explain.png` per image (`vitjax.explain`)."""
    from vitjax.trained import load_trained
    if config is None and workdir and storage.isfile(Workdir(workdir).config):
        config = saved_config(None, workdir)
    if config is not None:
        _prepare(config)
    trained = load_trained(_model_dir(workdir, model), None if config is None else config.task)
    paths = expand_inputs(inputs)
    if not output and not workdir:
        raise BadValue("--mode predict needs --output (a folder) or --workdir (writes "
                       "<workdir>/predictions).")
    records = trained.predict(paths, output or Workdir(workdir).predictions, top_k, explain=explain)
    width = max(len(r["file"]) for r in records)
    for r in records:
        shown = json.dumps({k: v for k, v in r.items() if k != "file"})
        print(f"{r['file']:<{width}}  {shown[:200]}")
    return records


def unreadable_inputs(records: list[dict]) -> str | None:
    """What the command line says last when some of `predict`'s inputs could not be read, else None."""
    failed = sum("error" in r for r in records)
    if not failed:
        return None
    return (f"{failed} of {len(records)} input(s) could not be read (each is listed with its error in "
            f"predictions.json); the others were predicted.")


def expand_inputs(inputs: list[str]) -> list[str]:
    """Image paths from files and folders: a folder's image files (`is_image_file`, walked recursively,
    sorted); any other path as it is, its record saying so when it cannot be read. A file or folder on
    object storage (`s3://`, `gs://`) is read from its local copy (`storage.cached_copy`)."""
    from vitjax.storage import cached_copy
    if not inputs:
        raise BadValue("--inputs is empty: pass image files and/or folders, comma-separated.")
    paths = []
    for item in inputs:
        item = cached_copy(item)  # a local path as it is
        if os.path.isdir(item):
            for root, _, files in sorted(os.walk(item)):
                paths += [path for path in (os.path.join(root, f) for f in sorted(files)) if is_image_file(path)]
        else:
            paths.append(item)
    if not paths:
        raise BadValue(f"--inputs {inputs} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
    return paths


@_user_errors
def export(config, workdir: str, output: str | None) -> str:
    """The best orbax checkpoint of `workdir` in Hugging Face format (or vitjax's own format for
    tasks without a transformers class) to `output`, by default where training exports. Reads the
    workdir alone, no data and no base checkpoint: the class names come from the run's data_split.json,
    the architecture and preprocessing from its model.json. `config` None: the run's saved config."""
    from vitjax.train import outputs, setup
    from vitjax.train.checkpointing import Checkpointer, has_checkpoints
    config = saved_config(config, workdir)
    _prepare(config)
    checkpoints = Workdir(workdir).checkpoints
    if not has_checkpoints(checkpoints):  # before the run is rebuilt and orbax starts its threads
        raise FileNotFoundError(f"{checkpoints} holds no checkpoint; train first.")
    run = setup.build_export_run(config, workdir)
    ckpt = Checkpointer(run.workdir.checkpoints, metric=config.train.best_metric,
                        mode=config.train.best_mode, keep_best=config.train.keep_best, read_only=True)
    try:
        step = ckpt.best_step()
        params = ckpt.restore_params(step, run.model.abstract_params(), ema=config.optim.ema_decay > 0)
        checkpoint_metrics = ckpt.metrics(step)
    finally:
        ckpt.close()
    output = output or outputs.export_dir(run)
    params = parallel.to_host(params, run.mesh)
    if jax.process_index() != 0:
        return output
    return outputs.export(run, run.dataset, params, output,
                          outputs.metrics_of(workdir, step, checkpoint_metrics))


@_user_errors
def export_deployable(workdir: str | None, model: str | None, fmt: str, output: str | None,
                      calibration: int = 256) -> str:
    """`--mode export --format onnx|onnx-int8|onnx-int8-static|stablehlo`: the model folder (`--model`,
    else <workdir>/best or best_vitjax) as a deployable artifact in `output` (vitjax.deploy);
    onnx-int8-static calibrates on the first `calibration` training images of the run in `workdir`."""
    from vitjax.deploy.artifacts import export as export_artifact
    if not output:
        raise BadValue(f"--mode export --format {fmt} needs --output DIR (the folder to write).")
    model_dir = _model_dir(workdir, model)
    images = calibration_images(workdir, model_dir, calibration) if fmt == "onnx-int8-static" else None
    path = export_artifact(model_dir, fmt, output, images)
    logging.getLogger("vitjax").info("exported %s to %s", fmt, path)
    return path


def calibration_images(workdir: str | None, model_dir: str, count: int):
    """The first `count` images of the training split of the run in `workdir` (its saved config's
    data), as the model's uint8 inputs [N, H, W, C]: what static quantization calibrates on."""
    if count < 1:
        raise BadValue(f"--calibration={count}: static int8 needs at least one calibration image (256 is usual).")
    if not workdir or not storage.isfile(Workdir(workdir).config):
        raise BadValue("--format onnx-int8-static calibrates on the run's training images: pass the run's "
                       "--workdir (its config.json names the data), or use --format onnx-int8 (dynamic, "
                       "no calibration).")
    return split_images(workdir, model_dir, "train", count)[0]


def split_images(workdir: str, model_dir: str, split: str, count: int | None = None):
    """(uint8 images [N, H, W, C] as the model in `model_dir` takes them, their records' "label"s or
    None) of the first `count` records (None: all) of `split` of the run in `workdir` (its saved
    config's data)."""
    import numpy as np

    from vitjax import registry
    from vitjax.data.transforms import load_rgb
    from vitjax.trained import load_trained
    config = saved_config(None, workdir)
    _prepare(config)
    registry.load_plugins(config.task.plugins)
    source = registry.get_task(config.task.name).open_source(config.data, config.task).splits[split]
    preprocessing = load_trained(model_dir).preprocessing
    records = [source[i] for i in range(len(source) if count is None else min(count, len(source)))]
    images = np.stack([preprocessing.to_uint8(load_rgb(r["image"], source.describe(i))) for i, r in enumerate(records)])
    return images, (np.asarray([r["label"] for r in records]) if records and "label" in records[0] else None)
