"""The "detection" task plugin: object detection with a dense anchor-free head on the ViT patch grid.

Head (CenterNet/FCOS-like): a small conv tower over the backbone's "patches" [B, gh, gw, D], then per
grid cell one logit per class ("an object of this class is centred in this cell") and one box: its
centre as an offset inside the cell and its width and height as fractions of the image. Boxes are
normalised xyxy (0..1) everywhere inside the model and the metrics.

Targets are assigned inside the jitted step from the padded ground truth: each box is owned by the
cell holding its centre (the smallest box wins a shared cell for the regression; every class centred
there is a positive). Loss: sigmoid focal loss over all cells and classes, plus L1 and generalised-IoU
losses of the boxes at positive cells, each normalised by the number of positives.

Decoding: per class, cells whose score is a 3x3 local maximum (no NMS), top `max_detections` per
image. Metrics: COCO mAP@[.5:.95] and mAP@.5 by pycocotools' `COCOeval` (the reference detection
papers report with; one area range, at most `max_detections` detections per image and class), computed
on the host from the collected detections by `average_precision`.

Data (`open_source`): COCO JSON — "coco:PATH", "folder:PATH" or a plain path, PATH being an
`annotations.json` file or a folder holding one (images at their `file_name` relative to the json's
folder or its `images/` subfolder), or split folders `PATH/{train,validation,test}/annotations.json`;
crowd annotations (iscrowd=1) are skipped. Or "hf:NAME[:CONFIG]", a Hugging Face dataset with an
`objects` column of {"bbox": [...], "category": [...]} (COCO xywh by default, `box_format="xyxy"`
otherwise). Eval batches carry `max_boxes` boxes per image, padded, with a `box_valid` mask.

Export: transformers' detection classes (DETR, YOLOS, ...) have other heads and losses, so the model
stays in vitjax's orbax checkpoints (`hf_config()` is None).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import metrics as clu_metrics
from ml_collections import config_dict

from vitjax.data import hf, paired, splits as splits_lib
from vitjax.data.pipeline import RecordTransforms
from vitjax.data.records import SPLIT_ALIASES, ImageDataset
from vitjax.data.source_spec import parse_source
from vitjax.data.transforms import load_rgb
from vitjax.errors import BadKey, BadValue
from vitjax.registry import Task, register_task
from vitjax.metrics import FirstExamples
from vitjax.report import SAMPLES, class_colours, save_figure, write_evaluation_report

# COCO's IoU thresholds of mAP@[.5:.95] (pycocotools' `iouThrs`, in its order).
IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)
ANNOTATIONS_FILE = "annotations.json"
BOX_FORMATS = ("xywh", "xyxy")


# ---- boxes ---------------------------------------------------------------------------------------
def generalized_iou(a, b) -> jnp.ndarray:
    """Elementwise generalised IoU of xyxy boxes a, b [..., 4] (jit-able)."""
    def area(box):
        return jnp.clip(box[..., 2] - box[..., 0], 0) * jnp.clip(box[..., 3] - box[..., 1], 0)

    lower, upper = jnp.minimum(a, b), jnp.maximum(a, b)
    inter = area(jnp.concatenate([upper[..., :2], lower[..., 2:]], -1))
    union = area(a) + area(b) - inter
    enclosing = area(jnp.concatenate([lower[..., :2], upper[..., 2:]], -1))
    iou = inter / jnp.maximum(union, 1e-9)
    return iou - (enclosing - union) / jnp.maximum(enclosing, 1e-9)


# ---- COCO mAP (pycocotools) ---------------------------------------------------------------------
def _coco_annotations(per_image, scored: bool) -> list[dict]:
    """COCO annotation dicts (xywh boxes, ids from 1) of per-image (boxes xyxy, [scores,] classes)."""
    rows = []
    for image_id, entry in enumerate(per_image, 1):
        boxes, classes = np.asarray(entry[0], np.float64).reshape(-1, 4), entry[-1]
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            row = {"id": len(rows) + 1, "image_id": image_id, "category_id": int(classes[k]) + 1,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
            if scored:
                row["score"] = float(entry[1][k])
            rows.append(row)
    return rows


def average_precision(detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                      truths: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int,
                      max_detections: int = 100) -> np.ndarray:
    """Per-class AP [C, len(IOU_THRESHOLDS)] over a dataset by pycocotools' `COCOeval` (bbox, one area
    range: all, at most `max_detections` per image and class); NaN for classes without truths.

    `detections[i]` = (boxes [n, 4] xyxy, scores [n], classes [n]) and `truths[i]` = (boxes [m, 4],
    classes [m]) of image i.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def api(annotations):
        coco = COCO()
        coco.dataset = {"images": [{"id": i} for i in range(1, len(truths) + 1)],
                        "categories": [{"id": c + 1} for c in range(num_classes)], "annotations": annotations}
        coco.createIndex()
        return coco

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        evaluator = COCOeval(api(_coco_annotations(truths, False)), api(_coco_annotations(detections, True)),
                             "bbox")
        evaluator.params.maxDets = [max_detections]
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0.0, 1e10]], ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, 0]  # [thresholds, recall points, classes]; -1: no truth
    return np.where((precision < 0).all(axis=1), np.nan, precision.mean(axis=1)).T


