"""Multi-label data: label lists from an HF Sequence(ClassLabel) column or a folder's labels.csv become
multi-hot batches, and classification with `multilabel=True` trains on them through the trainer."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from train_helpers import csv_folder, export_without_data, tiny_config
from vitjax import modes
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data import multilabel, pipeline
from vitjax.data.config import default_config as data_default_config


def test_hf_sequence_of_class_labels_becomes_multi_hot():
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(),
                                  "labels": datasets.List(datasets.ClassLabel(names=["a", "b", "c"]))})
    image = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    dataset = datasets.Dataset.from_dict({"image": [image, image], "labels": [[0, 2], []]}, features=features)
    data_cfg = data_default_config()
    splits, names = multilabel.from_hf(dataset, data_cfg)
    assert names == ["a", "b", "c"]
    transforms = multilabel.multi_hot_transforms(Preprocessing.default(4), data_cfg, 3)
    evaluated = next(iter(pipeline.eval_batches(splits["train"], Preprocessing.default(4), batch_size=2,
                                                record_transforms=transforms)))
    assert evaluated["label"].tolist() == [[1, 0, 1], [0, 0, 0]]
    example = next(pipeline.train_iterator(splits["train"], Preprocessing.default(4), data_cfg, batch_size=2,
                                           seed=0, record_transforms=transforms))
    assert sorted(example["label"].tolist()) == [[0, 0, 0], [1, 0, 1]]
    assert example["image"].shape == (2, 4, 4, 3)


def test_multilabel_classification_trains_from_a_csv_folder(tmp_path):
    data = csv_folder(str(tmp_path / "data"))
    config = tiny_config(f"folder:{data}", batch_size=16, epochs=8)
    config.task.multilabel = True
    results = modes.train(config, str(tmp_path / "run"))
    assert results["class_names"] == ["blue", "red"]
    test = results["metrics"]["test"]
    assert test["accuracy"] >= 0.8  # exact match; the zero-initialised head predicts both labels: ~0.25
    assert test["mean_average_precision"] > 0.9
    workdir = str(tmp_path / "run")
    summary = modes.evaluate(None, workdir, None, "test")
    assert summary["mean_average_precision"] == pytest.approx(test["mean_average_precision"], abs=1e-6)
    exported = export_without_data(workdir, data, str(tmp_path / "exported"))
    assert json.load(open(os.path.join(exported, "config.json"))) == \
        json.load(open(os.path.join(workdir, "best", "config.json")))
    check_export_and_predict(workdir, data, tmp_path / "predictions")


def check_export_and_predict(workdir: str, data: str, outdir):
    """transformers reads the export as multi-label (so it applies sigmoids), and --mode predict gives
    transformers' sigmoid probabilities, listing every label at or above 0.5 (never a softmax)."""
    import torch
    import transformers

    best = os.path.join(workdir, "best")
    hf_config = transformers.AutoConfig.from_pretrained(best)
    assert hf_config.problem_type == "multi_label_classification"
    assert hf_config.label2id == {"blue": 0, "red": 1}
    images = [os.path.join(data, f"{i:03d}.png") for i in range(8)]
    records = modes.predict(None, workdir, None, images, None, str(outdir))
    model = transformers.AutoModelForImageClassification.from_pretrained(best).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(best)
    with torch.no_grad():
        pixels = processor([Image.open(p).convert("RGB") for p in images], return_tensors="pt")
        expected = torch.sigmoid(model(**pixels).logits).numpy()
    for record, row in zip(records, expected):
        ours = {p["label"]: p["probability"] for p in record["top_k"]}
        np.testing.assert_allclose([ours["blue"], ours["red"]], row, atol=1e-4)
        by_probability = sorted(zip(row, ("blue", "red")), reverse=True)  # best first
        assert record["labels"] == [name for p, name in by_probability if p >= 0.5]
    assert any(len(r["labels"]) == 2 for r in records) and any(len(r["labels"]) < 2 for r in records)
