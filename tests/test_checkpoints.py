"""Checkpoint loading: head decisions, labels, the name table both ways, posemb resize, actionable errors."""
import json
import logging

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from hf_oracle import TINY, make
from vitjax.api import load_pretrained
from vitjax.checkpoints import hf_names
from vitjax.checkpoints.hf_load import load_hf
from vitjax.checkpoints.posemb import resize_posemb
from vitjax.models.interpolation import interpolation_matrix
from vitjax.models.vit import ViTSpec

VIT = dict(TINY, image_size=32, intermediate_size=64)


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("vit")
    make("ViTForImageClassification", "ViTConfig", **VIT, num_labels=3,
         id2label={0: "a", 1: "b", 2: "c"}).save_pretrained(path)
    return path


def test_head_of_right_size_is_kept(vit_dir, caplog):
    with caplog.at_level(logging.WARNING):
        ckpt = load_hf(vit_dir, num_labels=3)
    assert ckpt.initialised == [] and "newly initialized" not in caplog.text
    assert ckpt.id2label == {0: "a", 1: "b", 2: "c"}
    same = load_hf(vit_dir, id2label={0: "a", 1: "b", 2: "c"})
    np.testing.assert_array_equal(same.params["head"]["classifier"]["kernel"],
                                  ckpt.params["head"]["classifier"]["kernel"])


def test_other_classes_of_the_same_count_get_a_new_head(vit_dir, caplog):
    """3 classes -> 3 other classes (say digits 0-2 -> 5-7): the old head knows nothing of them."""
    with caplog.at_level(logging.WARNING):
        other = load_hf(vit_dir, id2label={0: "x", 1: "y", 2: "z"})
    assert other.initialised == ["head/classifier/bias", "head/classifier/kernel"]
    assert other.id2label[2] == "z" and "head/classifier/kernel" in caplog.text


def test_new_label_set_replaces_head_with_warning(vit_dir, caplog):
    with caplog.at_level(logging.WARNING):
        ckpt = load_hf(vit_dir, num_labels=5)
    assert ckpt.initialised == ["head/classifier/bias", "head/classifier/kernel"]
    assert "head/classifier/kernel" in caplog.text and "ViTForImageClassification" in caplog.text
    assert ckpt.id2label == {i: f"LABEL_{i}" for i in range(5)}
    assert ckpt.params["head"]["classifier"]["kernel"].shape == (32, 5)


def test_param_paths_are_readable_and_complete():
    spec = ViTSpec(family="dinov2", image_size=32, patch_size=8, hidden_size=32, num_layers=12, num_heads=4,
                   mlp_dim=64, layer_scale_init=1.0, use_mask_token=True)
    paths = [row.flax for row in hf_names.FAMILIES["dinov2"].backbone_rows(spec)]
    assert "encoder/layer_07/attention/query/kernel" in paths and "layernorm/scale" in paths
    assert "embeddings/patch_embeddings/kernel" in paths and len(paths) == len(set(paths))


def test_table_kinds_invert():
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 5))
    for name, kind in hf_names.KINDS.items():
        y = {"conv": x, "token": x[0, 0, 0]}.get(name, x[0, 0])
        np.testing.assert_array_equal(kind.to_hf(kind.to_flax(y)), y)


def test_posemb_resize_keeps_prefix_and_identity():
    posemb = np.random.default_rng(0).standard_normal((1, 2 + 12, 8)).astype(np.float32)
    out = resize_posemb(posemb, 2, (3, 4), (5, 6))
    assert out.shape == (1, 32, 8)
    np.testing.assert_array_equal(out[:, :2], posemb[:, :2])
    np.testing.assert_allclose(interpolation_matrix(7, 7), np.eye(7), atol=1e-12)
    np.testing.assert_allclose(interpolation_matrix(4, 9, "bilinear").sum(1), 1.0)
    with pytest.raises(ValueError, match="prefix token"):
        resize_posemb(posemb, 1, (3, 4), (5, 6))


