"""The family configs run end to end: configs/siglip_folder.py and configs/timm_augreg.py, each with a tiny
local checkpoint saved by the family's own library in place of the hub id, on real images (scikit-learn's
digits); the exported best model loads in that library with vitjax's logits."""
import importlib.util
import json
import os

import pytest
import torch
import transformers

from hf_oracle import make, pixels, rel_err
from test_families_hf import TOWER
from train_helpers import digits_folder
from vitjax import modes
from vitjax.api import load_pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_from(name, checkpoint, data):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.model.checkpoint = str(checkpoint)  # the tiny stand-in for the hub id
    c.data.source = f"folder:{data}"
    c.model.dtype = "float32"
    c.data.workers = 0
    c.data.cache = "none"
    c.optim.last_n_blocks = 1  # the tiny checkpoints have 2 blocks
    c.train.batch_size = 8
    c.train.epochs = 2
    c.train.progress = False
    c.compilation_cache = ""
    return c


def train(name, checkpoint, tmp_path):
    data = digits_folder(str(tmp_path / "digits"), range(3), per_class=16)
    results = modes.train(config_from(name, checkpoint, data), str(tmp_path / "run"))
    assert 0.0 <= results["metrics"]["test"]["accuracy"] <= 1.0
    return tmp_path / "run" / "best"


def test_siglip_folder_config(tmp_path):
    make("SiglipVisionModel", "SiglipVisionConfig", **TOWER).save_pretrained(tmp_path / "siglip")
    transformers.SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "siglip")
    best = train("siglip_folder", tmp_path / "siglip", tmp_path)
    hf = transformers.SiglipForImageClassification.from_pretrained(best).eval()
    clf = load_pretrained(best)
    x = pixels(2, 32, 32)
    with torch.no_grad():
        assert rel_err(clf.logits(x), hf(torch.from_numpy(x)).logits.numpy()) < 1e-4


def test_timm_augreg_config(tmp_path):
    pytest.importorskip("timm")
    from test_families_export import timm_from_export
    from test_families_timm import save_timm

    save_timm(tmp_path / "timm", "vit_base_patch16_224")
    best = train("timm_augreg", tmp_path / "timm", tmp_path)
    assert json.loads((best / "config.json").read_text())["num_classes"] == 3
    clf = load_pretrained(best)
    x = pixels(2, 32, 32)
    with torch.no_grad():
        assert rel_err(clf.logits(x), timm_from_export(best)(torch.from_numpy(x)).numpy()) < 1e-4
