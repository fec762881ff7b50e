"""Every task deploys through its plugin's own output hook (`Task.predict`, `prediction_records`):
segmentation masks, detection boxes and a third-party plugin given by file path come out of ONNX
Runtime as out of vitjax, and the service answers in the plugin's record format."""
import base64
import io
import logging
import textwrap

import jax
import numpy as np
import onnxruntime
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from deploy_helpers import native_model_folder, png_bytes, uint8_images
from vitjax import registry
from vitjax.deploy import artifacts
from vitjax.serve.app import create_app
from vitjax.serve.backends import open_backend
from vitjax.trained import load_trained

BRIGHTNESS_PLUGIN = textwrap.dedent('''
    """A third-party task: one number per image; only the hooks deployment calls are written."""
    import flax.linen as nn
    from vitjax.registry import Task, register_task


    class BrightnessHead(nn.Module):
        @nn.compact
        def __call__(self, features):
            return nn.Dense(1, name="regressor")(features["cls"])[:, 0]


    @register_task("brightness")
    class Brightness(Task):
        label_fields = ("target",)
        best_metric = ("mae", "min")
        loss = metrics = metric_inputs = summarize = report = None

        def make_head(self, spec):
            return BrightnessHead()

        def predict(self, outputs, top_k):
            return {"value": outputs * 100.0}

        def prediction_records(self, predictions, images, names, outdir):
            return [{"brightness": float(v)} for v in predictions["value"]]
''')


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """The third-party plugin registered here leaves the global registry as it found it."""
    registry.load_plugins()
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    monkeypatch.setattr(registry, "_LOADED_FILES", {})


def _tasks(tmp_path):
    plugin = tmp_path / "brightness_task.py"
    plugin.write_text(BRIGHTNESS_PLUGIN)
    return {
        "segmentation": ({"name": "segmentation", "plugins": [], "upsample_steps": 1, "head_channels": 8},
                         ["background", "disc", "square"]),
        "segmentation-multilevel": ({"name": "segmentation", "plugins": [], "decoder": "multilevel",
                                     "head_channels": 8}, ["background", "disc", "square"]),
        "detection": ({"name": "detection", "plugins": []}, ["disc", "square"]),
        "brightness": ({"name": "brightness", "plugins": [str(plugin)]}, ["value"]),
    }


@pytest.mark.parametrize("task", ["segmentation", "segmentation-multilevel", "detection", "brightness"])
def test_task_exports_and_serves(task, tmp_path, caplog, capfd):
    task_config, class_names = _tasks(tmp_path)[task]
    folder = native_model_folder(tmp_path, task_config, class_names)
    trained = load_trained(folder)
    images = uint8_images(3)
    ours = jax.device_get(jax.jit(trained.apply)(trained.params, images))
    with caplog.at_level(logging.WARNING):
        onnx_out = open_backend(artifacts.export(folder, "onnx", str(tmp_path / "onnx"))).run(images)
    assert sorted(onnx_out) == sorted(ours)
    # the graph runs at any batch (above: 3), with no warning saying otherwise, and ONNX Runtime, as a
    # user opens it, finds no constant that no node reads (it warned for each: 54 for segmentation)
    assert "fixed batch size" not in caplog.text
    capfd.readouterr()
    onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert "Removing initializer" not in capfd.readouterr().err
    for name, value in ours.items():
        if np.issubdtype(value.dtype, np.integer):  # masks and class indices: equal but for near-ties
            assert (onnx_out[name] == value).mean() > 0.999, name
        else:
            np.testing.assert_allclose(onnx_out[name], value, rtol=1e-4, atol=1e-5, err_msg=name)

    with TestClient(create_app(open_backend(str(tmp_path / "onnx")))) as client:
        response = client.post("/predict?top_k=3", files=[("files", ("a.png", png_bytes()))])
    assert response.status_code == 200, response.text
    record = response.json()["predictions"][0]
    if task.startswith("segmentation"):  # the plugin's mask PNG comes back inline, at the image's own size
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(record["mask"]))))
        assert mask.shape == (40, 30) and set(np.unique(mask)) <= {0, 1, 2}  # png_bytes: 30x40
    elif task == "detection":
        assert all(len(d["box"]) == 4 and d["label"] in class_names for d in record["detections"])
        assert len(record["detections"]) <= 3
    else:
        assert isinstance(record["brightness"], float) and record["image"] == "a.png"
