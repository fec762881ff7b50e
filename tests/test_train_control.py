"""What the trainer decides: early stopping, frozen parameters, third-party tasks, config errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from safetensors.numpy import load_file

from train_helpers import colour_folder, tiny_config
from vitjax import config as config_lib
from vitjax import modes
from vitjax.train import evaluation
from vitjax.train.early_stopping import EarlyStopping


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return colour_folder(str(tmp_path_factory.mktemp("colours")), per_class=24)


def test_early_stopping_rule_on_a_scripted_sequence():
    stopper = EarlyStopping(mode="max", patience=2, min_delta=0.01)
    decisions = [stopper.update(v) for v in (0.50, 0.60, 0.605, 0.59, 0.70)]
    assert decisions == [False, False, False, True, False]
    low = EarlyStopping(mode="min", patience=1)
    assert [low.update(v) for v in (1.0, 0.9, 0.95)] == [False, False, True]


def test_training_stops_at_the_scripted_epoch(colours, tmp_path, monkeypatch):
    scripted = iter([0.5, 0.7, 0.69, 0.68, 0.9, 0.95])

    def fake_evaluate(run, params, eval_step, split):
        return {"accuracy": next(scripted), "loss": 1.0}

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    config = tiny_config(f"folder:{colours}", batch_size=8, epochs=6, early_stopping_patience=2,
                         test_split="", export=False)
    results = modes.train(config, str(tmp_path / "run"))
    # best at epoch 2 (0.7); epochs 3 and 4 do not improve: stop after epoch 4 of 6.
    assert [round(h["epoch"]) for h in results["history"]] == [1, 2, 3, 4]
    assert results["best_epoch"] == pytest.approx(2.0)


def test_head_only_moves_only_the_head(colours, tmp_path):
    config = tiny_config(f"folder:{colours}", batch_size=8, epochs=2)
    config.model.checkpoint = ""
    start = str(tmp_path / "start")
    # a 'pretrained' model: one epoch of full training, exported to HF format
    modes.train(tiny_config(f"folder:{colours}", batch_size=8, epochs=1), start)
    config.model.checkpoint = os.path.join(start, "best")
    config.optim.freeze = "head_only"
    config.optim.lr = 1e-2
    modes.train(config, str(tmp_path / "probe"))
    before = load_file(os.path.join(start, "best", "model.safetensors"))
    after = load_file(os.path.join(tmp_path, "probe", "best", "model.safetensors"))
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed == {"classifier.weight", "classifier.bias"}


def test_a_task_plugin_from_a_file_trains(colours, tmp_path):
    plugin = tmp_path / "odd_even_task.py"
    plugin.write_text(textwrap.dedent('''
        """A toy plugin: classification whose reported metric is renamed, registered from a file."""
        from vitjax.tasks.classification import Classification
        from vitjax.registry import register_task

        @register_task("toy_colours")
        class ToyColours(Classification):
            best_metric = ("toy_accuracy", "max")

            def summarize(self, computed):
                out = super().summarize(computed)
                out["toy_accuracy"] = out["accuracy"]
                return out

            def hf_config(self):
                return None
    '''))
    config = config_lib.base_config("toy_colours", [str(plugin)])
    reference = tiny_config(f"folder:{colours}", batch_size=8, epochs=2, best_metric="toy_accuracy")
    reference.task = config.task
    results = modes.train(reference, str(tmp_path / "run"))
    assert "toy_accuracy" in results["metrics"]["test"]
    assert not os.path.exists(tmp_path / "run" / "best")  # no transformers class: no HF export


def test_a_best_metric_the_task_lacks_is_named_before_training(colours, tmp_path):
    config = tiny_config(f"folder:{colours}", batch_size=8, epochs=1, best_metric="iou")
    with pytest.raises(modes.UserError, match=r"best_metric='iou'.*produces.*accuracy"):
        modes.train(config, str(tmp_path / "run"))
    assert os.path.getsize(tmp_path / "run" / "metrics.jsonl") == 0  # not a single step ran


def test_config_errors_name_the_key():
    config = tiny_config("demo:digits")
    config.train.batch_size = 0
    with pytest.raises(ValueError, match=r"config\.train\.batch_size must be a positive"):
        config_lib.validate(config)
    config = tiny_config("demo:digits")
    config.optim.lrr = 0.1
    with pytest.raises(KeyError, match=r"config\.optim\.lrr.*'lr'"):
        config_lib.validate(config)


def test_cli_reports_a_mistyped_override(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "vitjax.main", "--config", "configs/digits.py",
         "--workdir", str(tmp_path), "--config.optim.lrr=1e-3"],
        capture_output=True, text=True, timeout=120,
        cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode != 0
    assert "--config.optim.lrr: config.optim has no key 'lrr'. Did you mean 'lr'" in out.stderr
    assert "Traceback" not in out.stderr


def test_run_settings_that_would_break_late_are_refused_early(colours, tmp_path):
    for key, value, words in [("log_every", 0, "train.log_every must be a positive"),
                              ("keep_best", 0, "train.keep_best must be a positive"),
                              ("early_stopping_patience", -1, "early_stopping_patience must be >= 0")]:
        config = tiny_config("demo:digits")
        config.train[key] = value
        with pytest.raises(ValueError, match=words):
            config_lib.validate(config)
    config = tiny_config(f"folder:{colours}", test_split="tset")
    with pytest.raises(modes.UserError, match=r"test_split='tset' is not a split.*'test'"):
        modes.train(config, str(tmp_path / "run"))
