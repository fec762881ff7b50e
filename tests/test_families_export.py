"""Export back to each family's own format: transformers' DINOv2-with-registers / SigLIP / CLIP classification
classes, and timm's format (timm and `.npz` weights) loaded by `timm.create_model` from the local file;
the reference library's logits equal vitjax's, and vitjax reads its export back identically."""
import json

import jax
import numpy as np
import pytest
import torch
import transformers

from hf_oracle import make, pixels, rel_err, report, torch_forward
from test_families_hf import TOWER
from vitjax.api import load_pretrained

timm = pytest.importorskip("timm")
from test_families_timm import CASES, _augreg_npz, save_timm  # noqa: E402

LABELS = {0: "apple", 1: "banana", 2: "cherry", 3: "date"}


def randomise_head(clf, seed=0):
    rng = np.random.default_rng(seed)
    clf.params["head"] = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), clf.params["head"])
    return clf


def reloads_identically(clf, out, x):
    again = load_pretrained(out)
    assert again.id2label == clf.id2label and again.pooling == clf.pooling
    np.testing.assert_allclose(again.logits(x), clf.logits(x), rtol=1e-6, atol=1e-6)


HF_CASES = {
    "dinov2_with_registers": ("Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig",
                              dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                                   patch_size=8, num_register_tokens=2)),
    "siglip": ("SiglipForImageClassification", "SiglipConfig", dict(vision_config=TOWER)),
    "clip": ("CLIPForImageClassification", "CLIPConfig", dict(vision_config=TOWER)),
}


@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_round_trip_through_transformers(case, tmp_path):
    cls_name, config_name, config = HF_CASES[case]
    make(cls_name, config_name, **config, num_labels=4).save_pretrained(tmp_path / "src")
    clf = randomise_head(load_pretrained(tmp_path / "src", id2label=LABELS))
    out = clf.save_pretrained(tmp_path / "export")
    hf = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    assert type(hf).__name__ == cls_name and hf.config.id2label[2] == "cherry"
    x = pixels(2, 32, 32)
    err = rel_err(clf.logits(x), torch_forward(hf, x).logits.numpy())
    report(f"export_{case}_transformers", logits=err)
    assert err < 1e-4
    reloads_identically(clf, out, x)


def test_siglip_vision_tower_fine_tuned_exports_a_classifier(tmp_path):
    """A SiglipVisionModel checkpoint with a new label set exports as SiglipForImageClassification."""
    make("SiglipVisionModel", "SiglipVisionConfig", **TOWER).save_pretrained(tmp_path / "src")
    clf = randomise_head(load_pretrained(tmp_path / "src", id2label=LABELS))
    out = clf.save_pretrained(tmp_path / "export")
    hf = transformers.SiglipForImageClassification.from_pretrained(out).eval()
    x = pixels(2, 32, 32)
    err = rel_err(clf.logits(x), torch_forward(hf, x).logits.numpy())
    report("export_siglip_vision_tower_transformers", logits=err)
    assert err < 1e-4


def timm_from_export(out):
    config = json.loads((out / "config.json").read_text())
    overlay = dict(file=str(out / "model.safetensors"), num_classes=config["num_classes"])
    return timm.create_model(config["architecture"], pretrained=True, pretrained_cfg_overlay=overlay,
                             **config["model_args"]).eval()


def check_timm_round_trip(clf, out, name):
    clf.save_pretrained(out)
    x = pixels(2, 32, 32)
    with torch.no_grad():
        err = rel_err(clf.logits(x), timm_from_export(out)(torch.from_numpy(x)).numpy())
    report(name, logits=err)
    assert err < 1e-4
    reloads_identically(clf, out, x)


@pytest.mark.parametrize("case", ["vit_token", "vit_reg_gap_fc_norm_layer_scale", "vit_map_no_class_token",
                                  "clip_quickgelu_pre_norm", "deit_distilled"])
def test_round_trip_through_timm(case, tmp_path):
    architecture, args = CASES[case]
    save_timm(tmp_path / "src", architecture, **args)
    clf = randomise_head(load_pretrained(tmp_path / "src", id2label=LABELS))
    check_timm_round_trip(clf, tmp_path / "export", f"export_timm_{case}")


def test_npz_exports_to_timm(tmp_path):
    _augreg_npz(tmp_path / "augreg.npz")
    clf = randomise_head(load_pretrained(tmp_path / "augreg.npz", id2label=LABELS))
    check_timm_round_trip(clf, tmp_path / "export", "export_npz_to_timm")
