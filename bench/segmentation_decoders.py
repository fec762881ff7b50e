"""Linear vs multi-level segmentation decoder, cross-entropy vs cross-entropy + Dice, by mIoU.

    python bench/segmentation_decoders.py                 # 4 runs of 300 steps: a few minutes on 2 cores
    python bench/segmentation_decoders.py --steps 20      # seconds: the script works

A synthetic scene set where boundaries matter: grey noise with thin lines (class "line", 1-2 px wide,
any angle) and small discs (class "disc"), --size px images, a ViT with --patch px patches (so a line
is much thinner than a patch). Four runs from the same random initial backbone, same data order, the
same budget (--steps AdamW steps of --batch images, one learning rate): task.decoder "last_block" (a
linear classifier per patch, logits upsampled bilinearly) or "multilevel" (every block fused, DPT-like,
at 2^(depth-1) times the patch grid), each with task.loss "ce" and "ce+dice". The table gives the test
set's mean IoU (the task's own confusion-matrix metric) and the IoU of each class, and the seconds
each run took. The model and loss are vitjax's (the task plugin's head and loss); the loop is a plain
jitted AdamW step, without the trainer's pipeline, to keep the comparison to the head and the loss.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vitjax import registry
from vitjax.metrics import iou_stats
from vitjax.models.model import Model
from vitjax.models.vit import ViT, ViTSpec

CLASSES = ("background", "line", "disc")


def scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image [size, size, 3], mask [size, size]): 1-3 thin lines and 1-2 discs on grey noise."""
    image = np.clip(rng.normal(120, 30, (size, size, 3)), 0, 255)
    mask = np.zeros((size, size), np.int32)
    rows, cols = np.mgrid[:size, :size].astype(np.float32) + 0.5
    for _ in range(int(rng.integers(1, 3))):
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= rng.uniform(0.06, 0.12) ** 2 * size ** 2
        image[inside], mask[inside] = rng.normal((40, 200, 60), 20, (inside.sum(), 3)), 2
    for _ in range(int(rng.integers(1, 4))):
        (y0, x0), angle = rng.uniform(0, size, 2), rng.uniform(0, np.pi)
        dy, dx = np.sin(angle), np.cos(angle)
        along = (rows - y0) * dy + (cols - x0) * dx
        across = np.abs((rows - y0) * dx - (cols - x0) * dy)
        inside = (across <= rng.uniform(0.5, 1.0)) & (np.abs(along) <= size * 0.6)
        image[inside], mask[inside] = rng.normal((220, 50, 40), 20, (inside.sum(), 3)), 1
    return np.clip(image, 0, 255).astype(np.uint8), mask


def scenes(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = [scene(rng, size) for _ in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def run(decoder: str, loss: str, args, train, test) -> dict:
    task_cfg = ml_collections.ConfigDict({"decoder": decoder, "loss": loss, "head_channels": args.channels})
    task = registry.get_task("segmentation")(task_cfg, CLASSES)
    spec = ViTSpec(image_size=args.size, patch_size=args.patch, hidden_size=args.width, num_layers=args.depth,
                   num_heads=4, mlp_dim=2 * args.width)
    model = Model(ViT(spec), task.make_head(spec))
    normalize = lambda images: jnp.asarray(images, jnp.float32) / 127.5 - 1.0
    params = model.init(jax.random.key(args.seed), normalize(train[0][:1]), train=False)["params"]
    tx = optax.adamw(args.lr, weight_decay=0.01)

    @jax.jit
    def step(params, state, images, masks):
        def objective(p):
            return task.loss(model.apply({"params": p}, normalize(images), train=False), {"mask": masks})[0]

        value, grads = jax.value_and_grad(objective)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    @jax.jit
    def evaluate(params, images, masks):
        outputs = model.apply({"params": params}, normalize(images), train=False)
        aux = task.loss(outputs, {"mask": masks})[1]
        return task.metrics().single_from_model_output(**task.metric_inputs(outputs, {"mask": masks}, aux))

    start = time.perf_counter()
    state, order = tx.init(params), np.random.default_rng(args.seed)
    for _ in range(args.steps):
        rows = order.choice(len(train[0]), args.batch, replace=False)
        params, state, value = step(params, state, train[0][rows], train[1][rows])
    metrics = None
    for i in range(0, len(test[0]), args.batch):
        batch = evaluate(params, test[0][i:i + args.batch], test[1][i:i + args.batch])
        metrics = batch if metrics is None else metrics.merge(batch)
    stats = iou_stats(np.asarray(jax.device_get(metrics.compute())["confusion_matrix"]))
    return {"decoder": decoder, "loss": loss, "mean_iou": stats["mean_iou"], "iou": stats["iou"],
            "final_train_loss": float(value), "seconds": time.perf_counter() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train", type=int, default=256, help="training scenes")
    parser.add_argument("--test", type=int, default=64, help="test scenes")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--channels", type=int, default=32, help="task.head_channels")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    registry.load_plugins()
    train, test = scenes(args.train, args.size, args.seed), scenes(args.test, args.size, args.seed + 1)
    print(f"{args.train} training / {args.test} test scenes of {args.size} px, ViT patch {args.patch}, depth "
          f"{args.depth}, width {args.width}; {args.steps} AdamW steps of {args.batch} at lr {args.lr}; "
          f"{jax.devices()[0].platform}")
    print("| task.decoder | task.loss | test mIoU | IoU background | IoU line | IoU disc | train loss | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for decoder in ("last_block", "multilevel"):
        for loss in ("ce", "ce+dice"):
            r = run(decoder, loss, args, train, test)
            iou = " | ".join(f"{v:.3f}" for v in r["iou"])
            print(f"| {decoder} | {loss} | {r['mean_iou']:.3f} | {iou} | {r['final_train_loss']:.3f} | "
                  f"{r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
