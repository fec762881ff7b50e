"""Serving backends: `run(uint8 images [n, H, W, 3]) -> {output: numpy [n, ...]}` over one model.

`open_backend(path)` picks one from what `path` holds: a model folder (`best/`, `best_vitjax/`, or a
workdir holding one) runs the jitted JAX serving function, an export folder runs its `model.onnx`
with ONNX Runtime (float32 or int8) or its `model.stablehlo` with `jax.export`. All expose the same
`info` (vitjax.deploy.artifacts.deploy_info).
`fixed_sizes` says whether a backend compiles per batch shape: the jitted JAX backends do, so the
batcher pads their batches to fixed sizes (vitjax.serve.batching) and they compile once per size;
ONNX Runtime runs any batch size as it comes.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from vitjax.deploy import artifacts
from vitjax.deploy.artifacts import deploy_info
from vitjax.trained import INPUT_NAME, find_model, load_trained


class JaxBackend:
    """The jitted serving function of a model folder; params passed as arguments, not constants."""

    fixed_sizes = True

    def __init__(self, model_dir: str):
        model_dir = find_model(model_dir)  # a workdir serves its run's export
        # No path on disk: /metadata shows `info` to clients.
        trained = load_trained(model_dir)
        self.info = {**deploy_info(trained), "format": "jax", "model_sha256": artifacts.folder_sha256(model_dir)}
        self.params = jax.device_put(trained.params)
        self.forward = jax.jit(trained.apply)

    def run(self, images: np.ndarray) -> dict:
        return jax.device_get(self.forward(self.params, images))

    def compiled_sizes(self) -> int:
        """How many programs jit has compiled (one per batch size seen)."""
        return self.forward._cache_size()


class StableHLOBackend:
    """An exported `model.stablehlo`, run by `jax.export` (one jitted program per batch size)."""

    fixed_sizes = True

    def __init__(self, export_dir: str, info: dict):
        from vitjax.deploy.stablehlo_export import load_stablehlo

        with open(os.path.join(export_dir, info["model_file"]), "rb") as f:
            self.forward = jax.jit(load_stablehlo(f.read()).call)
        self.info = info

    def run(self, images: np.ndarray) -> dict:
        return jax.device_get(self.forward(images))


def default_threads(workers: int = 1) -> int:
    """ONNX Runtime's threads in each of `workers` server processes: their share of the cores, less
    one that the process's HTTP event loop keeps."""
    return max(1, (os.cpu_count() or 1) // workers - 1)


class OnnxBackend:
    """An exported `model.onnx` (float32 or int8) in an ONNX Runtime session.

    `threads` intra-op threads (default: `default_threads()`), which sleep rather than spin between
    runs: a spinning pool takes the cores the event loop needs to parse the next requests."""

    fixed_sizes = False

    def __init__(self, export_dir: str, info: dict, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = default_threads() if threads is None else threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: not the optimizer's notes on unused constants
        self.session = ort.InferenceSession(os.path.join(export_dir, info["model_file"]), options,
                                            providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        self.info = info

    def run(self, images: np.ndarray) -> dict:
        return dict(zip(self.names, self.session.run(self.names, {INPUT_NAME: images})))


def open_backend(path: str, onnx_threads: int | None = None):
    """The backend for a model folder or an export folder at `path` (ONNX: `onnx_threads` intra-op
    threads, default `default_threads()`)."""
    if not os.path.isfile(os.path.join(path, artifacts.INFO_FILE)):
        return JaxBackend(path)
    info = artifacts.read_info(path)
    if info["format"] == "stablehlo":
        return StableHLOBackend(path, info)
    return OnnxBackend(path, info, onnx_threads)
