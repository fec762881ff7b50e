"""Accuracy with LoRA on the digits demo's model: pretrain it on digits 0-4, then adapt it to the
unseen digits 5-9 four ways, and print the test accuracy and trained parameters of each.

    python bench/lora_digits.py --workdir runs/lora_digits

The pretrained model is configs/digits.py's 4-block ViT (trained from scratch on scikit-learn's
scans of 0-4, exported to best/ in Hugging Face format). Each adaptation starts from that folder
with a new head: a linear probe (head_only), LoRA rank 8 on every block's query and value (+ head),
LoRA rank 8 on every Dense layer of the blocks (+ head), and full fine-tuning. Real images, CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "configs"), os.path.join(ROOT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

QV = r"backbone/encoder/layer_\d+/attention/(query|value)"
ALL = r"backbone/encoder/layer_\d+/(attention/(query|key|value|out)|mlp/fc[12])"
# name -> (optim.freeze, lora.targets, lr)
ADAPTATIONS = {"head_only": ("head_only", "", 3e-2), "lora8_qv": ("head_only", QV, 3e-3),
               "lora8_all": ("head_only", ALL, 3e-3), "full": ("full", "", 1e-3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--epochs", type=int, default=15, help="epochs of each adaptation")
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import digits
    from train_helpers import digits_folder

    from vitjax import modes

    first = digits_folder(os.path.join(args.workdir, "digits_0_4"), range(5))
    second = digits_folder(os.path.join(args.workdir, "digits_5_9"), range(5, 10))
    pre = digits.get_config()
    pre.data.source, pre.train.progress = f"folder:{first}", False
    pre.train.test_split = ""
    pretrained = os.path.join(args.workdir, "pretrain")
    if not os.path.exists(os.path.join(pretrained, "best")):
        modes.train(pre, pretrained)
    rows = []
    for name, (freeze, targets, lr) in ADAPTATIONS.items():
        c = digits.get_config()
        c.model.checkpoint, c.model.spec = os.path.join(pretrained, "best"), {}
        c.data.source, c.train.progress, c.train.epochs = f"folder:{second}", False, args.epochs
        c.optim.freeze, c.optim.lr, c.optim.warmup = freeze, lr, "1 epochs"
        c.lora.targets, c.lora.rank, c.lora.alpha = targets, 8, 16.0
        c.train.eval_every = f"{args.epochs} epochs"
        results = modes.train(c, os.path.join(args.workdir, name))
        groups = open(os.path.join(args.workdir, name, "param_groups.txt")).read().splitlines()[-1]
        rows.append((name, results["metrics"]["test"]["accuracy"], groups.removeprefix("trained: ")))
    print(f"digits 5-9 from a ViT pretrained on digits 0-4, {args.epochs} epochs each, test accuracy")
    print("| adaptation | test accuracy | trained parameters |\n|---|---|---|")
    for name, accuracy, trained in rows:
        print(f"| {name} | {accuracy:.3f} | {trained} |")
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