def test_spec_hf_config_round_trip():
    for spec in [ViTSpec(), ViTSpec(family="deit", distillation_token=True, image_size=(224, 320)),
                 ViTSpec(family="dinov2", patch_size=14, image_size=518, hidden_size=1536, num_heads=24,
                         num_layers=40, mlp_dim=6144, layer_norm_eps=1e-6, layer_scale_init=1.0, use_swiglu=True,
                         use_mask_token=True)]:
        assert ViTSpec.from_hf_config(spec.to_hf_config()) == spec


# --- errors a user can act on -------------------------------------------------------------------------

def test_missing_folder_and_files(tmp_path, vit_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nope")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.json").write_text((vit_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="model.safetensors not found.*save_pretrained"):
        load_pretrained(tmp_path / "partial")


def test_hub_id_not_cached_offline():
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        load_pretrained("vitjax-tests/not-a-real-model")


def test_unsupported_model_type(tmp_path, vit_dir):
    config = json.loads((vit_dir / "config.json").read_text())
    config["model_type"] = "swin"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((vit_dir / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"model_type='swin' is not supported.*'dinov2_with_registers'.*timm"):
        load_pretrained(tmp_path)


def _copy_with(tmp_path, vit_dir, edit_tensors=None, edit_config=None):
    config = json.loads((vit_dir / "config.json").read_text())
    tensors = load_file(vit_dir / "model.safetensors")
    if edit_tensors:
        edit_tensors(tensors)
    if edit_config:
        edit_config(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    return tmp_path


def test_missing_tensor_is_named(tmp_path, vit_dir):
    name = "vit.encoder.layer.1.attention.attention.key.weight"
    folder = _copy_with(tmp_path, vit_dir, edit_tensors=lambda t: t.pop(name))
    with pytest.raises(KeyError, match=rf"no tensor '{name}'.*encoder/layer_01/attention/key/kernel"):
        load_pretrained(folder)


def test_misshaped_tensor_is_named(tmp_path, vit_dir):
    def shrink(tensors):
        tensors["vit.encoder.layer.0.intermediate.dense.weight"] = np.zeros((48, 32), np.float32)

    with pytest.raises(ValueError, match=r"intermediate\.dense\.weight' has shape \(48, 32\).*mlp/fc1/kernel"):
        load_pretrained(_copy_with(tmp_path, vit_dir, edit_tensors=shrink))


def test_num_labels_conflicting_with_id2label(vit_dir):
    with pytest.raises(ValueError, match="num_labels=4 conflicts with id2label, which has 2 labels"):
        load_pretrained(vit_dir, num_labels=4, id2label={0: "x", 1: "y"})
    with pytest.raises(ValueError, match="id2label keys must be 0..1"):
        load_pretrained(vit_dir, id2label={0: "x", 5: "y"})


def test_backbone_only_without_labels(tmp_path):
    make("ViTModel", "ViTConfig", **VIT).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no classification head.*num_labels"):
        load_pretrained(tmp_path)


def test_bfloat16_and_base_dinov2_checkpoints(tmp_path):
    """A bfloat16 safetensors file (numpy cannot read it) and a Dinov2Model (no prefix, mask token, no head)."""
    model = make("ViTForImageClassification", "ViTConfig", **VIT, num_labels=3)
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    ckpt = load_hf(tmp_path / "bf16")
    assert ckpt.initialised == [] and ckpt.params["backbone"]["layernorm"]["scale"].dtype == np.float32
    make("Dinov2Model", "Dinov2Config", **TINY, image_size=32, mlp_ratio=2).save_pretrained(tmp_path / "dino")
    dino = load_hf(tmp_path / "dino", num_labels=2)
    assert dino.pooling == "cls_mean" and dino.params["head"]["classifier"]["kernel"].shape == (64, 2)
    assert dino.params["backbone"]["embeddings"]["mask_token"].shape == (1, 32)


def test_hub_id_goes_through_hf_hub_download(vit_dir, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename):
        calls.append((repo_id, filename))
        path = vit_dir / filename
        if not path.exists():
            raise huggingface_hub.errors.LocalEntryNotFoundError(f"{filename} not cached")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    clf = load_pretrained("google/vit-tiny-test")
    assert [f for _, f in calls] == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert {r for r, _ in calls} == {"google/vit-tiny-test"} and clf.id2label[0] == "a"