# ---- model ---------------------------------------------------------------------------------------
class DetectionHead(nn.Module):
    """`__call__(features) -> {"class_logits": [B, gh, gw, C], "boxes": [B, gh, gw, 4]}` (float32;
    boxes normalised xyxy) from the backbone's "patches" [B, gh, gw, D]."""

    num_classes: int
    channels: int = 128
    layers: int = 2
    prior: float = 0.01  # initial object probability of every cell and class (RetinaNet's bias init)

    @nn.compact
    def __call__(self, features: dict):
        x = features["patches"]
        for i in range(self.layers):
            x = nn.gelu(nn.Conv(self.channels, (3, 3), param_dtype=jnp.float32, name=f"conv_{i}")(x))
        bias = nn.initializers.constant(-np.log((1 - self.prior) / self.prior))
        logits = nn.Dense(self.num_classes, param_dtype=jnp.float32, bias_init=bias, name="classifier")(x)
        raw = nn.Dense(4, param_dtype=jnp.float32, name="box")(x).astype(jnp.float32)
        _, height, width, _ = raw.shape
        rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
        centre_x = (cols + jax.nn.sigmoid(raw[..., 0])) / width
        centre_y = (rows + jax.nn.sigmoid(raw[..., 1])) / height
        half_w, half_h = jax.nn.sigmoid(raw[..., 2]) / 2, jax.nn.sigmoid(raw[..., 3]) / 2
        boxes = jnp.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], -1)
        return {"class_logits": logits.astype(jnp.float32), "boxes": boxes}


