"""What a finished run leaves behind: test report, results.json, learning curves, the HF export.

Only process 0 writes. The exported `best/` folder is the best checkpoint in Hugging Face format
(loads with `transformers` as it is) with a model card; tasks without a transformers class get
`best_vitjax/` in vitjax's own format instead (`vitjax.checkpoints.native`: orbax params + json).
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
from vitjax import report
from vitjax.files import read_json, write_text
from vitjax.lora import run as lora_run
from vitjax.train import evaluation

log = logging.getLogger(__name__)


def finish(run, best_state, eval_step, host: dict, best_step: int) -> dict:
    """Evaluates the best weights on validation and test, writes the outputs, exports `best/`."""
    cfg = run.config.train
    params = run.eval_params(best_state)
    workdir = run.workdir
    metrics = {"validation": evaluation.report(run, params, eval_step, "validation",
                                               os.path.join(workdir, "validation"))}
    if cfg.test_split:
        metrics["test"] = evaluation.report(run, params, eval_step, cfg.test_split,
                                            os.path.join(workdir, cfg.test_split))
    history = host["history"]
    train_steps = run.total_steps if not history else history[-1]["step"]
    results = {
        "best_step": int(best_step),
        "best_epoch": best_step / run.steps_per_epoch,
        "metrics": metrics,
        "final_train": {k.removeprefix("train/"): v for k, v in (history[-1] if history else {}).items()
                        if k.startswith("train/")},
        "history": history,
        "runtime_s": host["elapsed"],
        "train_images_per_s": train_steps * cfg.batch_size / max(host["elapsed"], 1e-9),
        "steps": train_steps,
        "steps_per_epoch": run.steps_per_epoch,
        "base_checkpoint": run.base,
        "data_source": run.dataset.source,
        "class_names": run.dataset.class_names,
        "devices": jax.device_count(),
    }
    host_params = parallel.to_host(params, run.mesh) if cfg.export else None
    if jax.process_index() == 0:
        write_text(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
        if history:
            # The loss and the tracked metric (the task's best metric unless the config names another).
            curves = dict.fromkeys(("loss", cfg.best_metric, run.task.best_metric[0]))
            report.plot_learning_curves(history, os.path.join(workdir, "learning_curves.png"),
                                        metrics=tuple(curves))
        if cfg.export:
            export(run, host_params, export_dir(run), metrics)
    for split, values in metrics.items():
        log.info("%s: %s", split, ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items())))
    return results


def export_dir(run) -> str:
    """Where a finished run exports its best weights: `best/` in Hugging Face format, or
    `best_vitjax/` in vitjax's own format for tasks without a transformers class."""
    return os.path.join(run.workdir, "best" if run.task.hf_config() is not None else "best_vitjax")


def export(run, params, directory: str, metrics: dict | None = None) -> str:
    """Writes `params` (host arrays: `parallel.to_host`) in Hugging Face format (+ model card) when
    the task has a transformers class, else in vitjax's own format. LoRA adapters are merged into
    the weights, and written alone in PEFT's format to `<directory>_adapter`."""
    params = lora_run.export_adapter(run, params, directory)
    hf = run.task.hf_config()
    if hf is None:
        path = export_native(directory, run.spec, params, run.preprocessing, run.task.name,
                             config_lib.to_dict(run.config)["task"], run.dataset.class_names,
                             {"base_checkpoint": run.base, "metrics": metrics or {}})
        log.info("task %r has no transformers class: exported in vitjax's format to %s", run.task.name, path)
        return path
    id2label = {int(k): v for k, v in hf["id2label"].items()}
    path = export_pretrained(directory, run.spec, params, id2label, run.preprocessing, task_fields=hf)
    report.write_model_card(path, {
        "base_checkpoint": run.base if run.base != "scratch" else None,
        "dataset": run.dataset.source,
        "class_names": run.dataset.class_names,
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
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
        results = read_json(path)
        if results.get("best_step") == step:
            return results.get("metrics", {})
    return {"validation": checkpoint_metrics} if checkpoint_metrics else {}
