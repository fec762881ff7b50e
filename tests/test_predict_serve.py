"""`--mode predict` and the HTTP service compute a prediction one way (`Task.predict`, then
`Task.prediction_records`): for the same image files they give the same records, with a `top_k` and
without (both then take the task's `default_top_k`) — classification and
multi-label (both checked against transformers' own softmax / sigmoid), segmentation (masks at each
image's own size) and detection (boxes in each image's pixels, drawn) — the service returning the
files predict mode writes inline. A task without those hooks trains and evaluates, and predict, the
service and the deployable export refuse it naming the hooks."""
import base64
import io
import json
import os
import re
import textwrap

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from deploy_helpers import hf_model_folder, native_model_folder, png_bytes
from train_helpers import colour_folder, tiny_config
from vitjax import modes, registry
from vitjax.serve.app import Limits, create_app
from vitjax.serve.backends import JaxBackend

SIZES = [(40, 30), (24, 36), (32, 32)]  # (height, width): none but the last is the model's 32x32


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """A plugin registered here leaves the global registry as it found it."""
    registry.load_plugins()
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    monkeypatch.setattr(registry, "_LOADED_FILES", {})


def _model_folder(task: str, root) -> str:
    if task in ("classification", "multilabel"):
        folder = hf_model_folder(root, "vit")
        if task == "multilabel":  # what training writes for a multi-label run (Task.hf_config)
            path = os.path.join(folder, "config.json")
            config = json.load(open(path))
            json.dump({**config, "problem_type": "multi_label_classification"}, open(path, "w"))
        return folder
    if task == "segmentation":
        return native_model_folder(root, {"name": "segmentation", "plugins": [], "upsample_steps": 1,
                                          "head_channels": 8}, ["background", "disc", "square"])
    return native_model_folder(root, {"name": "detection", "plugins": [], "score_threshold": 0.05},
                               ["disc", "square"])


def _transformers_probabilities(folder: str, paths: list[str], multilabel: bool) -> np.ndarray:
    import torch
    import transformers

    model = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**processor([Image.open(p).convert("RGB") for p in paths], return_tensors="pt")).logits
    return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, -1)).numpy()


def _same(ours, served, outdir: str, where: str = "record"):
    """`served` (the service's record) equals `ours` (predict mode's), files compared by content."""
    if isinstance(ours, dict):
        assert sorted(ours) == sorted(served), where
        for key in ours:
            _same(ours[key], served[key], outdir, f"{where}.{key}")
    elif isinstance(ours, list):
        assert len(ours) == len(served), where
        for i, (a, b) in enumerate(zip(ours, served)):
            _same(a, b, outdir, f"{where}[{i}]")
    elif isinstance(ours, str) and ours.startswith(outdir):
        written = np.asarray(Image.open(ours))
        inline = np.asarray(Image.open(io.BytesIO(base64.b64decode(served))))
        assert written.shape == inline.shape, where
        assert (written == inline).mean() > 0.999, where  # equal but for near-ties of two batch sizes
    elif isinstance(ours, float):
        assert served == pytest.approx(ours, abs=1e-5), where
    else:
        assert served == ours, where


@pytest.mark.parametrize("task", ["classification", "multilabel", "segmentation", "detection"])
def test_predict_mode_and_the_service_give_the_same_records(task, tmp_path):
    folder = _model_folder(task, tmp_path)
    paths = []
    for i, (height, width) in enumerate(SIZES):
        paths.append(str(tmp_path / f"image_{i}.png"))
        open(paths[-1], "wb").write(png_bytes(height, width, seed=i))
    outdir, default_dir = str(tmp_path / "predictions"), str(tmp_path / "defaults")
    ours = modes.predict(None, None, folder, paths, 3, outdir)
    assert json.load(open(os.path.join(outdir, "predictions.json"))) == ours
    defaults = modes.predict(None, None, folder, paths, None, default_dir)  # no --top_k
    with TestClient(create_app(JaxBackend(folder), Limits(max_batch=4))) as client:
        files = [("files", (os.path.basename(p), open(p, "rb").read())) for p in paths]
        response = client.post("/predict?top_k=3", files=files)
        at_defaults = client.post("/predict", files=files)  # no top_k
    assert response.status_code == 200 and at_defaults.status_code == 200, response.text + at_defaults.text
    served = response.json()["predictions"]
    assert [r["file"] for r in ours] == paths and [r["image"] for r in served] == [f"image_{i}.png" for i in range(3)]
    for mine, theirs, where in ((ours, served, outdir), (defaults, at_defaults.json()["predictions"], default_dir)):
        for record, answer in zip(mine, theirs):
            _same({k: v for k, v in record.items() if k != "file"},
                  {k: v for k, v in answer.items() if k != "image"}, where)
    ranked = {"classification": "top_k", "multilabel": "top_k", "detection": "detections"}.get(task)
    if ranked:  # the task's default: every label of 4 (config.task.top_k=5), or every detection kept
        counts = [len(record[ranked]) for record in defaults]
        assert max(counts) == 4 if ranked == "top_k" else min(counts) > 5  # the service once listed 5

    if task in ("classification", "multilabel"):  # the oracle: transformers on the same files
        expected = _transformers_probabilities(folder, paths, task == "multilabel")
        names = json.load(open(os.path.join(folder, "config.json")))["id2label"]
        for record, row in zip(ours, expected):
            order = np.argsort(-row, kind="stable")[:3]
            assert [e["label"] for e in record["top_k"]] == [names[str(i)] for i in order]
            np.testing.assert_allclose([e["probability"] for e in record["top_k"]], row[order], atol=1e-4)
            if task == "multilabel":
                assert record["labels"] == [names[str(i)] for i in order if row[i] >= 0.5]
            else:
                assert record["label"] == names[str(order[0])]
    elif task == "segmentation":  # the mask at the image's own size, and its overlay
        for record, (height, width) in zip(ours, SIZES):
            mask = np.asarray(Image.open(record["mask"]))
            assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 1, 2}
            assert Image.open(record["overlay"]).format == "PNG"  # its legend: test_report_tasks.py
            assert sum(record["class_pixels"].values()) == height * width
    else:  # boxes in the image's pixels, and drawn
        assert any(record["detections"] for record in ours)
        for record, path, (height, width) in zip(ours, paths, SIZES):
            assert 1 <= len(record["detections"]) <= 3  # top_k=3; the threshold 0.05 keeps the best
            for found in record["detections"]:
                x0, y0, x1, y1 = found["box"]
                assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height and found["score"] >= 0.05
            assert Image.open(record["drawn"]).format == "PNG"  # its boxes and legend: test_report_tasks.py


