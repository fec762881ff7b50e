"""The offline demo side by side with Hugging Face's Trainer on the same CPU, in one run.

    python bench/digits_vs_trainer.py [--repeats 2] [--epochs 30] [--before DIR]

Each repeat runs both systems one after the other, alternating which goes first, each in its own
process: vitjax is `python -m vitjax.main --config configs/digits.py` (the demo as users run it);
the anchor is transformers' `ViTForImageClassification` of the same shape (32 px, patch 4, width 96,
4 blocks, 4 heads, MLP 192) trained by `Trainer` with the same split sizes (80/10/10, stratified),
optimiser (AdamW 2e-3, weight decay 0.05, cosine, 2 warm-up epochs), label smoothing 0.1, batch 64,
epochs and evaluation every 3 epochs, torch on all cores. Printed per run: process wall time, training
images per second over that wall time (train images x epochs / wall), test accuracy; then per system
the min and median, and the ratio vitjax/Trainer of img/s. The machine's load (`os.getloadavg`) is
printed before each run: on a shared machine compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_IMAGES = 1438  # vitjax's train split of scikit-learn's 1,797 digits (the anchor's: 1,437)


def warmup_epochs(epochs: int) -> int:
    return 2 if epochs > 2 else 0  # short smoke runs (--epochs 1) without warm-up


def trainer_child(epochs: int) -> None:
    """The HF Trainer anchor (runs in a child process); prints one JSON line with its test accuracy."""
    import numpy as np
    import torch

    # PyPI's torchvision (imported by transformers) expects C ops the CPU torch wheel lacks: declare them.
    shim = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        shim.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    scans, labels = load_digits(return_X_y=True)
    to_rgb32 = lambda s: np.asarray(Image.fromarray((s.reshape(8, 8) * 16).clip(0, 255).astype(np.uint8))
                                    .convert("RGB").resize((32, 32), Image.BILINEAR))
    images = (np.stack([to_rgb32(s) for s in scans]).astype(np.float32) / 255.0 - 0.5) / 0.5
    images = images.transpose(0, 3, 1, 2)  # NCHW
    x_train, x_rest, y_train, y_rest = train_test_split(images, labels, test_size=0.2, stratify=labels,
                                                        random_state=0)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, stratify=y_rest,
                                                    random_state=0)

    class Digits(torch.utils.data.Dataset):
        def __init__(self, x, y, shift: bool):
            self.x, self.y, self.shift = torch.from_numpy(x), torch.from_numpy(y), shift

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            x = self.x[i]
            if self.shift:  # a mild random translation, the anchor's stand-in for mild crops
                dy, dx = np.random.randint(-2, 3, 2)
                x = torch.roll(x, (int(dy), int(dx)), (1, 2))
            return {"pixel_values": x, "labels": self.y[i]}

    config = ViTConfig(image_size=32, patch_size=4, hidden_size=96, num_hidden_layers=4,
                       num_attention_heads=4, intermediate_size=192, num_labels=10)
    steps_per_epoch = -(-len(y_train) // 64)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="digits_trainer_"), per_device_train_batch_size=64,
        per_device_eval_batch_size=256, num_train_epochs=epochs, learning_rate=2e-3, weight_decay=0.05,
        lr_scheduler_type="cosine", warmup_steps=warmup_epochs(epochs) * steps_per_epoch, label_smoothing_factor=0.1,
        eval_strategy="steps", eval_steps=3 * steps_per_epoch, save_strategy="no", logging_strategy="no",
        report_to=[], dataloader_num_workers=0, use_cpu=True, disable_tqdm=True, seed=0)
    accuracy = lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}
    trainer = Trainer(model=ViTForImageClassification(config), args=args,
                      train_dataset=Digits(x_train, y_train, True), eval_dataset=Digits(x_val, y_val, False),
                      compute_metrics=accuracy)
    trainer.train()
    test = trainer.evaluate(Digits(x_test, y_test, False), metric_key_prefix="test")
    print(json.dumps({"test_accuracy": test["test_accuracy"], "torch_threads": torch.get_num_threads()}))


def run_vitjax(epochs: int, root: str = ROOT) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="digits_vitjax_") as workdir:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vitjax.main", "--config", os.path.join(root, "configs/digits.py"),
                        "--workdir", workdir, f"--config.train.epochs={epochs}",
                        f"--config.optim.warmup={warmup_epochs(epochs)} epochs"],
                       cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": root})
        wall = time.perf_counter() - start
        with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
            results = json.load(f)
    return wall, float(results["metrics"]["test"]["accuracy"])


def run_trainer(epochs: int) -> tuple[float, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "trainer", "--epochs", str(epochs)],
                         check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    return wall, float(json.loads(out.stdout.strip().splitlines()[-1])["test_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="pairs of runs, alternating the order")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--before", metavar="DIR", help="also run the demo from this checkout of vitjax "
                        "(e.g. a worktree of the previous commit), as a third system")
    parser.add_argument("--child", choices=["trainer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return trainer_child(args.epochs)
    systems = {"vitjax": run_vitjax, "HF Trainer": run_trainer}
    if args.before:
        systems["vitjax --before"] = lambda epochs: run_vitjax(epochs, os.path.abspath(args.before))
    rows = {name: [] for name in systems}
    print(f"| run | system | load (1 min) | process wall s | train img/s | test accuracy |\n|---|---|---|---|---|---|")
    for repeat in range(args.repeats):
        order = list(systems) if repeat % 2 == 0 else list(systems)[::-1]
        for name in order:
            load = os.getloadavg()[0]
            wall, accuracy = systems[name](args.epochs)
            rows[name].append((wall, accuracy))
            print(f"| {repeat + 1} | {name} | {load:.1f} | {wall:.1f} | {TRAIN_IMAGES * args.epochs / wall:.0f} "
                  f"| {accuracy:.3f} |", flush=True)
    print("\n| system | wall s min / median | img/s best / median | test accuracy |\n|---|---|---|---|")
    for name, runs in rows.items():
        walls = [w for w, _ in runs]
        print(f"| {name} | {min(walls):.1f} / {statistics.median(walls):.1f} | "
              f"{TRAIN_IMAGES * args.epochs / min(walls):.0f} / {TRAIN_IMAGES * args.epochs / statistics.median(walls):.0f} "
              f"| {' '.join(f'{a:.3f}' for _, a in runs)} |")
    per_pair = [t / v for (v, _), (t, _) in zip(rows["vitjax"], rows["HF Trainer"])]
    print(f"\nvitjax / HF Trainer speed (Trainer wall / vitjax wall), per pair: "
          f"{', '.join(f'{r:.2f}' for r in per_pair)}; median {statistics.median(per_pair):.2f}")


if __name__ == "__main__":
    main()
