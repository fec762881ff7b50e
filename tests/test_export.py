"""Round trip: vitjax -> export_hf -> transformers loads it -> same logits; pipeline() agrees with predict()."""
import json
import logging
import os

import jax
import numpy as np
import pytest
import transformers
from PIL import Image

import vitjax
from hf_oracle import TINY, make, pixels, rel_err, report, torch_forward
from train_helpers import colour_folder, tiny_config
from vitjax import modes
from vitjax.api import Classifier, load_pretrained
from vitjax.checkpoints import hf_export
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.errors import BadValue
from vitjax.models.model import build_model
from vitjax.models.vit import ViTSpec

LABELS = {0: "apple", 1: "banana", 2: "cherry", 3: "date"}


def _randomise_head(clf, seed=0):
    rng = np.random.default_rng(seed)
    clf.params["head"] = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), clf.params["head"])
    return clf


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (rng.integers(20, 70), rng.integers(20, 70), 3), dtype=np.uint8))
            for _ in range(n)]


CASES = {
    "vit": ("ViTForImageClassification", "ViTConfig", dict(intermediate_size=64)),
    "deit_teacher": ("DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(intermediate_size=64)),
    "dinov2": ("Dinov2ForImageClassification", "Dinov2Config", dict(mlp_ratio=2)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_through_transformers(case, tmp_path):
    cls_name, config_name, extra = CASES[case]
    make(cls_name, config_name, **TINY, **extra, image_size=32, num_labels=4).save_pretrained(tmp_path / "src")
    clf = _randomise_head(load_pretrained(tmp_path / "src", id2label=LABELS))
    out = clf.save_pretrained(tmp_path / "export")
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["id2label"]["2"] == "cherry" and config["label2id"]["date"] == 3

    hf = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    assert type(hf).__name__ == cls_name
    x = pixels(2, 32, 32)
    err = rel_err(clf.logits(x), torch_forward(hf, x).logits.numpy())
    report(f"round_trip_{case}", logits=err)
    assert err < 1e-4

    # vitjax reloads its own export identically.
    again = load_pretrained(out)
    assert again.id2label == LABELS and again.pooling == clf.pooling
    np.testing.assert_allclose(again.logits(x), clf.logits(x), rtol=1e-6, atol=1e-6)


def test_pipeline_top_label_matches_predict(tmp_path):
    make("ViTForImageClassification", "ViTConfig", **TINY, intermediate_size=64, image_size=32,
         num_labels=4).save_pretrained(tmp_path / "src")
    clf = _randomise_head(load_pretrained(tmp_path / "src", id2label=LABELS), seed=3)
    clf.save_pretrained(tmp_path / "export")
    # vitjax follows transformers' PIL backend; with torchvision installed the default backend differs slightly.
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "export", backend="pil")
    pipe = transformers.pipeline("image-classification", model=str(tmp_path / "export"), image_processor=processor)
    images = _images(4)
    ours = clf.predict(images, top_k=2)
    for image, predicted in zip(images, ours):
        theirs = pipe(image, top_k=2)
        assert theirs[0]["label"] == predicted[0][0]
        assert abs(theirs[0]["score"] - predicted[0][1]) < 1e-4
    paths = []
    for i, image in enumerate(images[:2]):
        paths.append(tmp_path / f"img{i}.png")
        image.save(paths[-1])
    assert [p[0][0] for p in clf.predict(paths)] == [p[0][0] for p in ours[:2]]


def test_from_scratch_exports_and_reloads(tmp_path):
    spec = ViTSpec(image_size=(16, 24), patch_size=8, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32)
    clf = Classifier.from_scratch(spec, {0: "zero", 1: "one"}, Preprocessing.default((16, 24)), seed=1)
    clf = _randomise_head(clf)
    clf.save_pretrained(tmp_path / "scratch")
    hf = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "scratch").eval()
    x = pixels(1, 16, 24)
    assert rel_err(clf.logits(x), torch_forward(hf, x).logits.numpy()) < 1e-4


def test_export_is_atomic(tmp_path, monkeypatch):
    spec = ViTSpec(image_size=16, patch_size=8, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32)
    clf = Classifier.from_scratch(spec, {0: "a", 1: "b"})
    target = tmp_path / "best"
    clf.save_pretrained(target)
    before = (target / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hf_export, "save_file", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        clf.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == before  # the previous export is untouched
    assert sorted(os.listdir(tmp_path)) == ["best"]  # no staging folder left behind
    monkeypatch.undo()
    clf.save_pretrained(target)  # overwriting an export replaces it whole
    assert sorted(os.listdir(tmp_path)) == ["best"]


def test_a_head_the_family_class_cannot_pool_is_not_written_as_that_class(tmp_path, caplog):
    """A ViT run with config.task.pooling='mean' was once exported as ViTForImageClassification,
    which pools the CLS token (transformers then disagreed with vitjax): `save_pretrained` refuses
    it, and training and --mode export write `best_vitjax/` (still mean-pooled), naming the key."""
    spec = ViTSpec(image_size=16, patch_size=4, hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64)
    mean = Classifier.of(build_model(spec, 2, "mean"), Classifier.from_scratch(spec, {0: "a", 1: "b"}).params,
                         Preprocessing.default(16), spec, {0: "a", 1: "b"})
    with pytest.raises(BadValue, match=r"config\.task\.pooling='mean'; ViTForImageClassification pools 'cls'"):
        mean.save_pretrained(tmp_path / "refused")
    assert not (tmp_path / "refused").exists()

    config = tiny_config(f"folder:{colour_folder(str(tmp_path / 'colours'), per_class=4, size=16)}",
                         batch_size=8, epochs=1)
    config.task.pooling = "mean"
    workdir = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        results = modes.train(config, str(workdir))
    assert "config.task.pooling='mean'" in caplog.text and "best_vitjax instead" in caplog.text
    assert not (workdir / "best").exists()
    assert vitjax.load_trained(workdir).model.head.pooling == "mean"
    assert modes.evaluate(None, str(workdir), None, "test") == pytest.approx(results["metrics"]["test"])
    assert modes.export(None, str(workdir), None) == str(workdir / "best_vitjax")