def test_top_k_is_checked_once_and_a_task_knob_the_task_does_not_know_is_named(tmp_path):
    """`--top_k 0` / `-1` / over the most an export keeps are one-line errors (0 was taken as 5), as
    a request's are; a saved task config with an unknown knob is refused naming it and the folder
    by every loader (the service once dropped it)."""
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    folder = hf_model_folder(tmp_path, "vit")
    for top_k in (0, -1, 101):
        with pytest.raises(modes.UserError, match=rf"^top_k={top_k}: .* from 1 to 100; leave it out for "
                                                  r"the task's default \(5\)"):
            modes.predict(None, None, folder, [str(image)], top_k, str(tmp_path / "out"))
    with TestClient(create_app(JaxBackend(folder))) as client:
        refused = client.post("/predict?top_k=0", files=[("files", ("a.png", image.read_bytes()))])
    assert refused.status_code == 422 and "top_k=0: " in refused.json()["detail"]

    native = native_model_folder(tmp_path / "detector", {"name": "detection", "plugins": []}, ["disc", "square"])
    path = os.path.join(native, "vitjax_model.json")
    info = json.load(open(path))
    info["task_config"]["score_treshold"] = 0.5
    json.dump(info, open(path, "w"))
    message = rf"^{re.escape(native)}: config.task.score_treshold is not a knob of task 'detection'. Did you mean score_threshold"
    with pytest.raises(modes.UserError, match=message):
        modes.predict(None, None, native, [str(image)], None, str(tmp_path / "out"))
    with pytest.raises(modes.UserError, match=message):
        JaxBackend(native)


NO_HOOKS_PLUGIN = textwrap.dedent('''
    """A third-party task without the prediction hooks (nor a transformers class: best_vitjax/)."""
    from vitjax.tasks.classification import Classification
    from vitjax.registry import Task, register_task


    @register_task("colours_no_predict")
    class ColoursNoPredict(Classification):
        predict = Task.predict
        prediction_records = Task.prediction_records
        hf_config = Task.hf_config
''')


def test_a_task_without_the_prediction_hooks_trains_but_does_not_predict(tmp_path):
    plugin = tmp_path / "no_predict.py"
    plugin.write_text(NO_HOOKS_PLUGIN)
    colours = colour_folder(str(tmp_path / "colours"), per_class=4, size=16)
    config = tiny_config(f"folder:{colours}", batch_size=8, epochs=1)
    config.task = registry.task_config("colours_no_predict", [str(plugin)])
    workdir = str(tmp_path / "run")
    modes.train(config, workdir)
    assert np.isfinite(modes.evaluate(None, workdir, None, "test")["accuracy"])
    message = r"task 'colours_no_predict' .* does not implement predict and prediction_records"
    with pytest.raises(modes.UserError, match=message):
        modes.predict(None, workdir, None, [colours], None, str(tmp_path / "predictions"))
    with pytest.raises(modes.UserError, match=message):
        modes.export_deployable(workdir, None, "onnx", str(tmp_path / "onnx"))
    with pytest.raises(modes.UserError, match=message):
        JaxBackend(os.path.join(workdir, "best_vitjax"))
