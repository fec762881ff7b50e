"""What the model looks at (`vitjax.explain`), checked against what we did not write:

- attention rollout equals a rollout computed in torch from transformers' own attention
  probabilities (`output_attentions=True`) of the same tiny checkpoint (ViT: the CLS row; DINOv2:
  the CLS and patch-mean rows its CLS + mean head reads; DeiT with teacher: the CLS and distillation rows);
- integrated gradients are complete: the attributions add up to the logit's change from the black
  image (the method's axiom, the gradients JAX's);
- on a synthetic set where a coloured object pasted at a known patch on grey clutter decides the
  class, a tiny ViT trained a few hundred steps (CPU, seconds) puts the maps' mass inside the box
  far above chance (>= 2x its area fraction on average) for both methods; the numbers are printed
  (`EXPLAIN ...` lines, `pytest -s`);
- `--mode predict --explain` writes one PNG per image, with matplotlib's colormap as a colorbar in
  it, and predictions.json names each; every overlay has labelled axes (`figure_checks`); multi-label models explain their top label; a task without
  class logits is refused, naming the tasks that have them.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import pytest
import torch
from PIL import Image

from deploy_helpers import native_model_folder
from figure_checks import assert_every_png_labelled, recorded_figures
from hf_oracle import TINY, make, pixels, rel_err, report
from vitjax import explain
from vitjax.api import Classifier, load_pretrained
from vitjax.errors import BadValue
from vitjax.models.vit import ViTSpec
from vitjax.trained import load_trained

ROLLOUT_CASES = {  # transformers class, config class, extra config, the rows the head reads
    "vit": ("ViTForImageClassification", "ViTConfig", dict(intermediate_size=64), "cls"),
    "dinov2": ("Dinov2ForImageClassification", "Dinov2Config", dict(mlp_ratio=2), "cls_mean"),
    "deit": ("DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(intermediate_size=64), "cls_distillation"),
}


def _torch_rollout(attentions, rows: str) -> np.ndarray:
    """Abnar & Zuidema's rollout written independently in torch over transformers' attentions."""
    tokens = attentions[0].shape[-1]
    eye = torch.eye(tokens, dtype=torch.float64)
    rollout = eye.expand(attentions[0].shape[0], tokens, tokens)
    for layer in attentions:
        a = 0.5 * layer.double().mean(dim=1) + 0.5 * eye  # the paper's 0.5 W + 0.5 I (rows sum to 1)
        rollout = torch.bmm(a, rollout)
    prefix = 2 if rows == "cls_distillation" else 1
    row = {"cls": lambda: rollout[:, 0], "cls_mean": lambda: (rollout[:, 0] + rollout[:, 1:].mean(dim=1)) / 2,
           "cls_distillation": lambda: (rollout[:, 0] + rollout[:, 1]) / 2}[rows]()
    patches = row[:, prefix:]
    return (patches / patches.sum(dim=-1, keepdim=True)).numpy()


@pytest.mark.parametrize("case", sorted(ROLLOUT_CASES))
def test_rollout_matches_a_torch_rollout_of_transformers_attentions(case, tmp_path):
    cls_name, config_name, extra, rows = ROLLOUT_CASES[case]
    model = make(cls_name, config_name, **TINY, **extra, image_size=32, num_labels=3,
                 attn_implementation="eager")
    model.save_pretrained(tmp_path)
    clf = load_pretrained(tmp_path)
    x = pixels(2, 32, 32, seed=1)
    with torch.no_grad():
        attentions = model(torch.from_numpy(x), output_attentions=True).attentions
    assert len(attentions) == TINY["num_hidden_layers"]
    images = jnp.asarray(x.transpose(0, 2, 3, 1))
    ours = jax.jit(functools.partial(explain.maps, clf.model, clf.spec))(clf.params, images, jnp.zeros_like(images))
    theirs = _torch_rollout(attentions, rows)
    error = rel_err(np.asarray(ours["rollout"]).reshape(2, -1), theirs)
    report(f"rollout_{case}", rollout=error)
    assert error < 1e-5, error


# ---- the known-region check ---------------------------------------------------------------------

SIZE, PATCH = 32, 8
GRID = SIZE // PATCH
COLOURS = np.array([[230, 40, 40], [40, 200, 40], [40, 60, 230]], np.uint8)  # the object's colour = the class


def _synthetic(n: int, seed: int):
    """Grey clutter (noise and grey rectangles of any shade); an 8x8 object of the class's colour at a
    random patch cell. Returns (uint8 images, labels, the object's (row, column) cell)."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    labels = rng.integers(0, len(COLOURS), n)
    cells = rng.integers(0, GRID, (n, 2))
    for i in range(n):
        grey = rng.integers(60, 200, (SIZE, SIZE)).astype(np.float32)
        for _ in range(6):
            y, x = rng.integers(0, SIZE - 4, 2)
            h, w = rng.integers(3, 12, 2)
            grey[y:y + h, x:x + w] = rng.integers(0, 256)
        image = np.repeat(grey[..., None], 3, axis=-1)
        y0, x0 = cells[i] * PATCH
        image[y0:y0 + PATCH, x0:x0 + PATCH] = COLOURS[labels[i]] * rng.uniform(0.7, 1.0)
        images[i] = image
    return images, labels, cells


@pytest.fixture(scope="module")
def trained_on_boxes():
    """A 2-block ViT (D=32) trained from scratch on the synthetic set: 300 Adam steps of 64 images."""
    spec = ViTSpec(image_size=SIZE, patch_size=PATCH, hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64)
    trained = Classifier.from_scratch(spec, {i: f"colour{i}" for i in range(len(COLOURS))}, seed=0).trained
    tx = optax.adam(1e-3)

    @jax.jit
    def step(params, state, images, labels):
        def loss(p):
            logits = trained.forward(p, trained.preprocessing.normalize(images))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    images, labels, _ = _synthetic(2048, seed=0)
    params, state = trained.params, tx.init(trained.params)
    for i in range(300):
        batch = np.random.default_rng(i).integers(0, len(images), 64)
        params, state = step(params, state, images[batch], labels[batch])
    return Classifier(trained).replace(params=jax.device_get(params)).trained


def test_maps_fall_inside_the_box_that_decides_the_class(trained_on_boxes):
    images, labels, cells = _synthetic(200, seed=1)
    explained = trained_on_boxes.explain([Image.fromarray(image) for image in images])
    predicted = np.array([e.class_index for e in explained])
    accuracy = float((predicted == labels).mean())
    assert accuracy >= 0.95, f"the tiny model did not learn the synthetic set: accuracy {accuracy}"
    logits = trained_on_boxes.outputs([Image.fromarray(image) for image in images])
    np.testing.assert_array_equal(predicted, logits.argmax(axis=-1))  # the class explained is the top one
    area = 1 / GRID ** 2
    for method in explain.METHODS:
        inside = np.array([e.maps[method][r, c] for e, (r, c) in zip(explained, cells)])
        ratio = float(inside.mean() / area)
        print(f"EXPLAIN {method}: accuracy {accuracy:.3f}, mean mass in the box {inside.mean():.3f}, "
              f"area fraction {area:.4f}, ratio {ratio:.2f}")
        assert ratio >= 2.0, (method, ratio)


def test_integrated_gradients_add_up_to_the_logit_change(trained_on_boxes):
    model, params = trained_on_boxes.model, trained_on_boxes.params
    images = trained_on_boxes.preprocessing.normalize(_synthetic(4, seed=2)[0])
    black = jnp.broadcast_to(trained_on_boxes.preprocessing.normalize(np.zeros((1, SIZE, SIZE, 3), np.uint8)),
                             images.shape)
    logit_of = lambda x: model.apply({"params": params}, x, train=False)[:, 0]
    attributions = explain.integrated_gradients(logit_of, images, black, 64)
    change = logit_of(images) - logit_of(black)
    total = attributions.reshape(4, -1).sum(axis=-1)
    assert np.allclose(total, change, rtol=0.05, atol=0.05 * float(jnp.abs(change).max())), (total, change)


# ---- the command line, multi-label, refusal ---------------------------------------------------------

_INFERNO = (np.asarray(matplotlib.colormaps["inferno"](np.linspace(0, 1, 256)))[:, :3] * 255)


def _colorbar_height(path) -> int:
    """The longest vertical run of pixels in the PNG whose colours are the inferno colormap's, running
    from its top (1) at the top to its bottom (0) further down: a colorbar, in pixels (0: none)."""
    image = np.asarray(Image.open(path).convert("RGB"), np.float64)
    distance = np.linalg.norm(image[..., None, :] - _INFERNO, axis=-1)  # [H, W, 256]
    index, close = distance.argmin(axis=-1), distance.min(axis=-1) < 8
    best = 0
    for x in range(image.shape[1]):
        rows = np.flatnonzero(close[:, x])
        if len(rows) > best and index[rows[0], x] > 230 and index[rows[-1], x] < 25 \
                and np.all(np.diff(index[rows, x]) <= 2):
            best = len(rows)
    return best


def test_predict_explain_writes_one_png_per_image_named_in_the_predictions(trained_on_boxes, tmp_path):
    model_dir = Classifier(trained_on_boxes).save_pretrained(str(tmp_path / "model"))
    photos = tmp_path / "photos"
    photos.mkdir()
    images, _, _ = _synthetic(3, seed=3)
    for i, image in enumerate(images):
        Image.fromarray(image).resize((48, 40)).save(photos / f"photo{i}.png")
    out = tmp_path / "out"
    cli = subprocess.run([sys.executable, "-m", "vitjax.main", "--mode", "predict", "--model", model_dir,
                          "--inputs", str(photos), "--output", str(out), "--explain"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"})
    assert cli.returncode == 0, cli.stderr[-3000:]
    records = json.loads((out / "predictions.json").read_text())
    assert [r["explanation"] for r in records] == [str(out / f"photo{i}_explain.png") for i in range(3)]
    assert sorted(p for p in os.listdir(out) if p.endswith(".png")) == [f"photo{i}_explain.png" for i in range(3)]
    for record in records:
        assert _colorbar_height(record["explanation"]) >= 100, record["explanation"]
    plain = tmp_path / "plain"  # without --explain: no PNG, no "explanation"
    records = Classifier(trained_on_boxes).trained.predict([str(photos / "photo0.png")], str(plain))
    assert "explanation" not in records[0] and os.listdir(plain) == ["predictions.json"]


def test_multilabel_explains_its_top_label_and_dense_tasks_are_refused(tmp_path):
    names = ["cat", "dog", "bird"]
    trained = load_trained(native_model_folder(tmp_path / "ml", {"name": "classification", "plugins": [],
                                                                  "multilabel": True}, names))
    photos = [Image.fromarray(image) for image in _synthetic(3, seed=4)[0]]
    with recorded_figures() as saved:
        explained = trained.explain(photos, str(tmp_path / "ml_out"), ["a", "b", "c"])
    assert len(assert_every_png_labelled(str(tmp_path / "ml_out"), saved)) == 3
    top = trained.outputs(photos).argmax(axis=-1)
    assert [e.class_name for e in explained] == [names[i] for i in top]
    assert all(os.path.isfile(e.file) for e in explained)

    segmentation = load_trained(native_model_folder(tmp_path / "seg", {"name": "segmentation", "plugins": []},
                                                    ["background", "thing"]))
    with pytest.raises(BadValue, match=r"task 'segmentation' has no class logits.*: classification"):
        segmentation.explain(photos)
    with pytest.raises(BadValue, match="task 'segmentation' has no class logits"):
        segmentation.predict([], str(tmp_path / "never"), explain=True)
    assert not os.path.exists(tmp_path / "never")


class _Records:
    """A split's record source as the report page reads it: records[i]["image"], describe(i)."""

    def __init__(self, images):
        self.images = images

    def __getitem__(self, index):
        if self.images[index] is None:
            raise OSError("gone")
        return {"image": self.images[index]}

    def describe(self, index):
        return f"record {index}"


def test_the_report_gallery_gets_an_overlay_per_explained_entry(trained_on_boxes, tmp_path):
    images = list(_synthetic(5, seed=5)[0]) + [None]  # the last record's file is gone
    sections = [{"title": "Mistakes", "gallery": [{"index": i, "caption": "c"} for i in (4, 1, 5, 0)]},
                {"title": "Confused", "gallery": [{"index": 1, "caption": "c"}, {"index": 3, "image": "own.png"}]},
                {"title": "Text only", "text": "no gallery"}]
    with recorded_figures() as saved:
        out = explain.gallery_overlays(trained_on_boxes, sections, _Records(images), str(tmp_path), limit=3)
    assert len(assert_every_png_labelled(str(tmp_path), saved)) == 2
    assert [[e.get("image") for e in s.get("gallery", ())] for s in out] == [
        ["explain/4_explain.png", "explain/1_explain.png", None, None], ["explain/1_explain.png", "own.png"], []]
    assert sorted(os.listdir(tmp_path / "explain")) == ["1_explain.png", "4_explain.png"]  # once per record
    assert out[2] == sections[2]
    segmentation = type("Trained", (), {"task": type("Task", (), {"class_logits": False})()})()
    assert explain.gallery_overlays(segmentation, sections, _Records(images), str(tmp_path)) == sections
