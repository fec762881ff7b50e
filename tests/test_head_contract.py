"""The head contract (`Task.head_from_checkpoint`): the backbone always loads from the checkpoint, a head
tensor only where the task says it can reuse it, and the warning names the task's real fresh tensors."""
import logging

import flax.linen as nn
import numpy as np
import pytest
from safetensors.numpy import load_file

from hf_oracle import TINY, make
from train_helpers import tiny_config
from vitjax import registry
from vitjax.data.records import ImageDataset
from vitjax.train import setup

VIT = dict(TINY, image_size=32, intermediate_size=64)
CHECKPOINT_LABELS = {0: "red", 1: "green"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny ViT classifier over the labels red/green, hidden size 32."""
    path = tmp_path_factory.mktemp("vit")
    make("ViTForImageClassification", "ViTConfig", **VIT, num_labels=2,
         id2label=CHECKPOINT_LABELS).save_pretrained(path)
    return path


def start_params(checkpoint, task: str, class_names, **task_knobs):
    """`build_model`'s start parameters for `task` over `class_names`, from `checkpoint`."""
    config = tiny_config("unused")
    config.task = registry.task_config(task)
    config.task.update(task_knobs)
    config.model.checkpoint = str(checkpoint)
    dataset = ImageDataset("toy", {}, list(class_names))
    return setup.build_model(config, None, registry.get_task(task), dataset).params


def test_detection_from_a_checkpoint_keeps_its_focal_loss_prior(checkpoint, caplog):
    """Detection's classifier shares the name and (head_channels == hidden size, same classes) the shapes
    of the checkpoint's classifier: it still starts at the prior bias -log(99) = -4.6, not the checkpoint's."""
    with caplog.at_level(logging.WARNING):
        params = start_params(checkpoint, "detection", CHECKPOINT_LABELS.values(), head_channels=32)
    tensors = load_file(checkpoint / "model.safetensors")
    assert params["head"]["classifier"]["kernel"].shape == tensors["classifier.weight"].T.shape
    np.testing.assert_allclose(params["head"]["classifier"]["bias"], -np.log(99), rtol=1e-6)
    np.testing.assert_array_equal(params["backbone"]["layernorm"]["scale"], tensors["vit.layernorm.weight"])
    warning = next(r.getMessage() for r in caplog.records if "newly initialized" in r.getMessage())
    assert "head/classifier/bias" in warning and "head/conv_0/kernel" in warning and "backbone/" not in warning


def test_classification_reuses_the_checkpoint_classifier_of_its_label_set(checkpoint, caplog):
    tensors = load_file(checkpoint / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        same = start_params(checkpoint, "classification", ["red", "green"])
    np.testing.assert_array_equal(same["head"]["classifier"]["kernel"], tensors["classifier.weight"].T)
    assert "newly initialized" not in caplog.text
    with caplog.at_level(logging.WARNING):
        other = start_params(checkpoint, "classification", ["cat", "dog"])  # same count, other classes
    assert not other["head"]["classifier"]["kernel"].any()
    assert "head/classifier/kernel" in caplog.text and "newly initialized" in caplog.text


class Regressor(nn.Module):
    @nn.compact
    def __call__(self, features):
        return nn.Dense(1, name="regressor")(features["cls"])[:, 0]


@registry.register_task("head_contract_regression")
class Regression(registry.Task):
    """Only what building the model calls: no classes, a `regressor` head, nothing from the checkpoint."""

    best_metric = ("loss", "min")
    has_classes = False
    loss = metrics = metric_inputs = summarize = report = None

    def make_head(self, spec):
        return Regressor()


def test_a_headless_task_warns_about_its_own_fresh_tensors(checkpoint, caplog):
    """No classes, a checkpoint with a classifier: no labels needed, and the warning names the task's
    `head/regressor/*`, not the checkpoint's classifier."""
    with caplog.at_level(logging.WARNING):
        params = start_params(checkpoint, "head_contract_regression", [])
    assert set(params["head"]) == {"regressor"}
    warning = next(r.getMessage() for r in caplog.records if "newly initialized" in r.getMessage())
    assert "head/regressor/bias" in warning and "head/regressor/kernel" in warning
    assert "classifier" not in warning


def test_the_log_says_what_happens_to_each_tensor(checkpoint, tmp_path, caplog):
    """A checkpoint of generic labels (LABEL_0, LABEL_1) under detection: detection starts its own head,
    so nothing says the checkpoint's head is kept "renamed"; LoRA adapters are not called "newly
    initialized by the task's head"."""
    make("ViTForImageClassification", "ViTConfig", **VIT, num_labels=2).save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO):
        start_params(tmp_path, "detection", ["disc", "square"], head_channels=32)
    assert "keeping the checkpoint's trained head" not in caplog.text and "renamed" not in caplog.text
    assert "head/classifier/kernel" in caplog.text  # named once, as new

    caplog.clear()
    config = tiny_config("unused")
    config.model.checkpoint = str(checkpoint)
    config.lora.targets = "backbone/.*/attention/(query|value)"
    with caplog.at_level(logging.INFO):
        setup.build_model(config, registry.get_task("classification"), ImageDataset("toy", {}, ["red", "green"]))
    assert "newly initialized" not in caplog.text and "lora_a" not in caplog.text
    assert "8 tensors that" in caplog.text and "keeping the trained head tensors" in caplog.text
