"""LoRA vs full fine-tuning on a ViT-B/16-shaped model: trainable parameters, optimizer-state and
parameter memory, and train-step time, every variant built by the trainer's own code.

    python bench/lora.py                     # ViT-B/16 shapes at 112 px, batch 8 (CPU: minutes)
    python bench/lora.py --tiny              # a tiny ViT in seconds: the script works

Each row is `setup.build_run` on synthetic uint8 images (the model with `config.lora`, the optimizer
with its groups, the sharded train state), timed as the CLI's loop runs it: `Run.jit_train_step()`
compiled once, then the median of --repeats windows of --steps steps. Optimizer state = the bytes of
`TrainState.opt_state` (AdamW moments of the trained parameters only: frozen ones hold none);
parameters = the bytes of `TrainState.params` (the frozen base in bfloat16 for "lora16_bf16").
Rows are measured one after another in this process; on a shared machine read the ratios.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.train_throughput import MODELS as SHAPES  # noqa: E402  (ViT shapes by name: "B/16", "tiny", ...)

# name -> (optim.freeze, lora.targets, lora.rank, lora.base_dtype)
VARIANTS = {
    "full": ("full", "", 16, "float32"),
    "head_only": ("head_only", "", 16, "float32"),
    "lora16_qv": ("head_only", r"backbone/encoder/layer_\d+/attention/(query|value)", 16, "float32"),
    "lora16_bf16": ("head_only", r"backbone/encoder/layer_\d+/attention/(query|value)", 16, "bfloat16"),
}


def bench_config(shape: str, resolution: int, batch: int, variant: str, total_steps: int):
    from vitjax.config import base_config

    freeze, targets, rank, base_dtype = VARIANTS[variant]
    c = base_config("classification")
    c.model.spec = dict(image_size=resolution, **SHAPES[shape])
    c.model.dtype = "float32"  # CPU: float32 compute is faster than emulated bfloat16
    c.optim.freeze = freeze
    c.lora.targets, c.lora.rank, c.lora.alpha, c.lora.dropout, c.lora.base_dtype = targets, rank, 16.0, 0.1, base_dtype
    c.data.workers = 0
    c.train.batch_size = batch
    c.train.epochs = total_steps
    c.train.progress = False
    c.compilation_cache = ""
    return c


def nbytes(tree) -> int:
    import jax
    return sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, "nbytes"))


def measure(shape: str, resolution: int, batch: int, variant: str, steps: int, repeats: int) -> dict:
    import jax
    import numpy as np

    from vitjax import parallel
    from vitjax.data.sources import ArraySource, ImageDataset
    from vitjax.train import setup

    classes = 3
    config = bench_config(shape, resolution, batch, variant, total_steps=steps * repeats + 2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, resolution, resolution, 3), dtype=np.uint8)
    labels = (np.arange(batch) % classes).astype(np.int32)
    dataset = ImageDataset("synthetic", {"train": ArraySource("synthetic", images, labels)},
                           [f"class_{i}" for i in range(classes)])
    with tempfile.TemporaryDirectory() as workdir:
        run = setup.build_run(config, workdir, dataset)
    state = run.init_state()
    step = run.jit_train_step()
    batch_arrays = parallel.global_batch({"image": images, "label": labels}, run.mesh)
    compiled = step.lower(state, batch_arrays).compile()
    state, _ = compiled(state, batch_arrays)
    jax.block_until_ready(state)
    windows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            state, _ = compiled(state, batch_arrays)
        jax.block_until_ready(state)
        windows.append((time.perf_counter() - t0) / steps)
    trained = sum(g.size for g in run.training.optimizer.groups if g.trains)
    total = sum(g.size for g in run.training.optimizer.groups)
    return dict(variant=variant, trained=trained, total=total, opt_mb=nbytes(state.opt_state) / 2**20,
                params_mb=nbytes(state.params) / 2**20, step_s=float(np.median(windows)))


def table(rows: list[dict]) -> str:
    base = rows[0]
    head = ("variant", "trained params", "% of all", "opt state MiB", "params MiB", "step s", "step vs full")
    lines = [head]
    for r in rows:
        lines.append((r["variant"], f"{r['trained']:,}", f"{100 * r['trained'] / r['total']:.2f}",
                      f"{r['opt_mb']:.1f}", f"{r['params_mb']:.1f}", f"{r['step_s']:.3f}",
                      f"{r['step_s'] / base['step_s']:.2f}x"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny ViT at 32 px: seconds")
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    shape, resolution = ("tiny", 32) if args.tiny else ("B/16", args.resolution)
    rows = [measure(shape, resolution, args.batch, v, args.steps, args.repeats) for v in VARIANTS]
    import jax
    print(f"ViT-{shape} shapes at {resolution} px, batch {args.batch}, AdamW, {jax.devices()[0].device_kind}, "
          f"median of {args.repeats} x {args.steps} steps")
    print(table(rows))


if __name__ == "__main__":
    main()
