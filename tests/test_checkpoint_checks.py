"""Checkpoints and inputs from elsewhere: config.json values out of range, a truncated weights file and
unreadable JSON are each named with the file, the key and what is allowed; `load_pretrained`'s label
and pixel handling says what it did."""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from transformers import ViTImageProcessor

import vitjax
from hf_oracle import TINY, make
from train_helpers import tiny_config
from vitjax import config as config_lib
from vitjax import errors, modes
from vitjax.checkpoints.hf_load import load_hf
from vitjax.data import splits
from vitjax.workdir import Workdir

VIT = dict(TINY, image_size=32, intermediate_size=64)


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("vit")
    make("ViTForImageClassification", "ViTConfig", **VIT, num_labels=3).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def _edited(vit_dir, tmp_path, name, **changes):
    folder = tmp_path / "edited"
    shutil.copytree(vit_dir, folder)
    with open(folder / name, encoding="utf-8") as f:
        content = json.load(f)
    content.update(changes)
    (folder / name).write_text(json.dumps(content))
    return folder


@pytest.mark.parametrize("changes, message", [
    (dict(num_hidden_layers=-3), r"num_hidden_layers=-3 is out of range; a whole number in 1\.\.256"),
    (dict(num_hidden_layers=1000000), r"num_hidden_layers=1000000 is out of range"),
    (dict(num_hidden_layers=2.5), r"num_hidden_layers=2\.5 is out of range"),
    (dict(hidden_size=0), r"hidden_size=0 is out of range; a whole number in 1\.\.65536"),
    (dict(num_attention_heads=5), r"num_attention_heads=5 does not divide hidden_size=32; use a divisor of 32"),
    (dict(patch_size=64), r"patch_size=64 is larger than image_size=32; the allowed range is 1\.\.32"),
    (dict(image_size=[32, 32, 3]), r"image_size=\[32, 32, 3\]; use a number or \[height, width\]"),
    (dict(hidden_dropout_prob=1.5), r"hidden_dropout_prob=1\.5 is out of range; a number in \[0, 1\)"),
    (dict(layer_norm_eps=0), r"layer_norm_eps=0 is out of range"),
])
def test_config_json_values_out_of_range_name_file_key_and_range(vit_dir, tmp_path, changes, message):
    folder = _edited(vit_dir, tmp_path, "config.json", **changes)
    with pytest.raises(errors.BadValue, match=rf"{folder}/config\.json: {message}"):
        load_hf(folder)
    config = tiny_config("demo:digits")
    config.model.checkpoint = str(folder)  # the same check already when the run's config is validated
    with pytest.raises(errors.BadValue, match=message):
        config_lib.validate(config)


@pytest.mark.parametrize("changes, message", [
    (dict(image_std=[0, 0, 0]), r"image_std=\[0, 0, 0\] is out of range; positive finite numbers"),
    (dict(image_mean=[0.5, None, 0.5]), r"image_mean=\[0\.5, None, 0\.5\] is out of range; finite numbers"),
    (dict(rescale_factor=-1), r"rescale_factor=-1 is out of range; a positive number"),
])
def test_preprocessor_values_out_of_range(vit_dir, tmp_path, changes, message):
    folder = _edited(vit_dir, tmp_path, "preprocessor_config.json", **changes)
    with pytest.raises(errors.BadValue, match=rf"{folder}/preprocessor_config\.json: {message}"):
        load_hf(folder)


