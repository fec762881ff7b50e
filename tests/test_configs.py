"""Every config in configs/ runs: its own knobs, with a tiny local checkpoint (transformers
`save_pretrained`) standing in for the hub id, small generated data of the config's task for the
hub/TFDS data or the user's folder (class folders, images + masks, COCO boxes; the digits demo keeps
its own offline data), and a few steps instead of the full schedule."""

from __future__ import annotations

import glob
import importlib.util
import json
import os

import pytest

from dense_helpers import coco_folder, segmentation_folder
from hf_oracle import TINY, make
from train_helpers import colour_folder, csv_folder
from vitjax import modes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("configs")
    checkpoint = root / "vit"
    make("ViTForImageClassification", "ViTConfig", **dict(TINY, num_hidden_layers=4), image_size=32,
         intermediate_size=64).save_pretrained(checkpoint)
    data = str(root / "data")  # a train and a test split, as the hub and TFDS datasets have
    colour_folder(os.path.join(data, "train"), per_class=12, size=32)
    colour_folder(os.path.join(data, "test"), per_class=3, size=32, seed=1)
    sources = {"classification": f"folder:{data}",
               "segmentation": f"folder:{segmentation_folder(str(root / 'masks'), count=48)}",
               "detection": f"coco:{coco_folder(str(root / 'boxes'), count=48)}"}
    return str(checkpoint), sources


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_the_configs_are_found():  # each one found is trained by the next test
    assert {"beans.py", "cifar10.py", "digits.py", "imagefolder.py", "segmentation.py", "detection.py"} <= \
        {os.path.basename(p) for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_the_config_trains(path, stand_ins, tmp_path):
    checkpoint, sources = stand_ins
    config = _load(path)
    if not config.data.source.startswith("demo:"):
        config.data.source = sources[config.task.name]
    _train(config, checkpoint, tmp_path)


def test_imagefolder_config_trains_multilabel(stand_ins, tmp_path):
    """configs/imagefolder.py (decode cache on disk, RandAugment) with multi-label records."""
    config = _load(os.path.join(REPO, "configs", "imagefolder.py"))
    config.task.multilabel = True
    config.data.source = f"folder:{csv_folder(str(tmp_path / 'data'), count=48, size=32)}"
    _train(config, stand_ins[0], tmp_path)
    with open(tmp_path / "run" / "data_split.json", encoding="utf-8") as f:
        split = json.load(f)
    folder = os.path.realpath(config.data.source.removeprefix("folder:"))
    truth = {}  # image path -> its labels, from labels.csv
    with open(os.path.join(folder, "labels.csv"), encoding="utf-8") as f:
        for line in f.read().split()[1:]:
            image, _, labels = line.partition(",")
            truth[os.path.join(folder, image)] = labels.split(";")
    for recorded in split["splits"].values():  # per class: the images showing it
        shown = [truth[os.path.realpath(i)] for i in recorded["ids"]]
        assert recorded["per_class"] == {c: sum(c in labels for labels in shown) for c in ("blue", "red")}


def _train(config, checkpoint: str, tmp_path):
    """Trains `config` for about an epoch of the tiny data with the tiny checkpoint; checks that the
    run evaluated its best metric."""
    if config.model.checkpoint:
        config.model.checkpoint, config.model.image_size = checkpoint, 32
    else:
        config.model.spec.update(hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64)
    if config.data.cache == "disk":
        assert config.data.cache_dir, "cache='disk' without data.cache_dir fails at its first read"
        config.data.cache_dir = str(tmp_path / "cache")  # the config's own folder is the user's
    config.data.workers = 0  # the configs' worker counts suit their machines, not this test's
    config.model.dtype = "float32"
    config.train.batch_size, config.train.eval_every = 8, "1 epochs"
    with config.train.ignore_type():  # an int in some configs; ~20 steps here
        config.train.epochs = 0.1 if config.data.source.startswith("demo:") else 1
    config.optim.warmup = "10%"  # the configs' warmups are in epochs of their full schedules
    config.train.progress, config.compilation_cache = False, ""
    results = modes.train(config, str(tmp_path / "run"))
    assert results["steps"] >= 1
    with open(tmp_path / "run" / "results.json", encoding="utf-8") as f:
        assert json.load(f)["metrics"]["validation"][config.train.best_metric] >= 0
