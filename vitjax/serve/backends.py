"""Serving backends: `run(uint8 images [n, H, W, 3]) -> {output: numpy [n, ...]}` over one model.

`open_backend(path)` picks one from what `path` holds: a model folder (`best/`, `best_vitjax/`) runs the
jitted JAX serving function, an export folder runs its `model.onnx` with ONNX Runtime (float32 or int8)
or its `model.stablehlo` with `jax.export`. All expose the same `info` (vitjax.deploy.servable.deploy_info).
Batches arrive padded to fixed sizes (vitjax.serve.batching), so the JAX backends compile once per size.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from vitjax.deploy import artifacts
from vitjax.deploy.servable import INPUT_NAME, deploy_info, load_servable


class JaxBackend:
    """The jitted serving function of a model folder; params passed as arguments, not constants."""

    def __init__(self, model_dir: str):
        servable = load_servable(model_dir)
        self.info = {**deploy_info(servable), "format": "jax", "source": os.path.abspath(model_dir),
                     "model_sha256": artifacts.folder_sha256(model_dir)}
        self.params = jax.device_put(servable.params)
        self.forward = jax.jit(servable.apply)

    def run(self, images: np.ndarray) -> dict:
        return jax.device_get(self.forward(self.params, images))

    def compiled_sizes(self) -> int:
        """How many programs jit has compiled (one per batch size seen)."""
        return self.forward._cache_size()


class StableHLOBackend:
    """An exported `model.stablehlo`, run by `jax.export` (one jitted program per batch size)."""

    def __init__(self, export_dir: str, info: dict):
        from vitjax.deploy.stablehlo_export import load_stablehlo

        with open(os.path.join(export_dir, info["model_file"]), "rb") as f:
            self.forward = jax.jit(load_stablehlo(f.read()).call)
        self.info = info

    def run(self, images: np.ndarray) -> dict:
        return jax.device_get(self.forward(images))


class OnnxBackend:
    """An exported `model.onnx` (float32 or int8) in an ONNX Runtime session."""

    def __init__(self, export_dir: str, info: dict, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: not the optimizer's notes on unused constants
        self.session = ort.InferenceSession(os.path.join(export_dir, info["model_file"]), options,
                                            providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        self.info = info

    def run(self, images: np.ndarray) -> dict:
        return dict(zip(self.names, self.session.run(self.names, {INPUT_NAME: images})))


def open_backend(path: str):
    """The backend for a model folder or an export folder at `path`."""
    if not os.path.isfile(os.path.join(path, artifacts.INFO_FILE)):
        return JaxBackend(path)
    info = artifacts.read_info(path)
    if info["format"] == "stablehlo":
        return StableHLOBackend(path, info)
    return OnnxBackend(path, info)
