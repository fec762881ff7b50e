"""int8 against float32 on trained runs' test split: ONNX size, accuracy and ONNX Runtime latency, in one run.

    python bench/int8_accuracy.py --workdir runs/digits --qat_workdir runs/digits_qat [--vit_b16]
    python bench/int8_accuracy.py --vit_s runs/int8_vit_s     # trains its own ViT-S runs (~20 min, 2 cores)

Exports the float run's <workdir>/best as ONNX float32, ONNX int8 (`--format onnx-int8`: dynamic
quantization) and static int8 (`--format onnx-int8-static`: 8-bit activations calibrated on
`--calibration` training images: post-training quantization, PTQ), and the QAT run's best (trained
with `config.quant`, configs/digits_qat.py) as static int8 the same way; classifies the test split of
the runs' saved config with each, timing ONNX Runtime on batches of 32 and on single images (the
ratios are float32's time over each row's, measured in the same run). The QAT run's own test accuracy
(its fake-quantized model in JAX, results.json) is the last row.

`--vit_s DIR` first builds a ViT-S/16 (hidden 384, 12 layers, 6 heads, 224 px) with random weights as a
Hugging Face `save_pretrained` folder (no network), writes 400 training and 200 test digit scans as an
image folder, then trains two runs: float (the last block and the head over the feature cache of the
frozen first 11 blocks, 10 epochs) and QAT (from the float run's best, the same trainable part,
`config.quant.enabled`, 1 epoch), and prints their table. `--vit_b16` adds the sizes of a ViT-B/16
(224 px, random weights: no accuracy) exported float32 and dynamic int8.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

from vitjax import modes
from vitjax.config import base_config
from vitjax.deploy import artifacts
from vitjax.serve.backends import OnnxBackend


def table(float_run: str, qat_run: str, calibration: int) -> None:
    """Prints the float32 / dynamic int8 / static PTQ / static QAT table of the two runs' test split."""
    work = tempfile.mkdtemp(prefix="vitjax_int8_")
    best, qat_best = os.path.join(float_run, "best"), os.path.join(qat_run, "best")
    images, labels = modes.split_images(float_run, best, "test")
    exports = {
        "ONNX float32 (--format onnx)": artifacts.export(best, "onnx", os.path.join(work, "f")),
        "ONNX int8 dynamic (--format onnx-int8)": artifacts.export(best, "onnx-int8", os.path.join(work, "d")),
        "ONNX int8 static PTQ (--format onnx-int8-static)": artifacts.export(
            best, "onnx-int8-static", os.path.join(work, "s"),
            calibration=modes.calibration_images(float_run, best, calibration)),
        "ONNX int8 static QAT (config.quant, then --format onnx-int8-static)": artifacts.export(
            qat_best, "onnx-int8-static", os.path.join(work, "q"),
            calibration=modes.calibration_images(qat_run, qat_best, calibration)),
    }
    print(f"{float_run} / {qat_run}: test split, {len(labels)} images; static int8 calibrated on {calibration} "
          f"training images; ONNX Runtime on this machine's CPU")
    print("| model | ONNX MB | smaller | accuracy | ms, batch 1 | x float32 | ms, batch 32 | x float32 |")
    print("|---|---|---|---|---|---|---|---|")
    reference = None
    for name, folder in exports.items():
        run = OnnxBackend(folder, artifacts.read_info(folder)).run
        size = os.path.getsize(os.path.join(folder, "model.onnx"))
        for count in {32, len(images) % 32 or 32, 1}:  # warm-up: ORT allocates per shape
            run(images[:count])
        start = time.perf_counter()
        top1 = np.concatenate([run(images[i:i + 32])["indices"][:, 0] for i in range(0, len(images), 32)])
        batch = 1000 * (time.perf_counter() - start) / -(-len(images) // 32)
        singles = min(len(images), 64)
        start = time.perf_counter()
        for i in range(singles):
            run(images[i:i + 1])
        single = 1000 * (time.perf_counter() - start) / singles
        reference = reference or (size, single, batch)
        print(f"| {name} | {size / 1e6:.2f} | {reference[0] / size:.2f}x | {np.mean(top1 == labels):.4f} | "
              f"{single:.2f} | {reference[1] / single:.2f}x | {batch:.1f} | {reference[2] / batch:.2f}x |")
    with open(os.path.join(qat_run, "results.json"), encoding="utf-8") as f:
        qat_accuracy = json.load(f)["metrics"]["test"]["accuracy"]
    print(f"| QAT run in JAX (qwix fake int8, its results.json) | - | - | {qat_accuracy:.4f} | - | - | - | - |")
    shutil.rmtree(work)


def vit_s_runs(root: str) -> tuple[str, str]:
    """Trains the float and QAT ViT-S runs of `--vit_s` under `root`; returns their workdirs."""
    data = digit_folder(os.path.join(root, "digits"))
    checkpoint = vit_s_folder(os.path.join(root, "vit_s"))
    config = base_config("classification")
    config.model.checkpoint, config.model.dtype = checkpoint, "float32"
    config.data.source, config.data.workers, config.data.cache = f"folder:{data}", 0, "ram"
    config.data.augment.crop_scale, config.data.augment.crop_ratio, config.data.augment.hflip = (1.0, 1.0), (1.0, 1.0), 0.0
    config.optim.freeze, config.optim.last_n_blocks = "last_n_blocks", 1
    config.optim.lr, config.optim.warmup = 2e-3, "1 epochs"
    config.train.batch_size, config.train.epochs, config.train.eval_every = 32, 10, "5 epochs"
    config.train.feature_cache, config.train.progress = "on", False
    float_run, qat_run = os.path.join(root, "float"), os.path.join(root, "qat")
    modes.train(config, float_run)
    config.model.checkpoint = os.path.join(float_run, "best")
    config.quant.enabled, config.train.feature_cache = True, "off"
    config.optim.lr, config.optim.warmup = 1e-4, "0 steps"
    config.train.epochs, config.train.eval_every = 1, "1 epochs"
    modes.train(config, qat_run)
    return float_run, qat_run


def digit_folder(root: str, train_per_class: int = 40, test_per_class: int = 20) -> str:
    """scikit-learn's digit scans as `root/{train,test}/<digit>/*.png` (the first scans of each class)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(10):
        scans = digits.images[digits.target == label][:train_per_class + test_per_class]
        for i, scan in enumerate(scans):
            folder = os.path.join(root, "train" if i < train_per_class else "test", str(label))
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(np.round(scan * 255 / 16).astype(np.uint8)).convert("RGB").save(
                os.path.join(folder, f"{i:03d}.png"))
    return root


def vit_s_folder(root: str, size: int = 224) -> str:
    """A ViT-S/16 classifier of the 10 digits (384 wide, 12 blocks, 6 heads, `size` px) with random
    weights (vitjax's initialisers), saved as a Hugging Face folder."""
    from vitjax.api import Classifier
    from vitjax.models.vit import ViTSpec

    spec = ViTSpec(image_size=size, patch_size=16, hidden_size=384, num_layers=12, num_heads=6, mlp_dim=1536)
    return Classifier.from_scratch(spec, {i: str(i) for i in range(10)}).save_pretrained(root)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="a float run (configs/digits.py)")
    parser.add_argument("--qat_workdir", help="its QAT fine-tuning (configs/digits_qat.py)")
    parser.add_argument("--vit_s", help="a new folder: train the ViT-S runs there and tabulate them")
    parser.add_argument("--calibration", type=int, default=0,
                        help="static int8 calibration images (default 256; 32 with --vit_s)")
    parser.add_argument("--vit_b16", action="store_true", help="also the sizes of a ViT-B/16 export")
    args = parser.parse_args()
    if bool(args.workdir) != bool(args.qat_workdir):
        parser.error("--workdir (the float run) and --qat_workdir (its QAT fine-tuning) go together")
    if args.workdir:
        table(args.workdir, args.qat_workdir, args.calibration or 256)
    if args.vit_s:
        table(*vit_s_runs(args.vit_s), args.calibration or 32)
    if args.vit_b16:
        work = tempfile.mkdtemp(prefix="vitjax_vit_b16_")
        vit_b16_sizes(work)
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
