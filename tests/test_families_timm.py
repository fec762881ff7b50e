"""Parity with timm: tiny random timm ViTs saved by timm's own `save_for_hf` (config.json + safetensors),
loaded by vitjax; features (timm's `forward_features`) and logits within 1e-4 relative in float32, at the
native size and at a new size (timm re-creating the model at that size from the same file, which resamples
the position embeddings its own way). Also the `.npz` (AugReg) layout through timm's own npz loader, the
eval preprocessing against timm's `resolve_data_config` + `create_transform`, and the error for variants
vitjax does not implement."""
import json

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")
from timm.models import save_for_hf  # noqa: E402

from hf_oracle import pixels, rel_err, report  # noqa: E402
from test_families_hf import TOL, features  # noqa: E402
from vitjax.api import load_pretrained  # noqa: E402

TINY = dict(img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=4, num_classes=3)

CASES = {
    "vit_token": ("vit_tiny_patch16_224", {}),
    # timm resizes a non-square grid only in the forward of a dynamic_img_size model
    "vit_no_qkv_bias_nonsquare_dynamic": ("vit_tiny_patch16_224", dict(qkv_bias=False, img_size=(32, 48),
                                                                       dynamic_img_size=True)),
    "vit_reg_gap_fc_norm_layer_scale": ("vit_base_patch16_224", dict(reg_tokens=2, no_embed_class=True,
                                                                     global_pool="avg", fc_norm=True,
                                                                     class_token=False, init_values=0.1)),
    "vit_reg_embed_class": ("vit_base_patch16_224", dict(reg_tokens=3, init_values=0.5)),
    "vit_map_no_class_token": ("vit_base_patch16_siglip_224", dict(class_token=False, global_pool="map")),
    "clip_quickgelu_pre_norm": ("vit_base_patch16_clip_quickgelu_224", {}),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", {}),
}


def randomise(model):
    """Non-trivial norms, biases, tokens and layer scales so every table row is exercised."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1 or "token" in name or "latent" in name or "pos_embed" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def save_timm(path, architecture, **args):
    model = randomise(timm.create_model(architecture, pretrained=False, **{**TINY, **args}))
    save_for_hf(model, path, safe_serialization=True)
    return model


def timm_at(path, architecture, **args):
    """timm's own model re-created from the saved file (at another img_size, if given)."""
    model = timm.create_model(architecture, pretrained=True, **{**TINY, **args},
                              pretrained_cfg_overlay=dict(file=str(path / "model.safetensors"),
                                                          num_classes=TINY["num_classes"]))
    return model.eval()


def nchw(x):
    return torch.from_numpy(x)


@pytest.mark.parametrize("case", sorted(CASES))
def test_timm_parity(case, tmp_path):
    architecture, args = CASES[case]
    model = save_timm(tmp_path, architecture, **args)
    size = args.get("img_size", (32, 32))
    for new in (size, (48, 40)):
        clf = load_pretrained(tmp_path, image_size=new)
        dynamic = new == size or args.get("dynamic_img_size")
        reference = model if dynamic else timm_at(tmp_path, architecture, **{**args, "img_size": new})
        x = pixels(2, *new)
        with torch.no_grad():
            tokens = reference.forward_features(nchw(x)).numpy()
            logits = reference(nchw(x)).numpy()
        errors = dict(logits=rel_err(clf.logits(x), logits), tokens=rel_err(features(clf, x)["tokens"], tokens))
        report(f"timm_{case}_{new[0]}x{new[1]}", **errors)
        assert max(errors.values()) < TOL, errors


# timm's pooling x prefix tokens (pool_include_prefix=False, timm's default: avg and map pool the patches only)
POOLING_GRID = [(pool, cls, regs) for pool in ("token", "avg", "map") for cls in (True, False) for regs in (0, 2)
                if cls or pool != "token"]


def test_timm_pooling_prefix_parity(tmp_path):
    """Every global_pool x class_token x reg_tokens combination loads with timm's logits (MAP with a class
    token used to attend over the class token too: 10-16 % off)."""
    errors = {}
    for pool, cls, regs in POOLING_GRID:
        path = tmp_path / f"{pool}_{cls}_{regs}"
        model = save_timm(path, "vit_base_patch16_224", global_pool=pool, class_token=cls, reg_tokens=regs,
                          no_embed_class=not cls)
        x = pixels(2, 32, 32)
        with torch.no_grad():
            errors[f"{pool}_cls{int(cls)}_reg{regs}"] = rel_err(load_pretrained(path).logits(x),
                                                                 model(nchw(x)).numpy())
    report("timm_pooling_prefix_grid", **errors)
    assert max(errors.values()) < TOL, errors


