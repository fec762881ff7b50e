"""The detection plugin: COCO-style mAP against hand-computed cases, target assignment, decoding,
boxes that follow the augmentation, COCO and HF sources, and training through the real trainer."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pycocotools.mask as coco_mask
import pytest
from PIL import Image

from dense_helpers import coco_folder, dense_config, shapes_scene, untrained_then_trained
from train_helpers import export_without_data
from vitjax import registry
from vitjax.data.config import default_config as data_default_config

registry.load_plugins()
from vitjax.tasks import detection  # noqa: E402 - registered by load_plugins above

CLASSES = ("red", "green", "blue")
NONE = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))


def dets(*rows):
    """(boxes, scores, classes) from (x0, y0, x1, y1, score, class) rows."""
    array = np.asarray(rows, np.float64).reshape(-1, 6)
    return array[:, :4], array[:, 4], array[:, 5].astype(int)


def truths(*rows):
    array = np.asarray(rows, np.float64).reshape(-1, 5)
    return array[:, :4], array[:, 4].astype(int)


def test_average_precision_matches_hand_computed_cases():
    """pycocotools computes it; these cases check what we hand it (boxes, ids, one area range)."""
    from pycocotools.cocoeval import COCOeval

    np.testing.assert_allclose(detection.IOU_THRESHOLDS, COCOeval(iouType="bbox").params.iouThrs)
    # Two truths; by score: hit, miss, hit. Precision 1 up to recall 1/2, then 2/3 (101-point COCO).
    ap = detection.average_precision(
        [dets((0, 0, 10, 10, .9, 0), (40, 40, 50, 50, .8, 0), (20, 20, 30, 30, .7, 0))],
        [truths((0, 0, 10, 10, 0), (20, 20, 30, 30, 0))], num_classes=1)
    np.testing.assert_allclose(ap[0], (51 + 50 * 2 / 3) / 101)
    # IoU 0.6 counts at thresholds .50, .55, .60 and misses at the seven above: mAP 0.3, mAP@.5 1.
    ap = detection.average_precision([dets((0, 0, 10, 6, .5, 0))], [truths((0, 0, 10, 10, 0))], num_classes=1)
    np.testing.assert_allclose(ap[0], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    # Across images: a wrong box scored .9 ranks above the hit scored .6; the second truth is missed.
    ap = detection.average_precision(
        [dets((0, 0, 10, 10, .6, 0)), dets((50, 50, 60, 60, .9, 0))],
        [truths((0, 0, 10, 10, 0)), truths((20, 20, 30, 30, 0))], num_classes=1)
    np.testing.assert_allclose(ap[0], 51 * 0.5 / 101)
    # A truth can be matched once: the duplicate is a false positive, after full recall here.
    ap = detection.average_precision([dets((0, 0, 10, 10, .9, 0), (0, 0, 10, 10, .8, 0))],
                                     [truths((0, 0, 10, 10, 0))], num_classes=1)
    np.testing.assert_allclose(ap[0], 1.0)
    # Class 1 has a truth and no detection (AP 0); class 2 has no truth (NaN); the wrong class misses.
    ap = detection.average_precision([dets((0, 0, 10, 10, .9, 2))], [truths((0, 0, 10, 10, 1))], num_classes=3)
    assert np.isnan(ap[0]).all() and (ap[1] == 0).all() and np.isnan(ap[2]).all()


def test_summary_averages_present_classes_and_skips_padding_rows():
    task = registry.get_task("detection")(ml_collections.ConfigDict(), CLASSES)
    boxes = np.array([[[0, 0, .5, .5], [0, 0, 0, 0]]] * 3)
    computed = {"loss": 1.0, "class_loss": .5, "box_loss": .5, "detections": {
        "pred_boxes": boxes, "pred_scores": np.array([[.9, .1]] * 3), "pred_classes": np.array([[0, 0]] * 3),
        "true_boxes": boxes, "true_classes": np.array([[0, 1], [0, 1], [1, 1]]),
        "true_valid": np.array([[True, True], [True, True], [True, False]]),
        "mask": np.array([True, True, False])}}
    summary = task.summarize(computed)
    # Class 0: both truths found (AP 1); class 1: its truths at (0,0,0,0) are never matched (AP 0).
    assert summary["map"] == pytest.approx(0.5) and summary["map50"] == pytest.approx(0.5)


def test_generalized_iou():
    giou = detection.generalized_iou(jnp.array([0., 0, 2, 2]), jnp.array([3., 0, 4, 2]))
    assert float(giou) == pytest.approx(0 - (8 - 6) / 8)


def test_targets_go_to_the_centre_cell_and_the_smallest_box_wins():
    task = registry.get_task("detection")(ml_collections.ConfigDict(), CLASSES)
    outputs = {"class_logits": jnp.zeros((1, 8, 8, 3)), "boxes": jnp.zeros((1, 8, 8, 4))}
    batch = {"image": np.zeros((1, 32, 32, 3), np.uint8),
             "boxes": np.array([[[0, 0, 8, 8], [2, 2, 6, 6], [16, 16, 32, 32]]], np.float32),
             "classes": np.array([[0, 1, 2]]), "box_valid": np.array([[True, True, False]])}
    class_targets, box_targets, positive = task._targets(outputs, batch)
    assert np.flatnonzero(positive[0]).tolist() == [9]  # the cell (1, 1) holding both centres
    np.testing.assert_array_equal(class_targets[0, 9], [1, 1, 0])
    np.testing.assert_allclose(box_targets[0, 9], np.array([2, 2, 6, 6]) / 32)


def test_decoding_keeps_local_peaks_only():
    task = registry.get_task("detection")(ml_collections.ConfigDict(), CLASSES)
    logits = jnp.full((1, 4, 4, 3), -9.0).at[0, 1, 1, 0].set(3.0).at[0, 1, 2, 0].set(2.0).at[0, 3, 3, 1].set(1.0)
    out = task.detections({"class_logits": logits, "boxes": jnp.zeros((1, 4, 4, 4))}, top_k=2)
    np.testing.assert_allclose(out["scores"][0], jax.nn.sigmoid(jnp.array([3.0, 1.0])))
    assert out["classes"][0].tolist() == [0, 1]  # (1, 2) is next to the stronger (1, 1): not a peak


def test_boxes_follow_crop_and_flip():
    rng = np.random.default_rng(3)
    image, _, boxes = shapes_scene(rng, size=48, max_objects=1)
    x0, y0, x1, y1, kind = boxes[0]
    record = {"image": image, "boxes": np.array([[x0, y0, x1, y1]], np.float32), "classes": np.array([kind]),
              "name": "scene"}
    augment = data_default_config().augment
    augment.crop_scale, augment.hflip = (0.5, 1.0), 0.5
    transforms = detection.BoxTransforms((24, 24), Image.Resampling.BILINEAR, augment, max_boxes=3)
    grey = np.array([110, 110, 110])
    for seed in range(6):
        example = transforms.train(record, np.random.default_rng(seed))
        assert example["box_valid"].tolist() in ([True, False, False], [False, False, False])
        coloured = np.abs(example["image"].astype(int) - grey).sum(-1) > 150
        if example["box_valid"][0]:
            bx0, by0, bx1, by1 = np.round(example["boxes"][0]).astype(int)
            inside = np.zeros_like(coloured)
            inside[by0:by1, bx0:bx1] = True
            assert coloured[inside].mean() > 0.5 and coloured[~inside].mean() < 0.05


def test_coco_folder_and_hf_objects_sources(tmp_path):
    data = coco_folder(str(tmp_path / "coco"), count=4)
    splits, names = detection.scan_coco(data)
    annotations = json.load(open(os.path.join(data, "annotations.json")))
    first = [a for a in annotations["annotations"] if a["image_id"] == 1]
    record = splits["train"][0]
    assert names == ["red", "green"] and len(splits["train"]) == 4
    x, y, w, h = first[0]["bbox"]
    np.testing.assert_allclose(record["boxes"][0], [x, y, x + w, y + h])
    assert record["classes"][0] == first[0]["category_id"] - 1

    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "objects": {
        "bbox": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
        "category": datasets.List(datasets.ClassLabel(names=["cat", "dog"]))}})
    dataset = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(np.zeros((10, 10, 3), np.uint8))],
         "objects": [{"bbox": [[1, 2, 3, 4]], "category": [1]}]}, features=features)
    task_cfg = registry.task_config("detection")
    splits, names = detection.from_hf(dataset, data_default_config(), task_cfg)
    record = splits["train"][0]
    assert names == ["cat", "dog"]
    np.testing.assert_allclose(record["boxes"], [[1, 2, 4, 6]])  # xywh -> xyxy
    assert record["classes"].tolist() == [1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("detection")
    data = coco_folder(str(root / "data"))
    config = dense_config("detection", f"coco:{data}", batch_size=16, epochs=12)
    return untrained_then_trained(config, root)


def test_training_raises_map_well_above_untrained(trained):
    untrained, results, workdir = trained
    test = results["metrics"]["test"]
    assert untrained["map50"] < 0.1 and untrained["map"] < 0.05
    assert test["map50"] > 0.6 and test["map"] > 0.3
    report = json.load(open(os.path.join(workdir, "test", "report.json")))
    assert [row["class"] for row in report["per_class"]] == ["red", "green"]


def test_evaluate_predict_and_export_modes(trained, tmp_path):
    """The trained run through every later mode, given only its workdir: evaluate reproduces the test
    mAP; predict lists boxes above `score_threshold` in the image's pixels that find the true shapes
    and draws them; export (with the data folder gone) loads back as a predictor like the original."""
    import vitjax
    from vitjax import modes

    _, results, workdir = trained
    summary = modes.evaluate(None, workdir, None, "test")
    assert summary["map"] == pytest.approx(results["metrics"]["test"]["map"], abs=1e-6)
    data = json.load(open(os.path.join(workdir, "config.json")))["data"]["source"].removeprefix("coco:")
    coco = json.load(open(os.path.join(data, "annotations.json")))
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = [os.path.join(data, image["file_name"]) for image in coco["images"][:8]]
    records = modes.predict(None, workdir, None, images, None, str(tmp_path / "out"))
    found = truths = 0
    for record, image in zip(records, coco["images"][:8]):
        assert all(d["score"] >= 0.3 for d in record["detections"])  # the default score_threshold
        for a in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = a["bbox"]
            same = [d["box"] for d in record["detections"] if d["label"] == names[a["category_id"]]]
            truths += 1
            found += bool(same) and coco_mask.iou([[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in same],
                                                 [[x, y, w, h]], [0]).max() >= 0.5
        assert Image.open(record["drawn"]).format == "PNG"  # its boxes and legend: test_report_tasks.py
    assert found / truths > 0.6
    exported = export_without_data(workdir, data, str(tmp_path / "exported"))
    ours, theirs = vitjax.load_trained(exported), vitjax.load_trained(os.path.join(workdir, "best_vitjax"))
    pixels = [Image.open(images[0]).convert("RGB")]
    for a, b in zip(jax.tree.leaves(ours.outputs(pixels)), jax.tree.leaves(theirs.outputs(pixels))):
        np.testing.assert_array_equal(a, b)
