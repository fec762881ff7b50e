"""Export folders: `export(model_dir, fmt, output)` writes one, `read_artifact(output)` reads it back.

An export folder holds the model (`model.onnx` for the "onnx*" formats, `model.stablehlo` for
"stablehlo") and `deploy.json`: the deploy info (task, labels, preprocessing, outputs), the format and
the model file's sha256. ONNX files carry the same info in their metadata.
"""
from __future__ import annotations

import hashlib
import json
import os

from vitjax.errors import BadValue

FORMATS = ("onnx", "onnx-int8", "onnx-int8-static", "stablehlo")
INFO_FILE = "deploy.json"
MODEL_FILES = {"onnx": "model.onnx", "onnx-int8": "model.onnx", "onnx-int8-static": "model.onnx",
               "stablehlo": "model.stablehlo"}


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: str) -> str:
    """One sha256 over every file of `folder` (relative paths and contents, in sorted order)."""
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode() + b"\0" + sha256(path).encode())
    return digest.hexdigest()


def export(model_dir: str, fmt: str, output: str, calibration=None) -> str:
    """Exports the model folder `model_dir` (`best/` or `best_vitjax/`) as `fmt` into `output`;
    "onnx-int8-static" needs `calibration`, uint8 images [N, H, W, C] at the model's input size."""
    from vitjax.deploy.servable import INPUT_NAME, deploy_info, load_servable

    if fmt not in FORMATS:
        raise BadValue(f"--format {fmt!r} is not an export format; use one of {', '.join(FORMATS)}.")
    if (fmt == "onnx-int8-static") != (calibration is not None):
        raise BadValue(f"--format {fmt}: calibration images are read for onnx-int8-static only")
    servable = load_servable(model_dir)
    info = deploy_info(servable)
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, MODEL_FILES[fmt])
    if fmt == "stablehlo":
        from vitjax.deploy.stablehlo_export import to_stablehlo
        with open(path, "wb") as f:
            f.write(to_stablehlo(servable))
    else:
        import onnx
        from vitjax.deploy.onnx_export import to_onnx
        model = to_onnx(servable, info)
        if fmt == "onnx-int8":
            from vitjax.deploy.quantize import quantize_int8
            quantize_int8(model, path)
        elif fmt == "onnx-int8-static":
            from vitjax.deploy.quantize import quantize_int8_static
            quantize_int8_static(model, path, calibration, INPUT_NAME)
        else:
            onnx.save_model(model, path)
    info.update(format=fmt, model_file=MODEL_FILES[fmt], model_sha256=sha256(path), source=os.path.abspath(model_dir))
    with open(os.path.join(output, INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    return output


def read_info(output: str) -> dict:
    """The `deploy.json` of an export folder; an error naming the folder when it is not one."""
    path = os.path.join(output, INFO_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{output} is not a vitjax export folder ({INFO_FILE} is missing); write one "
                                f"with python -m vitjax.main --mode export --format onnx --output DIR.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
