"""Bad inputs a user can give, each met by an error naming the key/file and the fix, or a logged warning.

The bad inputs other files already cover are listed in the reliability report (issue 7); this file
holds the rest: extreme image sizes, class folders differing by case, classes missing from a split,
wrong config types and values, a config file that fails, and the workdir of another run.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import warnings

import numpy as np
import pytest
from PIL import Image

from test_data_fakes import data_config, make_folder
from train_helpers import tiny_config
from vitjax import config as config_lib
from vitjax import main, modes
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data import transforms
from vitjax.data.sources import open_source

# --- data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (10000, 10000)])
def test_extreme_image_sizes_decode_for_eval_and_training(tmp_path, size):
    path = str(tmp_path / "image.jpg")
    Image.new("RGB", size, (200, 30, 40)).save(path, quality=90)
    with warnings.catch_warnings():  # PIL warns above 89 Mpx and refuses above twice that
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = transforms.load_rgb(path, path)
    assert image.size == size
    assert Preprocessing.default(16).to_uint8(image).shape == (16, 16, 3)
    augment = data_config(augment__policy="randaugment", augment__random_erasing=1.0).augment
    out = transforms.augment(image, np.random.default_rng(0), augment, (16, 16), Image.Resampling.BILINEAR)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_class_folders_differing_by_case_are_refused(tmp_path):
    root = make_folder(str(tmp_path / "d"), {"": {"cat": 2, "dog": 2}})
    make_folder(root, {"": {"Cat": 2}})
    with pytest.raises(ValueError, match=r"class folders \[\['Cat', 'cat'\]\] differ only by case.*Merge"):
        open_source(data_config(source=root))


def test_a_class_missing_from_a_split_is_warned(tmp_path, caplog):
    root = make_folder(str(tmp_path / "d"), {"train": {"a": 4, "b": 4}, "validation": {"a": 2},
                                             "test": {"a": 1, "b": 1, "c": 1}})
    with caplog.at_level(logging.WARNING):
        ds = open_source(data_config(source=root))
    assert ds.class_names == ["a", "b", "c"]
    assert "split 'validation' has no images of the classes ['b', 'c']" in caplog.text
    assert "split 'train' has no images of the classes ['c']" in caplog.text
    assert "never sees them" in caplog.text and "split 'test'" not in caplog.text


# --- checkpoints ----------------------------------------------------------------------------------


def test_a_hub_id_the_hub_does_not_know(monkeypatch):
    # Offline and uncached: test_checkpoints.test_hub_id_not_cached_offline. Here the hub answers 404.
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    from vitjax.api import load_pretrained

    def not_found(repo_id, filename):
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # as raised for a 404
        Exception.__init__(error, f"404 Client Error. Repository Not Found for url: {repo_id}/{filename}")
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_found)
    with pytest.raises(FileNotFoundError, match=r"cannot fetch config\.json of hub repo 'nobody/no-such-vit'"
                                                r".*check the id"):
        load_pretrained("nobody/no-such-vit")


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, message", [
    ("train.batch_size", -8, r"config\.train\.batch_size must be a positive integer, got -8"),
    ("train.batch_size", 32.0, r"config\.train\.batch_size must be a positive integer, got 32\.0"),
    ("train.batch_size", "64", r"config\.train\.batch_size must be a number.*got '64' of type str"),
    ("train.epochs", 0, r"config\.train\.epochs must be a positive number, got 0"),
    ("train.epochs", -1.5, r"config\.train\.epochs must be a positive number"),
    ("optim.lr", 0.0, r"config\.optim\.lr must be a positive number, got 0\.0"),
    ("optim.lr", -1e-3, r"config\.optim\.lr must be a positive number"),
    ("train.eval_batch_size", -1, r"config\.train\.eval_batch_size must be >= 0"),
    ("train.resume", "yes", r"config\.train\.resume must be true or false.*got 'yes'"),
    ("train.keep_best", True, r"config\.train\.keep_best must be a number.*got True"),
    ("data.augment.crop_scale", 0.5, r"config\.data\.augment\.crop_scale must be a list or tuple"),
    ("data.source", ("a", "b"), r"config\.data\.source must be a string"),
])
def test_wrong_types_and_values_name_the_key(key, value, message):
    config = tiny_config("demo:digits")
    *groups, name = key.split(".")
    target = config
    for group in groups:
        target = target[group]
    with target.ignore_type():  # as a config file replacing a subtree would
        target[name] = value
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config)


def test_a_replaced_subtree_is_named():
    config = tiny_config("demo:digits")
    config.train = {"batch_size": 8, "epochs": 1}
    with pytest.raises(KeyError, match=r"config\.train lacks the keys \[.*'eval_every'.*set single keys"):
        config_lib.validate(config)


def test_last_n_blocks_beyond_the_depth_fails_in_validate(tmp_path):
    config = tiny_config("demo:digits")
    config.optim.freeze = "last_n_blocks"
    config.optim.last_n_blocks = 3  # the tiny spec has 2 blocks
    with pytest.raises(ValueError, match=r"last_n_blocks=3 but the model has 2 blocks; use 0\.\.2"):
        config_lib.validate(config)
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "num_hidden_layers": 1}))
    config.model.checkpoint = str(folder)
    with pytest.raises(ValueError, match="has 1 blocks"):
        config_lib.validate(config)
    config.model.checkpoint = "some-org/a-hub-model"  # depth unknown until loaded: the optimizer checks
    config_lib.validate(config)


def test_batch_not_divisible_by_the_devices():
    with pytest.raises(ValueError, match=r"config\.train\.batch_size=30 is not divisible by the 4 devices; "
                                         r"use a multiple of 4, e\.g\. 28"):
        config_lib.check_batch_divides(30, "train.batch_size", 4)


def test_an_error_inside_a_config_file_is_one_line(tmp_path):
    # absl reports an exception raised by get_config() as its heading plus the whole traceback.
    config_file = tmp_path / "my_config.py"
    config_file.write_text("def get_config():\n    raise TypeError('batch_size must be an int')\n")
    namespace = {}
    exec(compile(config_file.read_text(), str(config_file), "exec"), namespace)
    try:
        namespace["get_config"]()
    except TypeError:
        message = f"flag --config={config_file}: Error whilst parsing config file:\n\n{traceback.format_exc()}"
    line = main._without_traceback(message)
    assert line == (f"flag --config={config_file}: Error whilst parsing config file ({config_file}, line 2): "
                    "TypeError: batch_size must be an int")


def test_overwrite_replaces_another_run_and_the_config_is_written_whole(tmp_path):
    # The refusal without --overwrite: test_train_e2e.test_same_workdir_different_config_is_refused.
    config = tiny_config("demo:digits")
    workdir = str(tmp_path / "run")
    modes.prepare_workdir(config, workdir, overwrite=False)
    changed = config.copy_and_resolve_references()
    changed.train.epochs = 9
    changed.train.log_every = 1  # run-neutral: alone, it would not count as another run
    modes.prepare_workdir(changed, workdir, overwrite=True)
    assert json.load(open(os.path.join(workdir, "config.json")))["train"]["epochs"] == 9
    assert not os.path.exists(os.path.join(workdir, "config.json.tmp"))
