"""Parity with transformers: tiny random HF checkpoints saved to disk, loaded by vitjax, same logits and
CLS hidden state within 1e-4 relative error in float32 (ViT, DeiT, DINOv2, backbone-only, ViT-B/16 dims)."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hf_oracle import TINY, make, pixels, rel_err, report, torch_forward
from vitjax.api import load_pretrained
from vitjax.models.vit import ViT

TOL = 1e-4


def _ours(clf, x):
    """(logits, CLS hidden state, feature dict) from one jitted float32 forward."""
    backbone = jax.jit(lambda p, images: ViT(clf.spec).apply({"params": p}, images, train=False))
    features = backbone(clf.params["backbone"], jnp.asarray(x.transpose(0, 2, 3, 1)))
    logits = clf.model.head.apply({"params": clf.params["head"]}, features)
    return np.asarray(logits), np.asarray(features["cls"]), features


def _check(name, clf, model, base, x, **forward_kwargs):
    logits, cls, _ = _ours(clf, x)
    ref_logits = torch_forward(model, x, **forward_kwargs).logits.numpy()
    ref_cls = torch_forward(base, x, **forward_kwargs).last_hidden_state[:, 0].numpy()
    errors = dict(logits=rel_err(logits, ref_logits), cls=rel_err(cls, ref_cls))
    report(name, **errors)
    assert max(errors.values()) < TOL, errors


VIT_CASES = {
    "vit_square_3labels": dict(image_size=32, intermediate_size=64, num_labels=3),
    "vit_no_qkv_bias_nonsquare_2labels": dict(image_size=[32, 48], intermediate_size=64, num_labels=2,
                                              qkv_bias=False),
    "vit_patch4_3layers_5labels": dict(TINY, image_size=[24, 16], patch_size=4, num_hidden_layers=3,
                                       hidden_size=48, num_attention_heads=3, intermediate_size=96,
                                       num_labels=5, layer_norm_eps=1e-6),
}


@pytest.mark.parametrize("case", sorted(VIT_CASES))
def test_vit_parity(case, tmp_path):
    config = {**TINY, **VIT_CASES[case]}
    model = make("ViTForImageClassification", "ViTConfig", **config)
    model.save_pretrained(tmp_path)
    clf = load_pretrained(tmp_path)
    assert len(clf.id2label) == config["num_labels"]
    size = config["image_size"] if isinstance(config["image_size"], list) else [config["image_size"]] * 2
    _check(case, clf, model, model.vit, pixels(2, *size))


@pytest.mark.parametrize("teacher", [True, False])
def test_deit_parity(teacher, tmp_path):
    cls_name = "DeiTForImageClassificationWithTeacher" if teacher else "DeiTForImageClassification"
    model = make(cls_name, "DeiTConfig", **TINY, image_size=[32, 40], intermediate_size=64, num_labels=4)
    model.save_pretrained(tmp_path)
    clf = load_pretrained(tmp_path)
    assert clf.pooling == ("cls_distillation" if teacher else "cls")
    x = pixels(2, 32, 40)
    _check(f"deit_teacher={teacher}", clf, model, model.deit, x)
    _, _, features = _ours(clf, x)
    ref = torch_forward(model.deit, x).last_hidden_state[:, 1].numpy()
    assert rel_err(features["distillation"], ref) < TOL


@pytest.mark.parametrize("swiglu", [False, True])
def test_dinov2_parity(swiglu, tmp_path):
    # DINOv2 interpolates its position embeddings on every forward: run at a size other than config.image_size.
    model = make("Dinov2ForImageClassification", "Dinov2Config", **TINY, image_size=40, mlp_ratio=4,
                 num_labels=3, layerscale_value=0.5, use_swiglu_ffn=swiglu)
    model.save_pretrained(tmp_path)
    clf = load_pretrained(tmp_path)
    assert clf.pooling == "cls_mean"
    for size in [(40, 40), (32, 56)]:
        _check(f"dinov2_swiglu={swiglu}_input={size}", clf, model, model.dinov2, pixels(2, *size))


def test_backbone_only_checkpoint_gets_new_head(tmp_path, caplog):
    base = make("ViTModel", "ViTConfig", **TINY, image_size=32, intermediate_size=64)  # has a pooler: ignored
    base.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        clf = load_pretrained(tmp_path, id2label={0: "cat", 1: "dog", 2: "bird"})
    assert "head/classifier/kernel" in caplog.text and "newly initialized" in caplog.text
    assert clf.id2label == {0: "cat", 1: "dog", 2: "bird"}
    x = pixels(2, 32, 32)
    logits, cls, _ = _ours(clf, x)
    err = rel_err(cls, torch_forward(base, x).last_hidden_state[:, 0].numpy())
    report("vit_backbone_only_cls", cls=err)
    assert err < TOL and logits.shape == (2, 3)


def test_interpolate_pos_encoding_matches_transformers(tmp_path):
    """Fine-tuning at another resolution: load with image_size=48 (posemb resized once) vs HF at 48x48
    with interpolate_pos_encoding=True; ViT and DeiT (two prefix tokens)."""
    for cls_name, config_name, base in [("ViTForImageClassification", "ViTConfig", "vit"),
                                        ("DeiTForImageClassificationWithTeacher", "DeiTConfig", "deit")]:
        model = make(cls_name, config_name, **TINY, image_size=32, intermediate_size=64, num_labels=3)
        model.save_pretrained(tmp_path / base)
        clf = load_pretrained(tmp_path / base, image_size=48)
        assert clf.spec.image_size == (48, 48) and clf.preprocessing.input_size == (48, 48)
        assert clf.params["backbone"]["embeddings"]["position_embeddings"].shape[1] == 36 + (2 if base == "deit" else 1)
        _check(f"{base}_interpolate_pos_encoding_32to48", clf, model, getattr(model, base), pixels(2, 48, 48),
               interpolate_pos_encoding=True)


def test_bfloat16_compute_close_to_float32(tmp_path):
    model = make("ViTForImageClassification", "ViTConfig", **TINY, image_size=32, intermediate_size=64, num_labels=3)
    model.save_pretrained(tmp_path)
    x = pixels(2, 32, 32)
    f32 = load_pretrained(tmp_path).logits(x)
    bf16 = load_pretrained(tmp_path, dtype="bfloat16")
    assert jnp.dtype(bf16.model.backbone.dtype) == jnp.bfloat16
    assert all(p.dtype == np.float32 for p in jax.tree.leaves(bf16.params))
    err = rel_err(bf16.logits(x), f32)
    report("vit_bfloat16_vs_float32", logits=err)
    assert err < 5e-2


def test_full_size_vit_b16_shapes(tmp_path):
    """google/vit-base-patch16-224 dimensions (random weights, 1000 labels): the table at full size."""
    model = make("ViTForImageClassification", "ViTConfig", image_size=224, patch_size=16, hidden_size=768,
                 num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, num_labels=1000)
    model.save_pretrained(tmp_path)
    clf = load_pretrained(tmp_path)
    _check("vit_b16_224_full_size", clf, model, model.vit, pixels(1, 224, 224))
