"""int8 against float32 on a trained run's test split: model size and accuracy, measured in one run.

    python bench/int8_accuracy.py --workdir runs/digits [--vit_b16]

Exports <workdir>/best as ONNX float32, ONNX int8 (`--format onnx-int8`: dynamic quantization) and
static int8 (`--format onnx-int8-static`: 8-bit activations calibrated on 256 training images), then
classifies the test split of the run's saved config with each, and with vitjax's JAX model, timing
batches of 32 and single images. Goal (issue 13): int8 >= 3.5x smaller and <= 1 point of accuracy lost.
`--vit_b16` adds the sizes of a ViT-B/16 (224 px, random weights: no accuracy) exported both ways,
and how often its int8 top-1 class agrees with float32's on random images.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import jax
import ml_collections
import numpy as np

from vitjax import modes, registry
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data.transforms import load_rgb
from vitjax.deploy import artifacts
from vitjax.trained import INPUT_NAME, load_trained
from vitjax.serve.backends import OnnxBackend


def split_images(workdir: str, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and labels of `split` of the run in `workdir` (its saved config's data)."""
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f))
    registry.load_plugins(config.task.plugins)
    dataset = registry.get_task(config.task.name).open_source(config.data, config.task)
    with open(os.path.join(workdir, "best", "preprocessor_config.json"), encoding="utf-8") as f:
        preprocessing = Preprocessing.from_hf(json.load(f))
    source = dataset.splits[split]
    indices = range(len(source) if limit is None else min(limit, len(source)))
    images = np.stack([preprocessing.to_uint8(load_rgb(source[i]["image"], source.describe(i))) for i in indices])
    return images, np.asarray([source[i]["label"] for i in indices])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--vit_b16", action="store_true", help="also the sizes of a ViT-B/16 export")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="vitjax_int8_")
    best = os.path.join(args.workdir, "best")
    images, labels = split_images(args.workdir, args.split)
    float_dir = artifacts.export(best, "onnx", os.path.join(work, "onnx"))
    int8_dir = artifacts.export(best, "onnx-int8", os.path.join(work, "int8"))
    info = artifacts.read_info(float_dir)
    static_dir = artifacts.export(best, "onnx-int8-static", os.path.join(work, "static"),
                                  calibration=modes.calibration_images(args.workdir, best, 256))
    trained = load_trained(best)
    forward = jax.jit(trained.apply)
    runs = {"vitjax JAX float32": (lambda x: jax.device_get(forward(trained.params, x)), None)}
    for name, folder in [("ONNX float32", float_dir), ("ONNX int8 dynamic (--format onnx-int8)", int8_dir),
                         ("ONNX int8 static (--format onnx-int8-static, 256 calibration images)", static_dir)]:
        runs[name] = (OnnxBackend(folder, {**info, "model_file": "model.onnx"}).run,
                      os.path.getsize(os.path.join(folder, "model.onnx")))
    float_size = runs["ONNX float32"][1]
    print(f"{args.workdir} {args.split} split: {len(labels)} images")
    print("| model | size MB | smaller | accuracy | ms / 32 images | ms / 1 image |")
    print("|---|---|---|---|---|---|")
    for name, (run, size) in runs.items():
        for count in {32, len(images) % 32 or 32, 1}:  # warm-up: JAX compiles each batch size, ORT allocates
            run(images[:count])
        start = time.perf_counter()
        top1 = np.concatenate([run(images[i:i + 32])["indices"][:, 0] for i in range(0, len(images), 32)])
        ms = 1000 * (time.perf_counter() - start) / -(-len(images) // 32)
        start = time.perf_counter()
        for i in range(64):
            run(images[i:i + 1])
        single = 1000 * (time.perf_counter() - start) / 64
        shown = (f"{size / 1e6:.2f} | {float_size / size:.2f}x") if size else "- | -"
        print(f"| {name} | {shown} | {np.mean(top1 == labels):.4f} | {ms:.1f} | {single:.2f} |")
    if args.vit_b16:
        vit_b16_sizes(os.path.join(work, "vit_b16"))
    shutil.rmtree(work)


def vit_b16_sizes(work: str) -> None:
    from inference import vit_b16_folder  # bench/inference.py: the same random ViT-B/16

    folder = vit_b16_folder(os.path.join(work, "hf"))
    exports = {fmt: artifacts.export(folder, fmt, os.path.join(work, fmt)) for fmt in ("onnx", "onnx-int8")}
    sizes = {fmt: os.path.getsize(os.path.join(path, "model.onnx")) for fmt, path in exports.items()}
    images = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    top1 = {fmt: OnnxBackend(path, artifacts.read_info(path)).run(images)["indices"][:, 0]
            for fmt, path in exports.items()}
    print(f"ViT-B/16 (224 px, random weights): float32 {sizes['onnx'] / 1e6:.1f} MB, int8 "
          f"{sizes['onnx-int8'] / 1e6:.1f} MB ({sizes['onnx'] / sizes['onnx-int8']:.2f}x smaller); int8 top-1 "
          f"= float32 top-1 on {np.mean(top1['onnx'] == top1['onnx-int8']):.0%} of 16 random images")


if __name__ == "__main__":
    main()