def test_truncated_or_corrupt_weights_name_the_file(vit_dir, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(vit_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    for broken in (data[: len(data) // 2], b"\x00" * 64, b""):
        weights.write_bytes(broken)
        with pytest.raises(errors.BadValue, match=rf"{weights} is truncated or corrupt .*download or save"):
            load_hf(folder)


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_unreadable_checkpoint_json_names_the_file(vit_dir, tmp_path, name):
    folder = tmp_path / "broken"
    shutil.copytree(vit_dir, folder)
    (folder / name).write_text('{"model_type": "vit", ')
    with pytest.raises(errors.BadValue, match=rf"{folder / name} is not valid JSON \(.*\); download or save"):
        load_hf(folder)


def test_unreadable_workdir_json_names_the_file(tmp_path):
    workdir = tmp_path / "run"
    Workdir(workdir).create()  # a run's workdir whose config.json was cut short
    (workdir / "config.json").write_text("{trunc")
    with pytest.raises(errors.BadValue, match=rf"{workdir}/config\.json is not valid JSON .*--overwrite"):
        modes.prepare_workdir(tiny_config("demo:digits"), str(workdir), overwrite=False)
    (workdir / splits.SPLIT_FILE).write_text("[1, 2")

    class Dataset:  # the least write_split reads
        source, class_names, splits = "x", ["a"], {}

    with pytest.raises(errors.BadValue, match=rf"{splits.SPLIT_FILE} is not valid JSON"):
        splits.write_split(str(workdir), Dataset())


# --- load_pretrained ------------------------------------------------------------------------------


def test_uint8_images_to_logits_are_normalised_like_the_processor(vit_dir):
    clf = vitjax.load_pretrained(vit_dir)
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    processed = ViTImageProcessor.from_pretrained(vit_dir)(list(images.transpose(0, 2, 3, 1)),
                                                           return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(clf.logits(images), clf.logits(processed), atol=1e-5)
    with torch.no_grad():
        theirs = make("ViTForImageClassification", "ViTConfig", **VIT, num_labels=3)(
            torch.from_numpy(processed)).logits.numpy()
    np.testing.assert_allclose(clf.logits(images), theirs, atol=1e-4)
    # channels-last uint8 [B, H, W, 3], the layout every export takes, is the same images
    np.testing.assert_array_equal(clf.logits(images.transpose(0, 2, 3, 1)), clf.logits(images))
    with pytest.raises(errors.BadValue, match=r"or uint8 \[batch, 32, 32, 3\]; got shape \(2, 32, 31, 3\)"):
        clf.logits(images.transpose(0, 2, 3, 1)[:, :, :31])
    with pytest.raises(errors.BadValue, match=r"pixel_values of dtype int64"):
        clf.logits(images.astype(np.int64))


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_labels=0), r"num_labels=0: a classifier needs at least one label"),
    (dict(num_labels=-2), r"num_labels=-2"),
    (dict(id2label={}), r"id2label is empty"),
])
def test_an_empty_label_set_is_refused(vit_dir, kwargs, message):
    with pytest.raises(errors.BadValue, match=message):
        vitjax.load_pretrained(vit_dir, **kwargs)


def test_id2label_renaming_a_generic_head_keeps_it_with_a_warning(vit_dir, caplog):
    with caplog.at_level(logging.WARNING):
        renamed = vitjax.load_pretrained(vit_dir, id2label={0: "cat", 1: "dog", 2: "cow"})
    kept = vitjax.load_pretrained(vit_dir)
    assert renamed.id2label == {0: "cat", 1: "dog", 2: "cow"}
    np.testing.assert_array_equal(renamed.params["head"]["classifier"]["kernel"],
                                  kept.params["head"]["classifier"]["kernel"])
    assert "keeping the checkpoint's trained head of 3 classes, its generic labels ['LABEL_0'" in caplog.text
    assert "renamed to ['cat', 'dog', 'cow']" in caplog.text


def test_help_shows_the_real_signature():
    parameters = inspect.signature(vitjax.load_pretrained).parameters
    assert list(parameters)[:4] == ["name_or_dir", "num_labels", "id2label", "image_size"]
    assert "generic" in vitjax.load_pretrained.__doc__ and vitjax.Classifier.__name__ == "Classifier"
    assert os.path.basename(inspect.getfile(vitjax.load_pretrained)) == "api.py"
