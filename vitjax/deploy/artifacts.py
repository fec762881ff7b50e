"""Export folders: `export(model_dir, fmt, output)` writes one, `read_info(output)` reads its info back.

An export folder holds the model (`model.onnx` for the "onnx*" formats, `model.stablehlo` for
"stablehlo") and `deploy.json`: the deploy info (`deploy_info`: task, labels, preprocessing, outputs),
the format and the model file's sha256. ONNX files carry the same info in their metadata. Every format
is the trained model's one serving function (`vitjax.trained.TrainedModel.apply`) written out.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os

from vitjax import storage
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


def deploy_info(trained) -> dict:
    """What a client and a serving backend need besides the graph of a `TrainedModel`: task, labels,
    preprocessing, and the outputs (name, shape with "batch", dtype). `ranked` names the outputs whose
    axis 1 is ranked best first (top classes, detections), which a request's `top_k` may shorten.
    A task without the prediction hooks is refused, naming them."""
    import jax
    import jax.numpy as jnp

    import vitjax
    from vitjax import registry
    from vitjax.trained import INPUT_NAME

    registry.require_prediction_hooks(trained.task)
    images = jax.ShapeDtypeStruct((2, *trained.input_shape), jnp.uint8)
    shapes = jax.eval_shape(trained.serving_fn(), images)
    one = jax.eval_shape(functools.partial(trained.apply, top_k=1), trained.params, images)
    return {
        "format_version": 1,
        "vitjax_version": vitjax.__version__,
        "task": trained.task.name,
        "task_config": trained.task_config,
        "class_names": trained.task.class_names,
        "input": {"name": INPUT_NAME, "shape": ["batch", *trained.input_shape], "dtype": "uint8"},
        "outputs": {name: {"shape": ["batch", *s.shape[1:]], "dtype": str(s.dtype)}
                    for name, s in shapes.items()},
        "ranked": sorted(name for name in shapes if shapes[name].shape != one[name].shape),
        "max_top_k": registry.MAX_TOP_K,
        "preprocessing": trained.preprocessing.to_hf(),
        "backbone_config": trained.spec.to_hf_config(),
    }


def export(model_dir: str, fmt: str, output: str, calibration=None) -> str:
    """Exports the model folder `model_dir` (`best/` or `best_vitjax/`, or a workdir holding one) as
    `fmt` into `output`; "onnx-int8-static" needs `calibration`, uint8 images [N, H, W, C] at the
    model's input size."""
    from vitjax.trained import load_trained

    if fmt not in FORMATS:
        raise BadValue(f"--format {fmt!r} is not an export format; use one of {', '.join(FORMATS)}.")
    if (fmt == "onnx-int8-static") != (calibration is not None):
        raise BadValue(f"--format {fmt}: calibration images are read for onnx-int8-static only")
    trained = load_trained(model_dir)
    info = deploy_info(trained)
    with storage.local_output(output) as local:  # on object storage: written here, then uploaded
        _write(trained, info, fmt, local, calibration)
        info.update(source=storage.absolute(model_dir))
        with open(os.path.join(local, INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
    return output


def _write(trained, info: dict, fmt: str, output: str, calibration) -> None:
    """The artifact of `fmt` into local folder `output`; `info` gains its file and digest."""
    from vitjax.trained import INPUT_NAME

    path = os.path.join(output, MODEL_FILES[fmt])
    if fmt == "stablehlo":
        from vitjax.deploy.stablehlo_export import to_stablehlo
        with open(path, "wb") as f:
            f.write(to_stablehlo(trained))
    else:
        import onnx
        from vitjax.deploy.onnx_export import to_onnx
        model = to_onnx(trained, info)
        if fmt == "onnx-int8":
            from vitjax.deploy.quantize import quantize_int8
            quantize_int8(model, path)
        elif fmt == "onnx-int8-static":
            from vitjax.deploy.quantize import quantize_int8_static
            quantize_int8_static(model, path, calibration, INPUT_NAME)
        else:
            onnx.save_model(model, path)
    info.update(format=fmt, model_file=MODEL_FILES[fmt], model_sha256=sha256(path))


def read_info(output: str) -> dict:
    """The `deploy.json` of an export folder; an error naming the folder when it is not one."""
    path = os.path.join(output, INFO_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{output} is not a vitjax export folder ({INFO_FILE} is missing); write one "
                                f"with python -m vitjax.main --mode export --format onnx --output DIR.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
