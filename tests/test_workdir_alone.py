"""A workdir is self-contained: with the base checkpoint gone (no hub, the folder moved away), export from
the orbax checkpoints, evaluate and predict still work from the workdir alone, and the export equals the
model training wrote (transformers loads both with the same logits). A workdir lacking what export needs
says which file and the fix."""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
import torch
import transformers

from hf_oracle import TINY, make, pixels
from train_helpers import colour_folder, tiny_config
from vitjax import modes

PROCESSOR = dict(size={"height": 32, "width": 32}, image_mean=[0.3, 0.4, 0.5], image_std=[0.2, 0.25, 0.3])


def save_hf(model: str, config: str, processor: str):
    """A tiny transformers checkpoint with non-default preprocessing, as its library saves it."""
    def save(path):
        make(model, config, **TINY, image_size=32, intermediate_size=64).save_pretrained(path)
        getattr(transformers, processor)(**PROCESSOR).save_pretrained(path)
    return save


def save_timm(path):
    pytest.importorskip("timm")
    from test_families_timm import save_timm
    save_timm(path, "vit_base_patch16_224")


BASES = {  # family -> (how its tiny checkpoint is saved, the task's head pooling)
    "vit": (save_hf("ViTModel", "ViTConfig", "ViTImageProcessor"), None),
    "siglip": (save_hf("SiglipVisionModel", "SiglipVisionConfig", "SiglipImageProcessor"), "mean"),
    "timm": (save_timm, "pooled"),
}


@pytest.fixture(scope="module", params=sorted(BASES))
def trained_without_base(request, tmp_path_factory):
    """(family, workdir, data): a run trained from a tiny local checkpoint whose folder is then moved away."""
    root = tmp_path_factory.mktemp(request.param)
    save, pooling = BASES[request.param]
    save(root / "base")
    data = colour_folder(str(root / "data"), per_class=12)
    c = tiny_config(f"folder:{data}", batch_size=8, epochs=1)
    c.model.checkpoint = str(root / "base")
    c.optim.freeze = "full"
    c.task.pooling = pooling
    workdir = str(root / "run")
    modes.train(c, workdir)
    os.rename(root / "base", root / "gone")
    return request.param, workdir, data


def _logits(family, folder, x):
    """The logits of the exported `folder` in its family's own library."""
    if family == "timm":
        from test_families_export import timm_from_export
        model = timm_from_export(pathlib.Path(folder))
    else:
        model = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return (out if family == "timm" else out.logits).numpy()


def test_export_from_the_checkpoints_equals_what_training_wrote(trained_without_base, tmp_path):
    family, workdir, _ = trained_without_base
    exported = modes.export(None, workdir, str(tmp_path / "exported"))
    best = os.path.join(workdir, "best")
    names = ["config.json"] if family == "timm" else ["config.json", "preprocessor_config.json"]
    for name in names:
        with open(os.path.join(exported, name)) as a, open(os.path.join(best, name)) as b:
            assert json.load(a) == json.load(b), name
    if family != "timm":
        with open(os.path.join(exported, "preprocessor_config.json")) as f:
            assert json.load(f)["image_mean"] == PROCESSOR["image_mean"]  # the base's, not the default
    x = pixels(2, 32, 32)
    np.testing.assert_array_equal(_logits(family, exported, x), _logits(family, best, x))


def test_evaluate_and_predict_need_no_base(trained_without_base, tmp_path):
    _, workdir, data = trained_without_base
    with open(os.path.join(workdir, "results.json")) as f:
        tested = json.load(f)["metrics"]["test"]["accuracy"]
    assert modes.evaluate(None, workdir, None, "test")["accuracy"] == pytest.approx(tested, abs=1e-6)
    records = modes.predict(None, workdir, None, [os.path.join(data, "red")], 1, str(tmp_path / "preds"))
    assert len(records) == 12 and all("label" in r and "error" not in r for r in records)


def test_a_workdir_without_its_model_record_needs_the_base(trained_without_base, tmp_path):
    """A run trained before model.json existed: export rebuilds the model from the base checkpoint
    when it is readable, and names both when it is not."""
    family, workdir, _ = trained_without_base
    record, base = os.path.join(workdir, "model.json"), pathlib.Path(workdir).parent / "base"
    os.rename(record, record + ".hidden")
    try:
        with pytest.raises(modes.UserError, match=r"model\.json is missing.*base checkpoint.*/base.*train"):
            modes.export(None, workdir, str(tmp_path / "exported"))
        os.rename(base.parent / "gone", base)
        try:
            exported = modes.export(None, workdir, str(tmp_path / "exported"))
        finally:
            os.rename(base, base.parent / "gone")
    finally:
        os.rename(record + ".hidden", record)
    x = pixels(2, 32, 32)
    np.testing.assert_array_equal(_logits(family, exported, x), _logits(family, os.path.join(workdir, "best"), x))


def test_vitjax_model_folders_keep_the_whole_architecture(tmp_path):
    """What a transformers config.json drops (SigLIP's MAP pooling, timm's aspect-keeping resize) comes
    back from best_vitjax/ (tasks without a transformers class) as it was trained."""
    from vitjax.checkpoints.native import export_native, load_native
    from vitjax.checkpoints.preprocessing import Preprocessing
    from vitjax.models.vit import ViTSpec

    spec = ViTSpec(family="siglip", image_size=(32, 48), patch_size=8, hidden_size=32, num_layers=2,
                   num_heads=4, mlp_dim=64, class_token=False, pool="map", hidden_act="gelu_pytorch_tanh")
    preprocessing = Preprocessing(size=None, cover=(36, 54), crop=(32, 48), crop_rounding="round",
                                  mean=(0.1, 0.2, 0.3), resample=3)
    export_native(str(tmp_path / "m"), spec, {"head": {"w": np.ones(2)}}, preprocessing, "segmentation",
                  {"name": "segmentation"}, ["a", "b"])
    _, params, spec_back, preprocessing_back = load_native(str(tmp_path / "m"))
    assert (spec_back, preprocessing_back) == (spec, preprocessing)
    assert ViTSpec.from_hf_config(spec.to_hf_config()) != spec  # what the old fields alone gave back
    (tmp_path / "m" / "vitjax_model.json").write_text(json.dumps({"spec": {"hidden": 3}}))
    with pytest.raises(modes.UserError, match=r"vitjax_model.json: 'spec' is not a vitjax ViTSpec.*'hidden'"):
        load_native(str(tmp_path / "m"))