def test_hub_layout_without_model_args(tmp_path):
    """timm's hub repos carry no model_args: heads come from the model-size name, size from pretrained_cfg."""
    model = save_timm(tmp_path, "vit_small_patch16_224", embed_dim=48, num_heads=6)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("model_args")
    (tmp_path / "config.json").write_text(json.dumps(config))
    clf = load_pretrained(tmp_path)
    assert clf.spec.num_heads == 6 and clf.pooling == "pooled"
    x = pixels(2, 32, 32)
    with torch.no_grad():
        err = rel_err(clf.logits(x), model(nchw(x)).numpy())
    report("timm_hub_layout_logits", logits=err)
    assert err < TOL


def test_new_labels_get_a_new_head(tmp_path):
    save_timm(tmp_path, "vit_tiny_patch16_224")
    clf = load_pretrained(tmp_path, id2label={0: "cat", 1: "dog"})
    assert clf.pooling == "pooled" and clf.params["head"]["classifier"]["kernel"].shape == (32, 2)


def test_unsupported_variant_is_named(tmp_path):
    save_timm(tmp_path, "vit_tiny_patch16_224", qk_norm=True)
    with pytest.raises(ValueError, match=r"model_args \{'qk_norm': True\} are not supported"):
        load_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architecture"] = "eva02_tiny_patch14_224"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"'eva02_tiny_patch14_224' is not supported.*vit_\*"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("crop_mode,size", [("center", (32, 32)), ("squash", (32, 32)), ("center", (32, 48))])
def test_preprocessing_matches_timm_transform(crop_mode, size, tmp_path):
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**TINY, "img_size": size})
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, *size), "crop_mode": crop_mode, "crop_pct": 0.875,
                            "interpolation": "bicubic", "mean": (0.481, 0.458, 0.408), "std": (0.269, 0.261, 0.276)}
    save_for_hf(model, tmp_path, safe_serialization=True)
    clf = load_pretrained(tmp_path)
    transform = create_transform(**resolve_data_config({}, model=model))
    rng = np.random.default_rng(0)
    for image_size in [(61, 47), (37, 90), (36, 36), (120, 33)]:
        image = Image.fromarray(rng.integers(0, 256, (*image_size, 3), dtype=np.uint8))
        ours = clf.preprocessing(image)[0]
        theirs = transform(image).numpy()
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=2e-6, rtol=0)


def _augreg_npz(path, depth=2, width=32, heads=4, mlp=64, patch=8, grid=4, classes=5):
    """Random weights under the vision_transformer/AugReg names (Flax layouts)."""
    rng = np.random.default_rng(0)
    r = lambda *shape: (0.2 * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
    hd = width // heads
    w = {"embedding/kernel": r(patch, patch, 3, width), "embedding/bias": r(width), "cls": r(1, 1, width),
         "Transformer/posembed_input/pos_embedding": r(1, 1 + grid * grid, width),
         "Transformer/encoder_norm/scale": 1 + r(width), "Transformer/encoder_norm/bias": r(width),
         "head/kernel": r(width, classes), "head/bias": r(classes)}
    for i in range(depth):
        b = f"Transformer/encoderblock_{i}"
        a = f"{b}/MultiHeadDotProductAttention_1"
        for name in ("query", "key", "value"):
            w[f"{a}/{name}/kernel"], w[f"{a}/{name}/bias"] = r(width, heads, hd), r(heads, hd)
        w[f"{a}/out/kernel"], w[f"{a}/out/bias"] = r(heads, hd, width), r(width)
        for n in ("LayerNorm_0", "LayerNorm_2"):
            w[f"{b}/{n}/scale"], w[f"{b}/{n}/bias"] = 1 + r(width), r(width)
        w[f"{b}/MlpBlock_3/Dense_0/kernel"], w[f"{b}/MlpBlock_3/Dense_0/bias"] = r(width, mlp), r(mlp)
        w[f"{b}/MlpBlock_3/Dense_1/kernel"], w[f"{b}/MlpBlock_3/Dense_1/bias"] = r(mlp, width), r(width)
    np.savez(path, **w)


def test_npz_matches_timm_npz_loader(tmp_path):
    path = tmp_path / "augreg.npz"
    _augreg_npz(path)
    args = dict(TINY, num_classes=5, mlp_ratio=2.0)
    for size in (32, 48):
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**args, "img_size": size}).eval()
        model.load_pretrained(str(path))  # timm's own .npz reader (resamples the posemb at 48)
        clf = load_pretrained(path, image_size=size)
        x = pixels(2, size, size)
        with torch.no_grad():
            errors = dict(logits=rel_err(clf.logits(x), model(nchw(x)).numpy()),
                          tokens=rel_err(features(clf, x)["tokens"], model.forward_features(nchw(x)).numpy()))
        report(f"npz_augreg_{size}px", **errors)
        assert max(errors.values()) < TOL, errors
