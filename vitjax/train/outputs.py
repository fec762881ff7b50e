"""What a finished run leaves behind: test report, results.json, learning curves, the HF export.

Only process 0 writes. The exported `best/` folder is the best checkpoint in its family's format
(loads with `transformers`, or timm, as it is) with a model card; a model without a class there (a
task without a transformers class, or a head the family's class does not pool as, such as
`config.task.pooling='mean'` on a ViT) gets `best_vitjax/` in vitjax's own format instead
(`vitjax.checkpoints.native`: orbax params + json).
"""

from __future__ import annotations

import json
import logging
import os
import sys

import jax

from vitjax import config as config_lib
from vitjax import parallel
from vitjax.checkpoints.families import export_pretrained
from vitjax.checkpoints.native import export_native
from vitjax import report, report_page, storage
from vitjax.files import read_json, write_text
from vitjax.workdir import Workdir
from vitjax.lora import run as lora_run
from vitjax.train import evaluation
from vitjax.trained import export_format

log = logging.getLogger(__name__)


def reports(run, params, eval_step) -> dict:
    """The best weights' reports of validation and the test split (written under the workdir)."""
    metrics = {"validation": evaluation.report(run, params, eval_step, "validation",
                                               run.workdir.report("validation"))}
    test_split = run.config.train.test_split
    if test_split:
        metrics["test"] = evaluation.report(run, params, eval_step, test_split,
                                            run.workdir.report(test_split))
    return metrics


def finish(run, params, metrics: dict, loop, best_step: int) -> dict:
    """Writes results.json, the learning curves and the report page (report.html), exports the
    best weights `params` (`best/`); returns the results. `loop`: the loop's state (`loop.LoopState`)."""
    cfg, training, dataset = run.config.train, run.training, run.data.dataset
    history = loop.history
    train_steps = training.total_steps if not history else history[-1]["step"]
    results = {
        "best_step": int(best_step),
        "best_epoch": best_step / training.steps_per_epoch,
        "metrics": metrics,
        "final_train": {k.removeprefix("train/"): v for k, v in (history[-1] if history else {}).items()
                        if k.startswith("train/")},
        "history": history,
        "runtime_s": loop.elapsed,
        "train_images_per_s": train_steps * cfg.batch_size / max(loop.elapsed, 1e-9),
        "steps": train_steps,
        "steps_per_epoch": training.steps_per_epoch,
        "base_checkpoint": run.model.base,
        "data_source": dataset.source,
        "class_names": dataset.class_names,
        "devices": jax.device_count(),
    }
    host_params = parallel.to_host(params, run.mesh) if cfg.export else None
    if jax.process_index() == 0:
        write_text(run.workdir.results, json.dumps(results, indent=2))
        if history:
            # The loss and the tracked metric (the task's best metric unless the config names another).
            curves = dict.fromkeys(("loss", cfg.best_metric, run.model.task.best_metric[0]))
            report.plot_learning_curves(history, run.workdir.learning_curves, metrics=tuple(curves))
        report_page.write(run.workdir, run.model.task, dataset, cfg.test_split)
        if cfg.export:
            export(run, dataset, host_params, export_dir(run), metrics)
    for split, values in metrics.items():
        log.info("%s: %s", split, ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items())))
    return results


def export_dir(run) -> str:
    """Where a finished run exports its best weights: `best/` in its family's format (transformers'
    or timm's), or `best_vitjax/` in vitjax's own format for a model without a class there
    (`vitjax.trained.export_format`)."""
    model = run.model
    return run.workdir.export(native=export_format(model.task, model.spec, model.module.head).pooling is None)


def export(run, dataset, params, directory: str, metrics: dict | None = None) -> str:
    """Writes `params` (host arrays: `parallel.to_host`) in its family's format (+ model card) when
    the model has a class there, else in vitjax's own format. LoRA adapters are merged into
    the weights, and written alone in PEFT's format to `<directory>_adapter`. `run`: a training run
    or an export (`vitjax.train.setup`); `dataset`: its source and class names. On object storage
    the folders are written locally, then uploaded."""
    if not storage.is_remote(directory):
        return _export(run, dataset, params, directory, metrics)
    with storage.local_output(storage.dirname(directory)) as parent:  # the export and its adapter beside
        _export(run, dataset, params, os.path.join(parent, storage.basename(directory)), metrics)
    log.info("uploaded the export to %s", directory)
    return directory


def _export(run, dataset, params, directory: str, metrics: dict | None) -> str:
    model = run.model
    form = export_format(model.task, model.spec, model.module.head)
    params = lora_run.export_adapter(run, params, directory, form.pooling)
    if form.pooling is None:
        path = export_native(directory, model.spec, params, model.preprocessing, model.task.name,
                             config_lib.to_dict(run.config)["task"], dataset.class_names,
                             {"base_checkpoint": model.base, "metrics": metrics or {}})
        if form.refused:
            log.warning("%s: exported in vitjax's format to %s instead", form.refused, path)
        else:
            log.info("task %r has no transformers class: exported in vitjax's format to %s",
                     model.task.name, path)
        return path
    hf = model.task.hf_config()
    id2label = {int(k): v for k, v in hf["id2label"].items()}
    path = export_pretrained(directory, model.spec, params, id2label, model.preprocessing, form.pooling, hf)
    report.write_model_card(path, {
        "base_checkpoint": model.base if model.base != "scratch" else None,
        "dataset": dataset.source,
        "class_names": dataset.class_names,
        "metrics": metrics or {},
        "training": {"epochs": run.config.train.epochs, "batch_size": run.config.train.batch_size,
                     "optimizer": run.config.optim.name, "lr": run.config.optim.lr,
                     "freeze": run.config.optim.freeze},
        "command": " ".join(["python -m vitjax.main", *sys.argv[1:]]),
    })
    log.info("exported the model in Hugging Face format to %s", path)
    return path


def metrics_of(workdir: str, step: int, checkpoint_metrics: dict | None) -> dict:
    """The metrics of the checkpoint of `step` for its model card: the finished run's results
    (validation and test) when they are of that step, else the validation metrics it was saved with."""
    path = Workdir(workdir).results
    if storage.exists(path):
        results = read_json(path)
        if results.get("best_step") == step:
            return results.get("metrics", {})
    return {"validation": checkpoint_metrics} if checkpoint_metrics else {}
