"""A linear probe with the feature cache vs the same probe over images vs HF Trainer, in one call.

    python bench/feature_cache.py                      # ViT-B/16 @224, 2,000 images, 30 epochs
    python bench/feature_cache.py --tiny               # a tiny ViT in seconds: the script works

A ViT-B/16-shaped `ViTForImageClassification` with random weights (seeded) is saved with
`save_pretrained`; --images generated JPEGs (10 classes: a colour and a stripe frequency per class,
noisy) are written as an image folder, carved 80/10/10. Three runs probe the frozen backbone with the
same recipe (no augmentation, AdamW, cosine, batch --batch, an evaluation every --eval-every epochs):

  cached     vitjax, optim.freeze="head_only", train.feature_cache="on": the full --epochs, timed from
             the call to the end (the backbone pass over train + validation, training, reports, export);
  uncached   vitjax, the same config with feature_cache="off", over --steps steps and one evaluation;
  HF Trainer transformers' Trainer, requires_grad=False on `model.vit`, over --steps steps + one evaluation.

A forward pass through ViT-B costs seconds on a small CPU, so the two runs over images are measured
for --steps steps only and their --epochs time is EXTRAPOLATED (the table says so): start-up + epochs x
steps per epoch x median step time + the evaluations x one validation pass. The cached run is then repeated for the
same --steps steps (its features read back from the disk cache) to show that it reaches the uncached
run's validation accuracy at that step: the two runs compute the same function (tests/test_feature_cache.py
checks their exported weights agree). With --full the runs over images also do the whole --epochs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

CLASSES = 10


def make_images(root: str, count: int, size: int, seed: int = 0) -> str:
    """`root/<class>/*.jpg`: noisy images whose colour and stripe frequency are the class."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, (CLASSES, 3))
    x = np.arange(size)[None, :, None]
    for i in range(count):
        c = i % CLASSES
        stripes = 40 * np.sin(2 * np.pi * (1 + c % 5) * x / size)
        pixels = colours[c][None, None] + stripes + rng.normal(0, 30, (size, size, 3))
        folder = os.path.join(root, f"class_{c}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, f"{i:05d}.jpg"), quality=90)
    return root


def make_checkpoint(path: str, tiny: bool) -> str:
    """A seeded random ViT classifier (ViT-B/16 @224, or a tiny one) saved as a HF folder."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    shape = (dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=128) if tiny else {})
    ViTForImageClassification(ViTConfig(num_labels=CLASSES, **shape)).save_pretrained(path)
    size = 32 if tiny else 224
    ViTImageProcessor(size={"height": size, "width": size}).save_pretrained(path)
    return path


def vitjax_config(args, data: str, checkpoint: str, cache: str, epochs: float, workdir_cache: str):
    from vitjax.config import base_config

    c = base_config("classification")
    c.model.checkpoint = checkpoint
    c.model.dtype = "float32"  # CPU: float32 is faster than emulated bfloat16
    c.data.source = f"folder:{data}"
    c.data.workers = 0
    c.data.cache, c.data.cache_dir = "disk", workdir_cache
    c.data.augment.crop_scale = (1.0, 1.0)  # no augmentation: a plain linear probe
    c.data.augment.crop_ratio = (1.0, 1.0)
    c.data.augment.hflip = 0.0
    c.optim.freeze = "head_only"
    c.optim.lr = args.lr
    c.optim.warmup = "0"
    c.train.batch_size = args.batch
    del c.train["epochs"]  # an int by default; the bounded runs train a fraction of an epoch
    c.train.epochs = epochs
    c.train.eval_every = f"{args.eval_every} epochs"
    c.train.log_every = 1
    c.train.progress = False
    c.train.test_split = ""
    c.train.feature_cache = cache
    c.compilation_cache = ""
    return c


def run_vitjax(args, tmp: str, name: str, cache: str, epochs: float) -> dict:
    """One vitjax run in `tmp/name`: wall time, its metrics.jsonl records and results.json."""
    from vitjax import modes

    workdir = os.path.join(tmp, name)
    config = vitjax_config(args, os.path.join(tmp, "images"), os.path.join(tmp, "checkpoint"), cache,
                           epochs, os.path.join(tmp, "cache"))
    start = time.time()
    results = modes.train(config, workdir)
    wall = time.time() - start
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    return {"wall": wall, "start": start, "records": records, "results": results}


def vitjax_timings(run: dict) -> dict:
    """Start-up (to the end of the first step), median step time after it, and validation pass time."""
    train = [r for r in run["records"] if r["split"] == "train"]
    val = [r for r in run["records"] if r["split"] == "validation"]
    steps = [b["time"] - a["time"] for a, b in zip(train, train[1:]) if b["step"] == a["step"] + 1
             and not any(a["step"] < v["step"] < b["step"] or v["step"] == a["step"] for v in val)]
    last_train = max((r["time"] for r in train if r["step"] <= val[0]["step"]), default=run["start"])
    return {"startup": train[0]["time"] - run["start"], "step": statistics.median(steps),
            "eval": val[0]["time"] - last_train, "accuracy": val[-1]["accuracy"], "steps": train[-1]["step"]}


def run_hf_trainer(args, tmp: str, steps: int, epochs: float | None) -> dict:
    """HF Trainer probing the same checkpoint with a frozen backbone; times its steps and one evaluation."""
    import torch
    from transformers import (Trainer, TrainerCallback, TrainingArguments, ViTForImageClassification,
                              ViTImageProcessor)

    checkpoint = os.path.join(tmp, "checkpoint")
    processor = ViTImageProcessor.from_pretrained(checkpoint)
    with open(os.path.join(tmp, "cached", "data_split.json"), encoding="utf-8") as f:
        splits = json.load(f)["splits"]  # the split vitjax carved and trained on

    class Images(torch.utils.data.Dataset):
        def __init__(self, split):
            self.paths = [os.path.join(tmp, "images", i) for i in splits[split]["ids"]]
            self.labels = splits[split]["labels"]

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            image = Image.open(self.paths[i]).convert("RGB")
            pixels = processor(image, return_tensors="pt")["pixel_values"][0]
            return {"pixel_values": pixels, "labels": self.labels[i]}

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_end(self, *_, **__):
            self.ends.append(time.time())

    start = time.time()
    torch.manual_seed(0)
    model = ViTForImageClassification.from_pretrained(checkpoint)
    for p in model.vit.parameters():
        p.requires_grad = False
    train, val = Images("train"), Images("validation")
    per_epoch = len(train) // args.batch
    limit = dict(num_train_epochs=epochs) if epochs else dict(max_steps=steps)
    training = TrainingArguments(
        output_dir=os.path.join(tmp, "hf"), per_device_train_batch_size=args.batch,
        per_device_eval_batch_size=args.batch, learning_rate=args.lr, weight_decay=0.05,
        lr_scheduler_type="cosine", eval_strategy="epoch" if epochs else "no", save_strategy="no",
        logging_strategy="no", report_to=[], dataloader_num_workers=0, use_cpu=True, disable_tqdm=True,
        seed=0, **limit)
    clock = Clock()

    def accuracy(p):
        return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}

    trainer = Trainer(model=model, args=training, train_dataset=train, eval_dataset=val,
                      compute_metrics=accuracy, callbacks=[clock])
    trainer.train()
    eval_start = time.time()
    accuracy_now = trainer.evaluate()["eval_accuracy"]
    end = time.time()
    return {"wall": end - start, "startup": clock.ends[0] - start, "steps": len(clock.ends),
            "step": statistics.median(np.diff(clock.ends)), "eval": end - eval_start,
            "accuracy": accuracy_now, "per_epoch": per_epoch}


def extrapolated(t: dict, epochs: int, per_epoch: int, eval_every: int) -> float:
    return t["startup"] + epochs * per_epoch * t["step"] + epochs // eval_every * t["eval"]


def table(rows: list[dict], epochs: int) -> str:
    head = ("run", "measured", "wall s", "train img/s", f"{epochs} epochs s", "val acc", "speed-up")
    base = rows[0]["epochs_s"]  # the cached run, over all the epochs
    lines = [head] + [(r["run"], r["measured"], f"{r['wall']:.1f}", f"{r['img_s']:.1f}",
                       f"{r['epochs_s']:.0f}{'' if r['real'] else ' (extrapolated)'}", r["acc"],
                       f"{r['epochs_s'] / base:.1f}x") for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=4, help="steps of the runs over images (then extrapolated)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=3, help="epochs between evaluations (and checkpoints)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--full", action="store_true", help="run the image runs for all --epochs too")
    ap.add_argument("--tiny", action="store_true", help="a tiny ViT at 32 px (checks the script)")
    ap.add_argument("--keep", default="", help="work in this folder and keep it (default: a temp folder)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = args.keep or tempfile.mkdtemp(prefix="vitjax-fc-bench-")
    os.makedirs(tmp, exist_ok=True)
    try:
        make_images(os.path.join(tmp, "images"), args.images, 32 if args.tiny else 224)
        make_checkpoint(os.path.join(tmp, "checkpoint"), args.tiny)
        rows = []

        cached = run_vitjax(args, tmp, "cached", "on", args.epochs)
        per_epoch = cached["results"]["steps_per_epoch"]
        n_train = per_epoch * args.batch
        acc = cached["results"]["metrics"]["validation"]["accuracy"]
        rows.append(dict(run="vitjax cached (head_only)", measured=f"{args.epochs} epochs", real=True,
                         wall=cached["wall"], img_s=args.epochs * n_train / cached["wall"],
                         epochs_s=cached["wall"], acc=f"{acc:.3f} (@{args.epochs} ep)"))

        bounded = args.epochs if args.full else args.steps / per_epoch
        again_run = run_vitjax(args, tmp, "cached_steps", "on", bounded)
        again = vitjax_timings(again_run)
        plain_run = run_vitjax(args, tmp, "uncached", "off", bounded)
        plain = vitjax_timings(plain_run)
        hf = run_hf_trainer(args, tmp, args.steps, args.epochs if args.full else None)
        at = f"@{plain['steps']} steps"
        rows.append(dict(run="vitjax cached, disk cache warm", measured=f"{again['steps']} steps + 1 eval",
                         real=False, wall=again_run["wall"],
                         img_s=args.batch / again["step"], epochs_s=extrapolated(again, args.epochs, per_epoch, args.eval_every),
                         acc=f"{again['accuracy']:.3f} ({at})"))
        rows.append(dict(run="vitjax uncached (head_only)", measured=f"{plain['steps']} steps + 1 eval",
                         real=args.full, wall=plain_run["wall"], img_s=args.batch / plain["step"],
                         epochs_s=plain_run["wall"] if args.full else extrapolated(plain, args.epochs, per_epoch, args.eval_every),
                         acc=f"{plain['accuracy']:.3f} ({at})"))
        rows.append(dict(run="HF Trainer, frozen backbone", measured=f"{hf['steps']} steps + 1 eval",
                         real=args.full, wall=hf["wall"], img_s=args.batch / hf["step"],
                         epochs_s=hf["wall"] if args.full else extrapolated(hf, args.epochs, hf["per_epoch"], args.eval_every),
                         acc=f"{hf['accuracy']:.3f} (@{hf['steps']} steps)"))
        shape = "tiny ViT @32" if args.tiny else "ViT-B/16 @224 (random weights)"
        print(f"\nfeature cache benchmark: {shape}, {args.images} images ({n_train} train, "
              f"{len(cached['results']['class_names'])} classes), batch {args.batch}, {args.epochs} epochs; "
              f"{platform.node()} {os.cpu_count()} CPUs, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
        print(table(rows, args.epochs))
        print(f"extrapolated = start-up + epochs x steps/epoch x median step s + epochs/{args.eval_every} x one "
              f"validation pass s, from the measured steps; speed-up = {args.epochs}-epoch time / the cached run's.")
        return rows
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
