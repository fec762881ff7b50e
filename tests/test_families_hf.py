"""Parity with transformers for the families beyond ViT/DeiT/DINOv2: DINOv2 with registers, SigLIP and CLIP
vision towers (vision-only and full two-tower checkpoints), and sharded safetensors. Random-weight tiny
models saved by transformers' save_pretrained; features and logits within 1e-4 relative (float32), at the
native size and at a new size (position embeddings resized as transformers interpolates them)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hf_oracle import make, pixels, rel_err, report, torch_forward
from vitjax.api import load_pretrained
from vitjax.models.vit import ViT

TOL = 1e-4
TOWER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
             patch_size=8)


def features(clf, x):
    apply = jax.jit(lambda p, images: ViT(clf.spec).apply({"params": p}, images, train=False))
    return jax.tree.map(np.asarray, apply(clf.params["backbone"], jnp.asarray(x.transpose(0, 2, 3, 1))))


def check(name, errors):
    report(name, **errors)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("size", [(32, 32), (48, 48), (40, 24)])
def test_dinov2_with_registers(size, tmp_path):
    """HF interpolates the posemb (antialiased bicubic) on every forward; so does vitjax's backbone."""
    model = make("Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig", hidden_size=32,
                 num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8, num_register_tokens=3,
                 layerscale_value=0.5, num_labels=3)
    model.save_pretrained(tmp_path)
    clf = load_pretrained(tmp_path)
    assert clf.pooling == "cls_mean" and clf.spec.num_registers == 3
    x = pixels(2, *size)
    ref = torch_forward(model.dinov2_with_registers, x).last_hidden_state.numpy()
    check(f"dinov2_with_registers_input={size}",
          dict(logits=rel_err(clf.logits(x), torch_forward(model, x).logits.numpy()),
               tokens=rel_err(features(clf, x)["tokens"], ref)))


def test_dinov2_with_registers_resized_at_load(tmp_path):
    model = make("Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig", hidden_size=32,
                 num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8, num_labels=3)
    model.save_pretrained(tmp_path)
    clf = load_pretrained(tmp_path, image_size=56)
    assert clf.params["backbone"]["embeddings"]["position_embeddings"].shape == (1, 1 + 49, 32)
    x = pixels(2, 56, 56)
    check("dinov2_with_registers_load_at_56", dict(logits=rel_err(clf.logits(x), torch_forward(model, x).logits.numpy())))


PREFIX = {"siglip": "Siglip", "clip": "CLIP"}


@pytest.mark.parametrize("kind", ["siglip", "clip"])
def test_vision_tower_features(kind, tmp_path):
    """SiglipVisionModel / CLIPVisionModel: last hidden state and pooled output (SigLIP's attention-pooling
    head, CLIP's post-layernormed CLS token), at 32 px and with the posemb interpolated to 48 px."""
    prefix = PREFIX[kind]
    tower = make(f"{prefix}VisionModel", f"{prefix}VisionConfig", **TOWER)
    tower.save_pretrained(tmp_path)
    for size in (32, 48):
        clf = load_pretrained(tmp_path, num_labels=2, image_size=size)
        x = pixels(2, size, size)
        ref = torch_forward(tower, x, interpolate_pos_encoding=size != 32)
        ours = features(clf, x)
        check(f"{kind}_vision_model_{size}px", dict(tokens=rel_err(ours["tokens"], ref.last_hidden_state.numpy()),
                                                    pooled=rel_err(ours["pooled"], ref.pooler_output.numpy())))


@pytest.mark.parametrize("kind", ["siglip", "clip"])
def test_image_classification_logits(kind, tmp_path):
    prefix = PREFIX[kind]
    model = make(f"{prefix}ForImageClassification", f"{prefix}Config", vision_config=TOWER, num_labels=3)
    model.save_pretrained(tmp_path)
    clf = load_pretrained(tmp_path)
    assert clf.pooling == "mean" and clf.spec.family == kind
    for size in (32, 48):
        clf = load_pretrained(tmp_path, image_size=size)
        x = pixels(2, size, size)
        ref = torch_forward(model, x, interpolate_pos_encoding=size != 32).logits.numpy()
        check(f"{kind}_for_image_classification_{size}px", dict(logits=rel_err(clf.logits(x), ref)))


@pytest.mark.parametrize("kind", ["siglip", "clip"])
def test_two_tower_checkpoint_loads_the_vision_tower(kind, tmp_path):
    """SiglipModel / CLIPModel (text tower and projections ignored): the vision tower's features."""
    prefix = PREFIX[kind]
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, vocab_size=99)
    model = make(f"{prefix}Model", f"{prefix}Config", vision_config=TOWER, text_config=text)
    model.save_pretrained(tmp_path)
    clf = load_pretrained(tmp_path, num_labels=4)
    x = pixels(2, 32, 32)
    ref = torch_forward(model.vision_model, x)
    ours = features(clf, x)
    check(f"{kind}_two_tower_vision", dict(tokens=rel_err(ours["tokens"], ref.last_hidden_state.numpy()),
                                           pooled=rel_err(ours["pooled"], ref.pooler_output.numpy())))


def test_sharded_safetensors(tmp_path):
    model = make("Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig", hidden_size=32,
                 num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8, num_labels=3)
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").exists()
    clf = load_pretrained(tmp_path)
    x = pixels(2, 32, 32)
    check("dinov2_with_registers_sharded", dict(logits=rel_err(clf.logits(x), torch_forward(model, x).logits.numpy())))


def test_unknown_formats_list_what_is_supported(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 32}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"neither `model_type`.*nor `architecture`.*'siglip_vision_model'.*timm.*\.npz"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "siglip2"}')
    with pytest.raises(ValueError, match=r"model_type='siglip2' is not supported.*fixed-resolution SigLIP 2"):
        load_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist.*npz"):
        load_pretrained(tmp_path / "missing.npz")


def test_sharded_hub_repo_downloads_the_index_and_its_shards(tmp_path, monkeypatch):
    import huggingface_hub

    model = make("Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig", hidden_size=32,
                 num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8, num_labels=3)
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    calls = []

    def fake_download(repo_id, filename):
        calls.append(filename)
        if not (tmp_path / filename).exists():
            raise huggingface_hub.errors.EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    clf = load_pretrained("facebook/dinov2-with-registers-tiny-test")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert calls[:3] == ["config.json", "model.safetensors", "model.safetensors.index.json"]
    assert sorted(calls[3:3 + len(shards)]) == shards
    x = pixels(1, 32, 32)
    assert rel_err(clf.logits(x), torch_forward(model, x).logits.numpy()) < TOL
