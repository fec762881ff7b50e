"""A workdir is self-contained: with the base checkpoint gone (no hub, the folder moved away), export from
the orbax checkpoints, evaluate and predict still work from the workdir alone, and the export equals the
model training wrote (transformers loads both with the same logits). A workdir lacking what export needs
says which file and the fix."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import transformers

from hf_oracle import TINY, make, pixels
from train_helpers import colour_folder, tiny_config
from vitjax import modes

PROCESSOR = dict(size={"height": 32, "width": 32}, image_mean=[0.3, 0.4, 0.5], image_std=[0.2, 0.25, 0.3])
BASES = {  # (model class, config class, processor class, task pooling): a plain ViT, a SigLIP tower
    "vit": ("ViTModel", "ViTConfig", "ViTImageProcessor", None),
    "siglip": ("SiglipVisionModel", "SiglipVisionConfig", "SiglipImageProcessor", "mean"),
}


@pytest.fixture(scope="module", params=sorted(BASES))
def trained_without_base(request, tmp_path_factory):
    """A run trained from a tiny local checkpoint whose folder is then moved away."""
    root = tmp_path_factory.mktemp(request.param)
    model, config, processor, pooling = BASES[request.param]
    base = root / "base"
    make(model, config, **TINY, image_size=32, intermediate_size=64).save_pretrained(base)
    getattr(transformers, processor)(**PROCESSOR).save_pretrained(base)
    data = colour_folder(str(root / "data"), per_class=12)
    c = tiny_config(f"folder:{data}", batch_size=8, epochs=1)
    c.model.checkpoint = str(base)
    c.optim.freeze = "full"
    c.task.pooling = pooling
    workdir = str(root / "run")
    modes.train(c, workdir)
    os.rename(base, root / "gone")
    return workdir, data


def _logits(folder, x):
    model = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).logits.numpy()


def test_export_from_the_checkpoints_equals_what_training_wrote(trained_without_base, tmp_path):
    workdir, _ = trained_without_base
    exported = modes.export(None, workdir, str(tmp_path / "exported"))
    best = os.path.join(workdir, "best")
    for name in ("config.json", "preprocessor_config.json"):
        with open(os.path.join(exported, name)) as a, open(os.path.join(best, name)) as b:
            assert json.load(a) == json.load(b), name
    with open(os.path.join(exported, "preprocessor_config.json")) as f:
        assert json.load(f)["image_mean"] == PROCESSOR["image_mean"]  # the base's, not the default
    x = pixels(2, 32, 32)
    np.testing.assert_array_equal(_logits(exported, x), _logits(best, x))


def test_evaluate_and_predict_need_no_base(trained_without_base, tmp_path):
    workdir, data = trained_without_base
    with open(os.path.join(workdir, "results.json")) as f:
        tested = json.load(f)["metrics"]["test"]["accuracy"]
    assert modes.evaluate(None, workdir, None, "test")["accuracy"] == pytest.approx(tested, abs=1e-6)
    records = modes.predict(None, workdir, None, [os.path.join(data, "red")], 1, str(tmp_path / "preds"))
    assert len(records) == 12 and all("predictions" in r for r in records)


def test_a_workdir_without_its_model_record_names_it(trained_without_base, tmp_path):
    workdir, _ = trained_without_base
    record = os.path.join(workdir, "model.json")
    os.rename(record, record + ".hidden")
    try:
        with pytest.raises(modes.UserError, match=r"model\.json is missing.*base checkpoint.*/base.*train"):
            modes.export(None, workdir, str(tmp_path / "exported"))
    finally:
        os.rename(record + ".hidden", record)
