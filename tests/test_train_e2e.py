"""End to end: train from an image folder, the run's outputs, and the export checked by transformers."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from train_helpers import colour_folder, export_without_data, tiny_config
from vitjax import modes


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = colour_folder(str(root / "data"), per_class=24)
    config = tiny_config(f"folder:{data}", batch_size=8, epochs=6)
    workdir = str(root / "run")
    results = modes.train(config, workdir)
    return config, workdir, data, results


def test_loss_falls_and_the_model_learns(finished_run):
    _, _, _, results = finished_run
    history = results["history"]
    assert len(history) == 6
    assert history[-1]["train/loss"] < 0.6 * history[0]["train/loss"]
    assert results["metrics"]["test"]["accuracy"] >= 0.75  # 3 colours: chance is 0.33


def test_run_outputs_exist(finished_run):
    _, workdir, _, results = finished_run
    for name in ("config.json", "metrics.jsonl", "results.json", "learning_curves.png",
                 "data_split.json", "param_groups.txt", "test/confusion_matrix.png",
                 "test/per_class.csv", "best/config.json", "best/model.safetensors",
                 "best/preprocessor_config.json", "best/README.md"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert {line["split"] for line in lines} == {"train", "validation"}
    assert json.load(open(os.path.join(workdir, "results.json")))["best_step"] == results["best_step"]
    assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_export_loads_in_transformers_and_agrees(finished_run):
    torch = pytest.importorskip("torch")
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    import vitjax

    _, workdir, data, _ = finished_run
    best = os.path.join(workdir, "best")
    clf = vitjax.load_pretrained(best)
    assert sorted(clf.id2label.values()) == ["blue", "green", "red"]
    files = [os.path.join(data, c, "000.png") for c in ("red", "green", "blue")]
    pixels = clf.preprocessing([Image.open(f) for f in files])
    hf = AutoModelForImageClassification.from_pretrained(best).eval()
    with torch.no_grad():
        theirs = hf(pixel_values=torch.from_numpy(pixels)).logits.numpy()
    np.testing.assert_allclose(clf.logits(pixels), theirs, rtol=1e-4, atol=1e-4)
    ours = clf.predict(files, top_k=1)
    classify = pipeline("image-classification", model=best, device="cpu")
    for f, mine in zip(files, ours):
        assert classify(f)[0]["label"] == mine[0][0]


def test_same_workdir_different_config_is_refused(finished_run):
    config, workdir, _, _ = finished_run
    changed = config.copy_and_resolve_references()
    changed.optim.lr = 1e-4
    with pytest.raises(modes.UserError, match=r"optim\.lr.*--overwrite"):
        modes.train(changed, workdir)


def test_evaluate_predict_and_export_modes_read_the_saved_config(finished_run, tmp_path):
    """evaluate/predict/export given only the workdir (its config.json); export opens no data."""
    import shutil

    from vitjax.checkpoints.hf_load import load_hf

    _, workdir, data, results = finished_run
    summary = modes.evaluate(None, workdir, None, "test")
    assert summary["accuracy"] == pytest.approx(results["metrics"]["test"]["accuracy"], abs=1e-6)
    records = modes.predict(None, workdir, None, [os.path.join(data, "red")], 2, str(tmp_path / "preds"))
    assert len(records) == 24 and len(records[0]["top_k"]) == 2
    assert json.load(open(tmp_path / "preds" / "predictions.json")) == records
    probabilities = [p["probability"] for r in records for p in r["top_k"]]
    assert all(0 <= p <= 1 for p in probabilities)
    assert sum(r["label"] == "red" == r["top_k"][0]["label"] for r in records) >= 18
    bare = modes.predict(None, None, os.path.join(workdir, "best"), [os.path.join(data, "red")], 1,
                         str(tmp_path / "bare"))  # a model folder alone describes its task
    assert [r["top_k"] for r in bare] == [r["top_k"][:1] for r in records]
    exported = export_without_data(workdir, data, str(tmp_path / "exported"))
    ours, best = load_hf(exported), load_hf(os.path.join(workdir, "best"))
    assert ours.id2label == best.id2label
    for a, b in zip(jax.tree.leaves(ours.params), jax.tree.leaves(best.params)):
        np.testing.assert_array_equal(a, b)
    shutil.rmtree(exported)


def test_a_workdir_saved_before_newer_config_keys_still_evaluates(finished_run, tmp_path):
    """A run saved by an older vitjax lacks keys added since (they take their defaults); a key the
    defaults do not know is an error naming the file."""
    import shutil

    _, workdir, _, results = finished_run
    old = str(tmp_path / "old_run")
    shutil.copytree(workdir, old, ignore=shutil.ignore_patterns("tensorboard", "eval_*", "predictions"))
    path = os.path.join(old, "config.json")
    saved = json.load(open(path))
    for key in ("checkpoint_every", "feature_cache", "feature_cache_views", "report_to"):
        del saved["train"][key]
    del saved["lora"], saved["trackers"]
    json.dump(saved, open(path, "w"))
    summary = modes.evaluate(None, old, None, "test")
    assert summary["accuracy"] == pytest.approx(results["metrics"]["test"]["accuracy"], abs=1e-6)
    saved["train"]["checkpoint_evry"] = "1 epochs"
    json.dump(saved, open(path, "w"))
    with pytest.raises(modes.UserError, match=r"config\.json: unknown key config\.train\.checkpoint_evry"
                                              r"\. Did you mean 'checkpoint_every'"):
        modes.evaluate(None, old, None, "test")
