"""Inference speed of one model four ways, measured in one run: vitjax's jitted JAX serving function,
its ONNX export in ONNX Runtime (float32 and int8) and transformers' PyTorch model on the same weights.

    python bench/inference.py --model vit-b16 --batch_sizes 1,32
    python bench/inference.py --model runs/digits/best --batch_sizes 1,32 --iters 20

`vit-b16` is a ViT-B/16-shaped classifier at 224 px with random weights (1000 labels, built with
transformers and saved locally; no network). Every backend gets uint8 images [B, H, W, 3]; the
PyTorch model gets the same images normalised (its preprocessing is not timed). The table gives the
median latency per batch, images/s and the speed relative to PyTorch in the same run, and the size of
each model file. The machine is shared: compare ratios within a run, not across runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import numpy as np
import torch
import transformers

from vitjax.deploy import artifacts
from vitjax.trained import load_trained
from vitjax.serve.backends import OnnxBackend


def vit_b16_folder(root: str) -> str:
    """A ViT-B/16 classifier at 224 px with random weights, saved as a Hugging Face folder."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(num_labels=1000)
    transformers.ViTForImageClassification(config).save_pretrained(root)
    transformers.ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(root)
    return root


def timed(fn, images, warmup: int, iters: int) -> float:
    """Median seconds of `fn(images)` over `iters` calls after `warmup` calls."""
    for _ in range(warmup):
        fn(images)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit-b16", help="vit-b16, or a model folder (e.g. runs/digits/best)")
    parser.add_argument("--batch_sizes", default="1,32")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="vitjax_bench_")
    folder = vit_b16_folder(os.path.join(work, "best")) if args.model == "vit-b16" else args.model
    trained = load_trained(folder)
    jax_forward = jax.jit(trained.apply)
    onnx_dir = artifacts.export(folder, "onnx", os.path.join(work, "onnx"))
    int8_dir = artifacts.export(folder, "onnx-int8", os.path.join(work, "int8"))
    threads = 0  # ONNX Runtime's own default (a thread per core): no HTTP server shares the cores here
    backends = {
        "vitjax JAX (jit)": (lambda x: jax.block_until_ready(jax_forward(trained.params, x)),
                             sum(v.nbytes for v in jax.tree.leaves(trained.params))),
        "ONNX Runtime float32": (OnnxBackend(onnx_dir, artifacts.read_info(onnx_dir), threads).run,
                                 os.path.getsize(os.path.join(onnx_dir, "model.onnx"))),
        "ONNX Runtime int8": (OnnxBackend(int8_dir, artifacts.read_info(int8_dir), threads).run,
                              os.path.getsize(os.path.join(int8_dir, "model.onnx"))),
    }
    hf = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()

    def torch_forward(images):
        pixels = torch.from_numpy(np.ascontiguousarray(trained.preprocessing.normalize(images).transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            return hf(pixel_values=pixels).logits

    backends["transformers PyTorch (eager)"] = (torch_forward, sum(p.numel() * 4 for p in hf.parameters()))

    print(f"model {args.model}: input {trained.input_shape}, {trained.task.num_classes} labels; "
          f"{os.cpu_count()} CPUs, jax {jax.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"| backend | batch | latency ms (median) | img/s | vs PyTorch | model MB |")
    print(f"|---|---|---|---|---|---|")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        images = np.random.default_rng(0).integers(0, 256, (batch, *trained.input_shape), dtype=np.uint8)
        seconds = {name: timed(fn, images, args.warmup, args.iters) for name, (fn, _) in backends.items()}
        base = seconds["transformers PyTorch (eager)"]
        for name, (_, size) in backends.items():
            print(f"| {name} | {batch} | {1000 * seconds[name]:.1f} | {batch / seconds[name]:.1f} | "
                  f"{base / seconds[name]:.2f}x | {size / 1e6:.1f} |")


if __name__ == "__main__":
    main()
