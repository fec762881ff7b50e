"""The robustness report for the other tasks: segmentation gets the corruption sweep in its own
metric (mIoU) from its vitjax-format model, and multi-label classification gets the sweep, the
attacks on its multi-hot targets and the calibration of its per-label probabilities."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from dense_helpers import dense_config, segmentation_folder
from train_helpers import colour_folder, tiny_config
from vitjax import modes
from vitjax.registry import task_config
from vitjax.robustness.options import default_options

pytest.importorskip("imagecorruptions")


def _options(**overrides):
    options = default_options()
    options.corruptions = ("gaussian_noise", "contrast")
    options.severities = (1, 5)
    options.update(overrides)
    return options


def test_segmentation_corruption_sweep_in_miou(tmp_path):
    data = segmentation_folder(str(tmp_path / "data"), count=48)
    config = dense_config("segmentation", f"folder:{data}", batch_size=8, epochs=2)
    workdir = str(tmp_path / "run")
    results = modes.train(config, workdir)
    result = modes.robustness(None, workdir, None, "test", _options(epsilons=(1.0,)))
    metric = config.train.best_metric
    assert result["metric"] == metric
    assert result["clean"][metric] == pytest.approx(results["metrics"]["test"][metric], abs=1e-6)
    assert set(result["corruptions"]) == {"gaussian_noise", "contrast"}
    assert result["corruptions"]["contrast"]["5"] < result["clean"][metric]
    assert "attacks" not in result and "calibration" not in result  # no class logits per image
    assert os.path.isfile(os.path.join(workdir, "robustness", "corruption_heatmap.png"))


def test_multilabel_report(tmp_path):
    """Images holding a red and/or a blue half: labels.csv lists which."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    os.makedirs(root)
    rows = ["image,labels"]
    for i in range(60):
        names = [n for n in ("red", "blue") if rng.random() < 0.5]
        pixels = np.clip(rng.normal(120, 30, (32, 32, 3)), 0, 255)
        if "red" in names:
            pixels[:, :16] = (220, 40, 40)
        if "blue" in names:
            pixels[:, 16:] = (40, 40, 220)
        Image.fromarray(pixels.astype(np.uint8)).save(root / f"{i:03d}.png")
        rows.append(f"{i:03d}.png,{';'.join(names)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    config = tiny_config(f"folder:{root}", batch_size=8, epochs=3)
    config.task.multilabel = True
    config.model.spec.image_size = 32
    workdir = str(tmp_path / "run")
    results = modes.train(config, workdir)
    result = modes.robustness(None, workdir, None, "test", _options(epsilons=(0.0, 16.0),
                                                                     pgd_steps=3))
    clean = result["clean"]["accuracy"]
    assert clean == pytest.approx(results["metrics"]["test"]["accuracy"], abs=1e-6)
    assert result["attacks"]["fgsm"]["0"] == pytest.approx(clean, abs=1e-6)
    assert result["attacks"]["pgd"]["16"] <= result["attacks"]["fgsm"]["16"] <= clean
    bins = result["calibration"]["before"]["bins"]
    assert sum(row["count"] for row in bins) == 2 * result["images"]  # one forecast per label


RENAMED_CLASSIFIER = """
from vitjax.registry import register_task
from vitjax.tasks.classification import Classification


@register_task("renamed_classifier")
class RenamedClassifier(Classification):
    pass
"""


def test_a_task_declaring_class_logits_is_attacked_and_calibrated(tmp_path):
    """The report asks the task (`class_logits`), not its name: classification under another name
    gets the attacks and the calibration."""
    plugin = tmp_path / "renamed.py"
    plugin.write_text(RENAMED_CLASSIFIER)
    config = tiny_config(f"folder:{colour_folder(str(tmp_path / 'data'), per_class=8)}", batch_size=8,
                         epochs=1)
    config.task = task_config("renamed_classifier", [str(plugin)])
    workdir = str(tmp_path / "run")
    modes.train(config, workdir)
    result = modes.robustness(None, workdir, None, "test", _options(epsilons=(8.0,), pgd_steps=2,
                                                                     corruptions=()))
    assert result["task"] == "renamed_classifier"
    assert set(result["attacks"]) == {"fgsm", "pgd"} and "before" in result["calibration"]
