"""Every hook of the `Task` interface is called by vitjax: a recording plugin, trained, evaluated and
predicted through the modes, records each hook it is asked for. A hook nothing calls fails here (the hooks are
read from `vitjax.registry.Task` itself, so a new hook joins the check)."""
from __future__ import annotations

import inspect
import os

import numpy as np

from train_helpers import colour_folder, tiny_config
from vitjax import modes, registry, report
from vitjax.tasks.classification import Classification

HOOKS = sorted(name for name, value in vars(registry.Task).items()
               if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, classmethod)))
CALLED: set[str] = set()


class RenamedMetric(Classification):
    """Classification whose tracked metric has another name, to see it reach the learning curves."""

    best_metric = ("colour_accuracy", "max")

    def summarize(self, computed):
        summary = super().summarize(computed)
        return {**summary, "colour_accuracy": summary["accuracy"]}


def _recording(name: str, is_classmethod: bool):
    if is_classmethod:
        def hook(cls, *args, **kwargs):
            CALLED.add(name)
            return getattr(super(Recording, cls), name)(*args, **kwargs)
        return classmethod(hook)

    def hook(self, *args, **kwargs):
        CALLED.add(name)
        return getattr(super(Recording, self), name)(*args, **kwargs)
    return hook


Recording = registry.register_task("recording_colours")(type("Recording", (RenamedMetric,), {
    name: _recording(name, isinstance(vars(registry.Task)[name], classmethod)) for name in HOOKS}))


def test_the_interface_is_what_the_registry_documents():
    assert {"make_head", "loss", "metrics", "metric_inputs", "summarize", "report",
            "head_from_checkpoint"} <= set(HOOKS)


def test_train_evaluate_and_predict_call_every_task_hook(tmp_path, monkeypatch):
    plotted = []
    plot = report.plot_learning_curves
    monkeypatch.setattr(report, "plot_learning_curves",
                        lambda history, path, metrics: plotted.append(metrics) or plot(history, path, metrics))
    colours = colour_folder(str(tmp_path / "colours"), per_class=8)
    config = tiny_config(f"folder:{colours}", batch_size=8, epochs=1)
    config.task = registry.task_config("recording_colours")
    config.train.best_metric, config.train.best_mode = Recording.best_metric
    CALLED.clear()
    modes.train(config, str(tmp_path / "run"))
    assert plotted == [("loss", "colour_accuracy")]  # the tracked metric, not accuracy, is plotted
    summary = modes.evaluate(config, str(tmp_path / "run"), None, "test")
    assert np.isfinite(summary["colour_accuracy"])
    red = os.path.join(colours, sorted(os.listdir(colours))[0])
    modes.predict(None, str(tmp_path / "run"), None, [red], 2, str(tmp_path / "predictions"))
    assert {"predict", "prediction_records"} <= set(HOOKS)
    assert CALLED >= set(HOOKS), f"hooks train/evaluate/predict never called: {sorted(set(HOOKS) - CALLED)}"
