"""Splits: stratified, seeded, stable across runs; carving only what is missing; the audit file."""
import json
import os

import numpy as np
import pytest

from test_data_fakes import data_config, make_folder
from vitjax.data.records import ArraySource
from vitjax.data.sources import open_source
from vitjax.data.splits import SPLIT_FILE, resolve_splits, stratified_split, write_split


def test_stratified_split_proportions_disjoint_and_complete():
    labels = np.repeat(np.arange(5), [100, 50, 30, 11, 3])
    parts = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    assert [len(p) for p in parts] == [155, 20, 19]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))
    for c, n in enumerate([100, 50, 30, 11, 3]):
        counts = [int((labels[p] == c).sum()) for p in parts]
        assert all(abs(k - n * f) <= 1 for k, f in zip(counts, (0.8, 0.1, 0.1))), (c, counts)


def test_stratified_split_is_seeded_and_stable():
    labels = np.random.default_rng(1).integers(0, 4, 500)
    a = stratified_split(labels, (0.8, 0.1, 0.1), seed=3)
    b = stratified_split(labels.copy(), (0.8, 0.1, 0.1), seed=3)
    c = stratified_split(labels, (0.8, 0.1, 0.1), seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    # Golden values: the split must not change between versions (resumed runs rely on it).
    assert a[1][:8].tolist() == [10, 23, 24, 37, 40, 82, 94, 95]
    assert [len(x) for x in a] == [400, 50, 50]


def test_only_missing_splits_are_carved(tmp_path):
    root = make_folder(str(tmp_path), {"train": {"a": 9, "b": 9}, "test": {"a": 1, "b": 1}})
    ds = open_source(data_config(source=root))
    assert ds.origin["test"] == "test" and len(ds.splits["test"]) == 2
    # Validation gets 0.1 / (0.8 + 0.1) of train.
    assert len(ds.splits["validation"]) == 2 and len(ds.splits["train"]) == 16
    assert set(ds.splits["train"].ids()).isdisjoint(ds.splits["validation"].ids())


def test_split_is_identical_on_reopen_and_audit_file(tmp_path):
    root = make_folder(str(tmp_path / "data"), {"": {"a": 10, "b": 10}})
    cfg = data_config(source=root, split_seed=7)
    first, second = open_source(cfg), open_source(cfg)
    for name in ("train", "validation", "test"):
        assert first.splits[name].ids() == second.splits[name].ids()
    path = write_split(str(tmp_path / "run"), first)
    assert os.path.basename(path) == SPLIT_FILE
    audit = json.load(open(path))
    assert audit["class_names"] == ["a", "b"]
    assert audit["splits"]["validation"]["ids"] == first.splits["validation"].ids()
    assert audit["splits"]["validation"]["per_class"] == {"a": 1, "b": 1}
    assert "carved, seed 7" in audit["splits"]["test"]["origin"]
    assert write_split(str(tmp_path / "run"), second) == path  # resumed run: same split, accepted
    other = open_source(data_config(source=root, split_seed=8))
    assert other.splits["validation"].ids() != first.splits["validation"].ids()
    with pytest.raises(ValueError, match=r"data split differs .*data_split.json \(splits/train, splits/validation"):
        write_split(str(tmp_path / "run"), other)


def test_empty_split_and_too_few_images():
    images = np.zeros((3, 4, 4, 3), np.uint8)
    raw = {"train": ArraySource("t", images, [0, 1, 0]), "test": ArraySource("x", images[:0], [])}
    with pytest.raises(ValueError, match=r"split 'test' has no images.*test_split"):
        resolve_splits("demo", raw, ["a", "b"], data_config())
    with pytest.raises(ValueError, match=r"carving '(validation|test)' out of 3 training images.*leaves it empty"):
        resolve_splits("demo", {"train": raw["train"]}, ["a", "b"], data_config())
    with pytest.raises(ValueError, match=r"outside the 2 classes.*t\[1\] with label 5"):
        resolve_splits("demo", {"train": ArraySource("t", images, [0, 5, 0])}, ["a", "b"], data_config())


def _shown_by_masks(root, image_path):
    from PIL import Image
    mask = np.asarray(Image.open(os.path.join(root, "masks", os.path.basename(image_path)[:-4] + ".png")))
    return set(np.unique(mask).tolist())


def test_dense_and_multilabel_splits_count_the_classes_each_image_shows(tmp_path, caplog):
    """data_split.json's per-class counts are the images showing each class — a mask's classes, the
    classes of an image's boxes, a multi-label image's labels — where those records' `labels()` are
    strata only; and no class is warned missing from splits full of it."""
    import logging

    from dense_helpers import coco_folder, segmentation_folder
    from train_helpers import csv_folder
    from vitjax.registry import get_task, task_config

    masks = segmentation_folder(str(tmp_path / "masks"), count=30, size=16)
    boxes = coco_folder(str(tmp_path / "boxes"), count=30, size=16)
    labelled = csv_folder(str(tmp_path / "multilabel"), count=30)
    with open(os.path.join(boxes, "annotations.json"), encoding="utf-8") as f:
        coco = json.load(f)
    box_classes = {os.path.join(boxes, image["file_name"]): {a["category_id"] - 1 for a in coco["annotations"]
                                                             if a["image_id"] == image["id"]}
                   for image in coco["images"]}
    with open(os.path.join(labelled, "labels.csv"), encoding="utf-8") as f:
        label_lists = {os.path.join(labelled, line.partition(",")[0]): line.partition(",")[2].split(";")
                       for line in f.read().split()[1:]}
    cases = {  # task, source, its config.task overrides -> the class indices an image id shows
        "segmentation": (f"folder:{masks}", {}, lambda i: _shown_by_masks(masks, i)),
        "detection": (f"coco:{boxes}", {}, lambda i: box_classes[i]),
        "classification": (f"folder:{labelled}", {"multilabel": True},
                           lambda i: {["blue", "red"].index(n) for n in label_lists[i] if n}),
    }
    for task, (source, knobs, shown) in cases.items():
        data_cfg = data_config()
        data_cfg.source = source
        config = task_config(task)
        config.update(knobs)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            dataset = get_task(task).open_source(data_cfg, config)
        assert "has no images of the classes" not in caplog.text, task
        with open(write_split(str(tmp_path / task), dataset), encoding="utf-8") as f:
            recorded = json.load(f)
        for split in recorded["splits"].values():
            truth = [sum(c in shown(os.path.realpath(i)) for i in split["ids"])
                     for c in range(len(recorded["class_names"]))]
            assert list(split["per_class"].values()) == truth, (task, split["per_class"], truth)
        assert min(recorded["splits"]["train"]["per_class"].values()) > 0  # every class shown