# ---- data ----------------------------------------------------------------------------------------
class BoxSource:
    """One split of images with boxes: records {"image", "boxes" xyxy pixels [n, 4], "classes" [n],
    "name"}; `rows(i)` gives (image, boxes, classes) of record i."""

    def __init__(self, name: str, rows, size: int, ids: list | None = None):
        self.name, self._rows, self._size, self._ids = name, rows, size, ids

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, boxes, classes = self._rows(int(index))
        return {"image": image, "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                "classes": np.asarray(classes, np.int32).reshape(-1), "name": self.describe(index)}

    def labels(self) -> np.ndarray:
        """No single class per image: one stratum, so carved splits are a seeded random split."""
        return np.zeros(len(self), np.int64)

    def classes(self) -> list[np.ndarray]:
        """The classes of each image's boxes."""
        return [np.asarray(self._rows(i)[2], np.int64).reshape(-1) for i in range(len(self))]

    def ids(self) -> list:
        return self._ids if self._ids is not None else list(range(len(self)))

    def describe(self, index: int) -> str:
        return str(self._ids[index]) if self._ids is not None else f"{self.name}[{index}]"


def read_coco(path: Path) -> tuple[BoxSource, list[str]]:
    """A COCO annotations file as a split (category ids mapped to 0..C-1 in id order) + class names."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        categories = sorted(data["categories"], key=lambda c: c["id"])
        images = data["images"]
    except (OSError, ValueError, KeyError) as e:
        raise BadValue(f"{path} is not a COCO annotations file with 'images' and 'categories': {e}.") from e
    index = {c["id"]: i for i, c in enumerate(categories)}
    boxes: dict[Any, list] = {image["id"]: [] for image in images}
    for annotation in data.get("annotations", []):
        if annotation.get("iscrowd", 0):
            continue
        if annotation["category_id"] not in index or annotation["image_id"] not in boxes:
            raise BadValue(f"{path}: annotation {annotation.get('id')} names an unknown category or image.")
        x, y, w, h = annotation["bbox"]
        boxes[annotation["image_id"]].append((x, y, x + w, y + h, index[annotation["category_id"]]))
    folder = path.parent
    files = []
    for image in images:
        candidates = (folder / image["file_name"], folder / "images" / image["file_name"])
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{path}: image {image['file_name']!r} is neither in {folder} nor in "
                                    f"{folder / 'images'}.")
        files.append(str(found))
    entries = [np.asarray(boxes[image["id"]], np.float32).reshape(-1, 5) for image in images]

    def rows(i):
        return files[i], entries[i][:, :4], entries[i][:, 4]

    return BoxSource(str(path), rows, len(files), ids=files), [c["name"] for c in categories]


def scan_coco(root: str) -> tuple[dict[str, BoxSource], list[str]]:
    """The splits of a COCO file, a folder holding annotations.json, or split folders of them."""
    path = Path(root).expanduser().resolve()
    if path.is_file():
        files = {"train": path}
    elif (path / ANNOTATIONS_FILE).is_file():
        files = {"train": path / ANNOTATIONS_FILE}
    else:
        known = {alias for aliases in SPLIT_ALIASES.values() for alias in aliases}
        files = {p.name: p / ANNOTATIONS_FILE for p in sorted(path.iterdir()) if p.name in known} \
            if path.is_dir() else {}
        if not files:
            raise FileNotFoundError(
                f"No COCO annotations at {path}: give an annotations .json file, a folder holding "
                f"{ANNOTATIONS_FILE}, or split folders (train/, validation/) with one.")
    splits, names = {}, {}
    for split, file in files.items():
        splits[split], names[split] = read_coco(file)
    if len({tuple(n) for n in names.values()}) > 1:
        raise BadValue(f"The COCO files under {path} have different categories: {names}.")
    return splits, next(iter(names.values()))


def _class_label_names(feature) -> list[str] | None:
    """The names of the ClassLabel inside a (nested) `datasets` feature, if there is one."""
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    inner = getattr(feature, "feature", None)
    return _class_label_names(inner) if inner is not None else None


def from_hf(dataset, data_cfg, task_cfg,
            name: str = "hf:<in-memory>") -> tuple[dict[str, BoxSource], list[str]]:
    """The splits of a `datasets.Dataset`/`DatasetDict` with an image column and an objects column of
    {"bbox": [[4 numbers], ...], "category": [...]} (`config.task.objects_column`, `box_format`)."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        dataset = datasets.DatasetDict({"train": dataset})
    first = next(iter(dataset.values()))
    image_col = data_cfg.image_column or next(
        (c for c in ("image", "img") if c in first.column_names), None)
    objects_col = task_cfg.get("objects_column") or "objects"
    for column, key in ((image_col, "config.data.image_column"), (objects_col, "config.task.objects_column")):
        if column not in first.column_names:
            raise BadKey(f"{name}: no column {column!r} ({key}); the columns are {first.column_names}.")
    objects = first.features[objects_col]
    fields = objects.feature if isinstance(objects, (datasets.Sequence, datasets.LargeList, datasets.List)) \
        else objects
    class_names = task_cfg.get("class_names") or _class_label_names(fields.get("category"))
    if not class_names:
        raise BadValue(f"{name}: {objects_col}['category'] is not a ClassLabel; "
                       "set config.task.class_names.")
    xywh = (task_cfg.get("box_format") or "xywh") == "xywh"
    splits = {}
    for split_name, split in dataset.items():
        split = split.select_columns([image_col, objects_col])
        if isinstance(split.features[image_col], datasets.Image):
            split = split.cast_column(image_col, datasets.Image(decode=False))

        def rows(i, split=split):
            row = split[i]
            found = row[objects_col]
            if isinstance(found, list):  # a list of per-object dicts
                found = {"bbox": [o["bbox"] for o in found], "category": [o["category"] for o in found]}
            boxes = np.asarray(found["bbox"], np.float32).reshape(-1, 4)
            if xywh:
                boxes[:, 2:] += boxes[:, :2]
            return row[image_col], boxes, found["category"]

        splits[split_name] = BoxSource(f"{name}/{split_name}", rows, len(split))
    return splits, [str(n) for n in class_names]


@dataclasses.dataclass(frozen=True)
class BoxTransforms:
    """Decodes an image + boxes record, applies one view to both and pads to `max_boxes` (picklable)."""

    size: tuple[int, int]
    resample: int
    augment: Any
    max_boxes: int

    def _example(self, record: dict, view_of) -> dict:
        image = load_rgb(record["image"], record["name"])
        view = view_of(image)
        boxes, kept = paired.apply_to_boxes(record["boxes"], view, self.size)
        boxes, classes = boxes[kept], record["classes"][kept]
        if len(boxes) > self.max_boxes:
            raise BadValue(f"{record['name']} has {len(boxes)} boxes, more than config.task.max_boxes="
                           f"{self.max_boxes}; raise it.")
        padded = np.zeros((self.max_boxes, 4), np.float32)
        padded[:len(boxes)] = boxes
        return {"image": paired.apply_to_image(image, view, self.size, self.resample), "boxes": padded,
                "classes": np.pad(classes.astype(np.int32), (0, self.max_boxes - len(boxes))),
                "box_valid": np.arange(self.max_boxes) < len(boxes)}

    def train(self, record: dict, rng: np.random.Generator) -> dict:
        example = self._example(
            record, lambda img: paired.random_view(img.height, img.width, rng, self.augment))
        example["image"] = paired.photometric(example["image"], rng, self.augment)
        return example

    def eval(self, record: dict) -> dict:
        return self._example(record, lambda img: paired.full_view(img.height, img.width))


# ---- the task ------------------------------------------------------------------------------------
def _valid_rows(batch: dict, batch_size: int) -> jnp.ndarray:
    """bool [B]: False on the padding rows of eval batches (training batches have none)."""
    valid = batch.get("valid")
    return jnp.ones((batch_size,), bool) if valid is None else jnp.asarray(valid, bool)


@register_task("detection")
class Detection(Task):
    """Object detection with a dense anchor-free head (see the module docstring)."""

    best_metric = ("map", "max")

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = ml_collections.ConfigDict()
        # Class names overriding the source's (COCO categories, an HF ClassLabel); index i names class i.
        config.class_names = config_dict.placeholder(tuple)
        # Boxes per image in a batch (padded, with a validity mask); an image with more is an error.
        config.max_boxes = 50
        # Detections kept per image (by score), also COCO's maxDets of the mAP.
        config.max_detections = 100
        # Hugging Face datasets: the objects column and its box format, "xywh" (COCO) or "xyxy".
        config.objects_column = "objects"
        config.box_format = "xywh"
        # Head: conv layers (3x3, GELU) before the class and box outputs, and their channels.
        config.head_layers = 2
        config.head_channels = 128
        # Loss: focal loss (alpha, gamma) on the class scores, L1 and GIoU weights on the boxes.
        config.focal_alpha = 0.25
        config.focal_gamma = 2.0
        config.l1_weight = 5.0
        config.giou_weight = 2.0
        # Detections at or above this score are listed and drawn by --mode predict.
        config.score_threshold = 0.3
        return config

    def __init__(self, config: ml_collections.ConfigDict, class_names: Sequence[str]):
        super().__init__(config, class_names)
        if self.config.box_format not in BOX_FORMATS:
            raise BadValue(f"config.task.box_format must be one of {BOX_FORMATS}; "
                           f"got {self.config.box_format!r}.")
        for key in ("max_boxes", "max_detections"):
            if self.config[key] < 1:
                raise BadValue(f"config.task.{key} must be >= 1; got {self.config[key]}.")
        fields = {name: clu_metrics.Average.from_output(name) for name in ("loss", "class_loss", "box_loss")}
        found = ("pred_boxes", "pred_scores", "pred_classes", "true_boxes", "true_classes", "true_valid")
        collected = clu_metrics.CollectingMetric.from_outputs((*found, "mask"))
        samples = FirstExamples.of(("image", *found), SAMPLES)
        self._metrics = {True: clu_metrics.Collection.create(**fields),
                         False: clu_metrics.Collection.create(**fields, detections=collected, samples=samples)}

    # ---- data ----------------------------------------------------------------------------------
    @classmethod
    def open_source(cls, data_cfg, task_cfg) -> ImageDataset:
        spec = parse_source(data_cfg.source, ("hf", "coco", "folder", "path"),
                            "'coco:PATH' (a COCO annotations file or folder) or 'hf:NAME[:CONFIG]' (a dataset "
                            "with an objects column)")
        if spec.kind == "hf":
            raw, class_names = from_hf(hf.load_dataset_dict(spec), data_cfg, task_cfg, name=spec.text)
        else:
            raw, class_names = scan_coco(spec.local_path())
        class_names = list(task_cfg.get("class_names") or class_names)
        return splits_lib.resolve_splits(spec.text, raw, class_names, data_cfg)

    def data_transforms(self, preprocessing, data_cfg) -> RecordTransforms:
        size = tuple(preprocessing.input_size)
        boxes = BoxTransforms(size, preprocessing.resample, data_cfg.augment, self.config.max_boxes)
        padding = {"image": np.zeros((*size, 3), np.uint8),
                   "boxes": np.zeros((self.config.max_boxes, 4), np.float32),
                   "classes": np.zeros((self.config.max_boxes,), np.int32),
                   "box_valid": np.zeros((self.config.max_boxes,), bool)}
        return RecordTransforms(train=boxes.train, eval=boxes.eval, padding=padding)

    # ---- model, targets, loss ------------------------------------------------------------------
    def make_head(self, spec: Any) -> nn.Module:
        return DetectionHead(self.num_classes, self.config.head_channels, self.config.head_layers)

    @staticmethod
    def _normalised_truth(batch: dict):
        """(boxes [B, M, 4] in 0..1, classes [B, M], valid [B, M] with padding rows' boxes off)."""
        height, width = batch["image"].shape[1:3]
        boxes = batch["boxes"].astype(jnp.float32) / jnp.asarray([width, height, width, height], jnp.float32)
        valid = jnp.asarray(batch["box_valid"], bool)
        if batch.get("valid") is not None:
            valid &= jnp.asarray(batch["valid"], bool)[:, None]
        return boxes, batch["classes"].astype(jnp.int32), valid

    def _targets(self, outputs, batch: dict):
        """Per cell: class targets [B, N, C], box targets [B, N, 4], positive [B, N] (N = gh * gw)."""
        boxes, classes, valid = self._normalised_truth(batch)
        _, height, width, _ = outputs["class_logits"].shape
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        col = jnp.clip(jnp.floor(centre[..., 0] * width), 0, width - 1).astype(jnp.int32)
        row = jnp.clip(jnp.floor(centre[..., 1] * height), 0, height - 1).astype(jnp.int32)
        owner = (row * width + col)[:, None, :] == jnp.arange(height * width)[None, :, None]
        owner &= valid[:, None, :]  # [B, N, M]: box m is centred in cell n
        onehot = jax.nn.one_hot(classes, self.num_classes, dtype=jnp.float32)  # [B, M, C]
        class_targets = jnp.max(owner[..., None] * onehot[:, None], axis=2)
        area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        smallest = jnp.argmin(jnp.where(owner, area[:, None, :], jnp.inf), axis=2)  # [B, N]
        box_targets = jnp.take_along_axis(boxes, smallest[..., None], axis=1)
        return class_targets, box_targets, owner.any(axis=2)

    def _per_image_losses(self, outputs, batch: dict):
        """(class loss sum, box loss sum, positives), each [B]."""
        class_targets, box_targets, positive = self._targets(outputs, batch)
        batch_size = positive.shape[0]
        logits = outputs["class_logits"].reshape(batch_size, -1, self.num_classes)
        focal = optax.sigmoid_focal_loss(logits, class_targets, alpha=self.config.focal_alpha,
                                         gamma=self.config.focal_gamma)
        class_loss = jnp.where(_valid_rows(batch, batch_size), focal.sum(axis=(1, 2)), 0.0)
        predicted = outputs["boxes"].reshape(batch_size, -1, 4)
        box_loss = (self.config.l1_weight * jnp.abs(predicted - box_targets).sum(-1)
                    + self.config.giou_weight * (1.0 - generalized_iou(predicted, box_targets)))
        box_loss = jnp.sum(jnp.where(positive, box_loss, 0.0), axis=1)
        return class_loss, box_loss, positive.sum(axis=1).astype(jnp.float32)

    def loss(self, outputs, batch: dict) -> tuple[jnp.ndarray, dict]:
        """(class loss + box loss) summed over the batch, over the number of positive cells; aux: the
        per-image loss, class loss and box loss (each over the image's positive cells), which the
        metrics average into the logs."""
        class_loss, box_loss, positives = self._per_image_losses(outputs, batch)
        scale = 1.0 / jnp.maximum(positives.sum(), 1.0)
        per_image = 1.0 / jnp.maximum(positives, 1.0)
        aux = {"loss": (class_loss + box_loss) * per_image, "class_loss": class_loss * per_image,
               "box_loss": box_loss * per_image}
        return (class_loss.sum() + box_loss.sum()) * scale, aux

    def metrics(self, training: bool = False) -> type[clu_metrics.Collection]:
        """Training: loss, class_loss, box_loss (per-image, averaged). Evaluation: those, the
        collected detections and truths for the host-side mAP, and the first images with theirs,
        which the report draws."""
        return self._metrics[training]

    def metric_inputs(self, outputs, batch: dict, aux: dict) -> dict[str, jnp.ndarray]:
        mask = _valid_rows(batch, aux["loss"].shape[0])
        boxes, classes, valid = self._normalised_truth(batch)
        detections = self.detections(outputs, self.config.max_detections)
        return {**aux, "mask": mask, "image": batch["image"],
                "pred_boxes": detections["boxes"], "pred_scores": detections["scores"],
                "pred_classes": detections["classes"], "true_boxes": boxes, "true_classes": classes,
                "true_valid": valid}

    # ---- evaluation ----------------------------------------------------------------------------
    def _average_precision(self, computed: dict) -> np.ndarray | None:
        """Per-class AP [C, thresholds] of an evaluation, None for the training collection."""
        found = computed.get("detections")
        if not found:
            return None
        rows = np.flatnonzero(np.asarray(found["mask"], bool))
        detections = [(found["pred_boxes"][i], found["pred_scores"][i], found["pred_classes"][i])
                      for i in rows]
        truths = [(found["true_boxes"][i][valid], found["true_classes"][i][valid])
                  for i, valid in zip(rows, found["true_valid"][rows])]
        return average_precision(detections, truths, self.num_classes, self.config.max_detections)

    def summarize(self, computed: dict) -> dict[str, float]:
        """loss, class_loss, box_loss and, from an evaluation, map (mAP@[.5:.95]) and map50 (mAP@.5),
        averaged over the classes with ground truth (NaN without any)."""
        summary = {key: float(computed[key]) for key in ("loss", "class_loss", "box_loss")}
        ap = self._average_precision(computed)
        if ap is not None:
            present = ~np.isnan(ap[:, 0])
            summary["map"] = float(ap[present].mean()) if present.any() else np.nan
            summary["map50"] = float(ap[present, 0].mean()) if present.any() else np.nan
        return summary

    def report(self, computed: dict, outdir: str | os.PathLike, split: str) -> dict:
        """Writes per_class.csv/.md (AP, AP50, AP75 per class), report.json and samples.png (the
        split's first images with their true and predicted boxes, `boxes_figure`) under `outdir`;
        report.json gives their number as "samples"."""
        summary = self.summarize(computed)
        ap = self._average_precision(computed)
        found = computed["detections"]
        truths = np.asarray(found["true_classes"])[np.asarray(found["true_valid"]) & found["mask"][:, None]]
        counts = np.bincount(truths.ravel(), minlength=self.num_classes)
        column = {0.5: "ap50", 0.75: "ap75"}
        rows = [{"class": name, "ap": None if np.isnan(ap[c, 0]) else float(ap[c].mean()),
                 **{label: None if np.isnan(ap[c, 0]) else float(ap[c, list(IOU_THRESHOLDS).index(t)])
                    for t, label in column.items()},
                 "boxes": int(counts[c])}
                for c, name in enumerate(self.class_names)]
        result = {"split": split, "task": self.name, "metrics": summary, "per_class": rows,
                  "class_names": self.class_names}
        samples = computed.get("samples")
        if samples:
            panels = []
            for i, image in enumerate(samples["image"]):
                scale = np.asarray([image.shape[1], image.shape[0]] * 2, np.float64)
                valid = samples["true_valid"][i]
                kept = samples["pred_scores"][i] >= self.config.score_threshold
                panels.append((f"#{i}", image, (samples["true_boxes"][i][valid] * scale, samples["true_classes"][i][valid]),
                               (samples["pred_boxes"][i][kept] * scale, samples["pred_scores"][i][kept],
                                samples["pred_classes"][i][kept])))
            Path(outdir).mkdir(parents=True, exist_ok=True)
            save_figure(self.boxes_figure(panels, f"{split}: the first {len(panels)} images", inches=3.0),
                        Path(outdir) / "samples.png")
            result["samples"] = len(panels)
        write_evaluation_report(outdir, split, summary, rows, result)
        return result

    def report_sections(self, report: dict) -> list[dict]:
        """The sample drawings (samples.png): the split's first images with their true and predicted
        boxes; the per-class AP is in the common per-class table."""
        if not report.get("samples"):
            return []
        return [{"title": f"Samples ({report['samples']})",
                 "text": f"The split's first images: true boxes dashed, predicted boxes (score at least "
                         f"{self.config.score_threshold}) solid, each labelled with its class.",
                 "figures": ["samples.png"]}]

    def boxes_figure(self, panels: Sequence[tuple], title: str | None = None, inches: float | None = None):
        """A matplotlib figure of panels (title, RGB image [H, W, 3], truths (boxes [m, 4] xyxy pixels,
        classes [m]) or None, predictions (boxes [n, 4], scores [n], classes [n]) or None), three to a
        row: true boxes dashed, predicted ones solid with their score, each labelled with its class
        and coloured by it, and one legend naming the classes and the line styles drawn: the one
        drawing of boxes, for predict's *_boxes.png and the report's samples.png alike. `inches`: a
        panel's longer side; None: the first image's own pixels (at 100 dpi, at least 300)."""
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch, Rectangle

        columns = min(3, len(panels))
        rows = -(-len(panels) // columns)
        height, width = np.asarray(panels[0][1]).shape[:2]
        side = (inches or max(height, width, 300) / 100) / max(height, width)  # inches per pixel
        fig = Figure(figsize=(columns * width * side + 0.4, rows * height * side + 1.0), layout="constrained")
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        colours = class_colours(self.num_classes)
        shown: set[int] = set()

        def draw(ax, boxes, classes, scores, style):
            for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
                c = int(classes[k])
                shown.add(c)
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, linewidth=1.5,
                                       linestyle=style, edgecolor=colours[c]))
                text = self.class_names[c] + ("" if scores is None else f" {float(scores[k]):.2f}")
                ax.text(x0 - 0.5, (y0 if scores is None else y1) - 0.5, text, fontsize=6, color="white",
                        va="bottom" if scores is None else "top",
                        bbox={"facecolor": colours[c], "alpha": 0.8, "pad": 1, "linewidth": 0})

        for ax, (name, image, truths, predictions) in zip(axes, panels):
            ax.imshow(np.asarray(image), interpolation="nearest")
            if truths is not None:
                draw(ax, truths[0], truths[1], None, "--")
            if predictions is not None:
                draw(ax, predictions[0], predictions[2], predictions[1], "-")
            ax.set_title(name, fontsize=9)
        for ax in axes:
            ax.set_axis_off()
        styles = [("--", "true box", any(p[2] is not None for p in panels)),
                  ("-", "predicted box (score)", any(p[3] is not None for p in panels))]
        handles = [*(Line2D([], [], color="black", linestyle=style, label=label) for style, label, drawn in styles
                     if drawn),
                   *(Patch(facecolor=colours[c], label=self.class_names[c]) for c in sorted(shown))]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8)
        if title:
            fig.suptitle(title, fontsize=10)
        return fig

    # ---- prediction ----------------------------------------------------------------------------
    def detections(self, outputs, top_k: int) -> dict[str, jnp.ndarray]:
        """The `top_k` best detections per image among the cells that are a 3x3 local maximum of their
        class score: {"boxes": [B, k, 4] normalised xyxy, "scores": [B, k], "classes": int32 [B, k]}."""
        scores = jax.nn.sigmoid(outputs["class_logits"])
        peaks = nn.max_pool(scores, window_shape=(3, 3), strides=(1, 1), padding="SAME")
        scores = jnp.where(scores == peaks, scores, 0.0)
        batch_size, _, _, num_classes = scores.shape
        flat = scores.reshape(batch_size, -1)
        best, index = jax.lax.top_k(flat, min(top_k, flat.shape[1]))
        cells = index // num_classes
        boxes = jnp.take_along_axis(outputs["boxes"].reshape(batch_size, -1, 4), cells[..., None], axis=1)
        return {"boxes": jnp.clip(boxes, 0.0, 1.0), "scores": best,
                "classes": (index % num_classes).astype(jnp.int32)}

    def predict(self, outputs, top_k: int) -> dict[str, jnp.ndarray]:
        """The deployed outputs: `detections`."""
        return self.detections(outputs, top_k)

    def prediction_records(self, predictions: dict, images, names, outdir) -> list[dict]:
        """Per image, the detections scoring at least `score_threshold`, best first (label, score, xyxy
        box in the image's own pixels) and `<name>_boxes.png`, the image with those boxes drawn and
        labelled, with a legend (`boxes_figure`): {"detections": [{"label", "score", "box"}, ...],
        "drawn": path}."""
        records = []
        for i, (image, name) in enumerate(zip(images, names)):
            scale = np.asarray([image.width, image.height, image.width, image.height], np.float64)
            kept = np.flatnonzero(predictions["scores"][i] >= self.config.score_threshold)
            found = (predictions["boxes"][i, kept] * scale, predictions["scores"][i, kept], predictions["classes"][i, kept])
            boxes = [{"label": self.class_names[int(c)], "score": float(score),
                      "box": [round(float(v), 2) for v in box]} for box, score, c in zip(*found)]
            path = os.path.join(outdir, f"{name}_boxes.png")
            save_figure(self.boxes_figure([("predicted", np.asarray(image), None, found)]), path)
            records.append({"detections": boxes, "drawn": path})
        return records
