"""Exports: ONNX (run by ONNX Runtime), int8 ONNX and StableHLO (run by plain `jax.export`) give the
outputs of vitjax's serving function, and of transformers' PyTorch model on the same pixels, for ViT,
DeiT and DINOv2 backbones, at a batch size other than any traced one; int8 loses at most 1 point of
accuracy on real digit scans and is much smaller; the CLI command writes them."""
import os
import subprocess
import sys

import jax
import numpy as np
import onnx
import pytest
import torch
import transformers

from deploy_helpers import BACKBONES, LABELS, digit_images, digits_classifier_folder, hf_model_folder, uint8_images
from hf_oracle import rel_err, report, torch_forward
from vitjax import modes
from vitjax.deploy import artifacts, onnx_export
from vitjax.serve.backends import open_backend
from vitjax.trained import load_trained


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_exports_match_vitjax_and_transformers(backbone, tmp_path):
    folder = hf_model_folder(tmp_path, backbone)
    trained = load_trained(folder)
    images = uint8_images(3)
    ours = jax.device_get(jax.jit(trained.apply)(trained.params, images))

    # The oracle: transformers' model on the same normalised pixels, probabilities sorted best first.
    hf = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    pixels = np.ascontiguousarray(trained.preprocessing.normalize(images).transpose(0, 3, 1, 2))
    probabilities = torch.softmax(torch_forward(hf, pixels).logits, -1).numpy()
    np.testing.assert_array_equal(ours["indices"], np.argsort(-probabilities, axis=-1))
    assert rel_err(ours["probabilities"], -np.sort(-probabilities, axis=-1)) < 1e-4

    for fmt in ("onnx", "stablehlo"):
        exported = open_backend(artifacts.export(folder, fmt, str(tmp_path / fmt))).run(images)
        err = rel_err(exported["probabilities"], ours["probabilities"])
        report(f"export_{fmt}_{backbone}", probabilities=err)
        assert err < 1e-4
        np.testing.assert_array_equal(exported["indices"], ours["indices"])

    info = onnx_export.read_info(onnx.load_model(str(tmp_path / "onnx" / "model.onnx")))
    assert info["class_names"] == list(LABELS.values()) and info["task"] == "classification"
    assert info["preprocessing"]["image_mean"] == list(trained.preprocessing.mean)
    assert info["input"] == {"name": "images", "shape": ["batch", 32, 32, 3], "dtype": "uint8"}
    assert info["ranked"] == ["indices", "probabilities"]


STATIC_INT8_LOSS = 0.03  # full-integer int8 may lose at most 3 points of accuracy on the digit scans


def test_int8_export_loses_at_most_one_point_on_real_digits_and_is_smaller(tmp_path):
    images, labels = digit_images()
    train, test = slice(0, 1400), slice(1400, None)
    folder = digits_classifier_folder(tmp_path, images[train], labels[train])
    float_out, int8_out = artifacts.export(folder, "onnx", str(tmp_path / "f")), artifacts.export(
        folder, "onnx-int8", str(tmp_path / "q"))
    reference, quantized = open_backend(float_out).run(images[test]), open_backend(int8_out).run(images[test])
    accuracy = {name: np.mean(out["indices"][:, 0] == labels[test]) for name, out in
                [("float32", reference), ("int8", quantized)]}
    sizes = [os.path.getsize(tmp_path / name / "model.onnx") for name in ("f", "q")]
    print(f"INT8 on {len(labels[test])} digit scans: accuracy {accuracy}, {sizes[0] / sizes[1]:.2f}x smaller")
    assert accuracy["float32"] > 0.45  # a real classifier (chance 0.1), so lost accuracy would show
    assert accuracy["int8"] >= accuracy["float32"] - 0.01
    assert sizes[0] > 2.5 * sizes[1]
    model = onnx.load_model(str(tmp_path / "q" / "model.onnx"))
    assert any(init.data_type == onnx.TensorProto.INT8 for init in model.graph.initializer)
    assert onnx_export.read_info(model)["class_names"] == [str(i) for i in range(10)]
    info = artifacts.read_info(int8_out)
    assert info["format"] == "onnx-int8" and info["model_sha256"] == artifacts.sha256(str(tmp_path / "q" / "model.onnx"))

    # Static (--format onnx-int8-static): 8-bit activations too, their scales calibrated on 256 training scans.
    static_out = artifacts.export(folder, "onnx-int8-static", str(tmp_path / "s"), calibration=images[train][:256])
    static = open_backend(static_out).run(images[test])
    accuracy["int8 static"] = np.mean(static["indices"][:, 0] == labels[test])
    print(f"static INT8: accuracy {accuracy['int8 static']}, "
          f"{sizes[0] / os.path.getsize(tmp_path / 's' / 'model.onnx'):.2f}x smaller")
    assert accuracy["int8 static"] >= accuracy["float32"] - STATIC_INT8_LOSS
    model = onnx.load_model(str(tmp_path / "s" / "model.onnx"))
    quantized_ops = [n for n in model.graph.node if n.op_type in ("MatMul", "Conv")]
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    assert quantized_ops and all(n.input[0] in dequantized for n in quantized_ops)  # 8-bit activations in
    zero_points = {init.name: init.data_type for init in model.graph.initializer}
    activation_points = [zero_points.get(n.input[2]) for n in model.graph.node
                         if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert activation_points and set(activation_points) == {onnx.TensorProto.UINT8}   # static scales
    assert artifacts.read_info(static_out)["format"] == "onnx-int8-static"
    with pytest.raises(ValueError, match="onnx-int8-static.*--workdir"):
        modes.export_deployable(None, folder, "onnx-int8-static", str(tmp_path / "x"))


def test_export_command_and_its_errors(tmp_path):
    folder = hf_model_folder(tmp_path, "vit")  # tmp_path/best, where training writes it
    command = [sys.executable, "-m", "vitjax.main", "--mode", "export", "--workdir", str(tmp_path),
               "--format", "stablehlo", "--output", str(tmp_path / "shlo")]
    subprocess.run(command, check=True, capture_output=True)
    exported = jax.export.deserialize(bytearray((tmp_path / "shlo" / "model.stablehlo").read_bytes()))
    trained = load_trained(folder)
    np.testing.assert_allclose(exported.call(uint8_images(2))["probabilities"],
                               jax.jit(trained.apply)(trained.params, uint8_images(2))["probabilities"],
                               rtol=1e-6)
    missing = subprocess.run([*command[:5], "--workdir", str(tmp_path / "nowhere"), "--format", "onnx",
                              "--output", str(tmp_path / "x")], capture_output=True, text=True)
    assert missing.returncode == 1 and "no model folder" in missing.stderr and "Traceback" not in missing.stderr
