"""Synthetic data for the dense-task tests: coloured shapes on noise with their masks and boxes."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from train_helpers import tiny_config
from vitjax import modes
from vitjax.train import evaluation, setup
from vitjax.registry import get_task, task_config

# Object classes: a red rectangle and a green disc (mask value / category = index + 1).
SHAPES = (("red", (230, 40, 40)), ("green", (40, 220, 60)))


def shapes_scene(rng: np.random.Generator, size: int = 32, max_objects: int = 2):
    """(uint8 image [size, size, 3], int mask [size, size] with 0 = background, boxes [(x0, y0, x1, y1,
    class index)]): 1..max_objects non-overlapping shapes on grey noise."""
    image = np.clip(rng.normal(110, 35, (size, size, 3)), 0, 255)
    mask = np.zeros((size, size), np.int32)
    boxes = []
    rows, cols = np.mgrid[:size, :size]
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            h, w = rng.integers(size // 4, size // 2 + 1, size=2)
            y0, x0 = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
            if not mask[y0:y0 + h, x0:x0 + w].any():
                break
        else:
            continue
        kind = int(rng.integers(len(SHAPES)))
        if kind == 0:
            inside = (rows >= y0) & (rows < y0 + h) & (cols >= x0) & (cols < x0 + w)
        else:
            cy, cx = y0 + (h - 1) / 2, x0 + (w - 1) / 2
            inside = ((rows - cy) / (h / 2)) ** 2 + ((cols - cx) / (w / 2)) ** 2 <= 1
        image[inside] = np.clip(np.array(SHAPES[kind][1]) + rng.normal(0, 15, (inside.sum(), 3)), 0, 255)
        mask[inside] = kind + 1
        ys, xs = np.nonzero(inside)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, kind))
    return image.astype(np.uint8), mask, boxes


def segmentation_folder(root: str, count: int = 96, size: int = 32, seed: int = 0) -> str:
    """`root/images/*.png`, `root/masks/*.png` (mode L) and `root/classes.txt`."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i in range(count):
        image, mask, _ = shapes_scene(rng, size)
        Image.fromarray(image).save(os.path.join(root, "images", f"{i:03d}.jpg"), quality=95)
        Image.fromarray(mask.astype(np.uint8)).save(os.path.join(root, "masks", f"{i:03d}.png"))
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("\n".join(["background", *(name for name, _ in SHAPES)]) + "\n")
    return root


def coco_folder(root: str, count: int = 96, size: int = 32, seed: int = 0) -> str:
    """`root/annotations.json` (COCO: xywh boxes, category ids 1..) and the images beside it."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image, _, boxes = shapes_scene(rng, size)
        name = f"{i:03d}.png"
        Image.fromarray(image).save(os.path.join(root, name))
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for x0, y0, x1, y1, kind in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": kind + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                "iscrowd": 0})
    categories = [{"id": k + 1, "name": name} for k, (name, _) in enumerate(SHAPES)]
    with open(os.path.join(root, "annotations.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return root


def dense_config(task: str, source: str, **train):
    """`tiny_config` at 32 px (an 8 x 8 patch grid) for a dense task, tracking the task's metric."""
    config = tiny_config(source, **train)
    config.task = task_config(task)
    config.model.spec.image_size = 32
    config.data.augment.hflip = 0.5
    config.train.best_metric, config.train.best_mode = get_task(task).best_metric
    return config


def untrained_then_trained(config, root):
    """(test metrics of the initial weights, results of training), for 'training lifts the metric'."""
    run = setup.build_run(config, str(root / "untrained"))
    untrained = evaluation.evaluate(run, run.init_state().params, run.jit_eval_step(), "test")
    return untrained, modes.train(config, str(root / "run")), str(root / "run")
