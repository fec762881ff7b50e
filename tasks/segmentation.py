"""The "segmentation" task plugin: semantic segmentation on the ViT's patch tokens.

Head (`task.decoder`): "last_block", a per-patch linear classifier over the last block's patch grid
(`upsample_steps=0`), or a light progressive-upsampling decoder (each step: 3x3 conv, layer norm,
GELU, 2x bilinear upsampling; then the per-pixel classifier); or "multilevel", several blocks'
outputs (`task.decoder_blocks`) unpatchified to finer grids and fused DPT-style (`SegmentationHead`).
The logits are upsampled bilinearly to the label mask's size for the loss and the metrics.

Loss (`task.loss`): "ce", per-pixel cross-entropy averaged over the labelled pixels of valid rows;
"dice", soft Dice over the classes present in each image, averaged over images; or "ce+dice", their
sum. Pixels equal to `ignore_index` (and labels outside the classes) do not count. Metrics: a summed confusion matrix
(`vitjax.metrics.ConfusionMatrix`, which takes per-pixel labels), from which mean IoU and mean Dice
(over classes present in the labels or predictions), per-class IoU, Dice and accuracy, and pixel
accuracy are derived (`vitjax.metrics.iou_stats`).

Data (`open_source`): "folder:ROOT" (or a plain folder) holding `images/` and `masks/` with the same
file stems — or split folders `ROOT/{train,validation,test}/{images,masks}` — with the class names
in `config.task.class_names` or `ROOT/classes.txt` (one per line, line i names label i); or
"hf:NAME[:CONFIG]", a Hugging Face dataset with an image column and an annotation image column (such
as `scene_parse_150`, with `reduce_labels=True` and its 150 class names). Masks are single-channel
images of class indices. Training applies one random resized crop and flip to the image and its mask
(nearest neighbour for the mask); evaluation resizes both to the input size.

Export: transformers has no semantic-segmentation class over a plain ViT/DeiT/DINOv2 encoder (its
segmentation models bring their own decoders: SegFormer, UperNet, DPT, Mask2Former), so the model
stays in vitjax's orbax checkpoints (`hf_config()` is None).
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
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
from PIL import Image

from vitjax.errors import BadKey, BadValue
from vitjax.metrics import ConfusionMatrix, FirstExamples, iou_stats
from vitjax.data import hf, paired, splits as splits_lib
from vitjax.data.folders import IMAGE_EXTENSIONS
from vitjax.data.pipeline import RecordTransforms
from vitjax.data.records import SPLIT_ALIASES, ImageDataset
from vitjax.data.source_spec import parse_source
from vitjax.data.transforms import load_rgb
from vitjax.registry import Task, register_task
from vitjax.report import SAMPLES, class_colours, plot_confusion_matrix, save_figure, write_evaluation_report

IMAGE_COLUMNS = ("image", "img", "pixel_values")
MASK_COLUMNS = ("annotation", "mask", "segmentation", "semantic_map", "label")
CLASSES_FILE = "classes.txt"


DECODERS = ("last_block", "multilevel")
LOSSES = ("ce", "dice", "ce+dice")


class SegmentationHead(nn.Module):
    """`__call__(features) -> logits` float32 [B, gh * 2^up, gw * 2^up, num_classes].

    Without `blocks` (decoder "last_block") it reads the backbone's "patches" [B, gh, gw, D]. With
    `blocks` (decoder "multilevel", shallowest block first) it reads those blocks' outputs from the
    backbone's "hidden_states" and fuses them in the spirit of DPT: block i of k is normed, projected
    to `channels` and unpatchified by a stride-2^(k-1-i) transposed convolution (the deepest stays at the
    patch grid, the shallowest comes out 2^(k-1) times finer); then, from the deepest, the running map
    is upsampled 2x, added to the next level and refined (3x3 conv, layer norm, GELU). Then
    `upsample_steps` steps of 3x3 conv, layer norm, GELU and 2x bilinear upsampling, and the per-pixel
    classifier; `up` counts every 2x of both parts."""

    num_classes: int
    upsample_steps: int = 0
    channels: int = 128
    blocks: tuple[int, ...] = ()

    def _refine(self, x, name: str):
        x = nn.Conv(self.channels, (3, 3), param_dtype=jnp.float32, name=f"conv_{name}")(x)
        return nn.gelu(nn.LayerNorm(param_dtype=jnp.float32, name=f"norm_{name}")(x))

    def _fused(self, features: dict):
        states = features.get("hidden_states")
        if states is None:
            raise BadValue("config.task.decoder='multilevel' reads the backbone's block outputs "
                           "(features['hidden_states']), which this backbone does not return; use "
                           "config.task.decoder='last_block'.")
        batch, gh, gw = features["patches"].shape[:3]
        levels = []
        for i, block in enumerate(self.blocks):
            tokens = states[block]
            x = tokens[:, tokens.shape[1] - gh * gw:].reshape(batch, gh, gw, tokens.shape[-1])
            x = nn.LayerNorm(param_dtype=jnp.float32, name=f"level_{i}_norm")(x.astype(jnp.float32))
            x = nn.Dense(self.channels, param_dtype=jnp.float32, name=f"level_{i}_proj")(x)
            factor = 2 ** (len(self.blocks) - 1 - i)
            if factor > 1:
                x = nn.ConvTranspose(self.channels, (factor, factor), strides=(factor, factor),
                                     padding="VALID", param_dtype=jnp.float32, name=f"level_{i}_unpatchify")(x)
            levels.append(x)
        x = levels[-1]
        for i in reversed(range(len(levels) - 1)):
            x = _resized(x, levels[i].shape[1:3]) + levels[i]
            x = self._refine(x, f"fuse_{i}")
        return x

    @nn.compact
    def __call__(self, features: dict):
        x = self._fused(features) if self.blocks else features["patches"]
        for i in range(self.upsample_steps):
            x = self._refine(x, str(i))
            x = _resized(x, (2 * x.shape[1], 2 * x.shape[2]))
        logits = nn.Dense(self.num_classes, param_dtype=jnp.float32, name="classifier")(x)
        return logits.astype(jnp.float32)


def _resized(x, size: tuple[int, int]) -> jnp.ndarray:
    """[B, h, w, C] resized bilinearly to [B, *size, C] (unchanged when already that size)."""
    if x.shape[1:3] == tuple(size):
        return x
    return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), "bilinear", antialias=False)


def decoder_blocks(task_cfg, num_layers: int) -> tuple[int, ...]:
    """The encoder blocks the "multilevel" decoder reads, shallowest first: `task.decoder_blocks`, or
    up to 4 evenly spaced blocks ending at the last (DPT's 2, 5, 8, 11 on 12 blocks)."""
    blocks = tuple(int(b) for b in task_cfg.decoder_blocks)
    if not blocks:
        count = min(4, num_layers)
        return tuple(sorted({num_layers * (j + 1) // count - 1 for j in range(count)}))
    if list(blocks) != sorted(set(blocks)) or not all(0 <= b < num_layers for b in blocks):
        raise BadValue(f"config.task.decoder_blocks={blocks}: give increasing block indices in "
                       f"0..{num_layers - 1} (the backbone has {num_layers} blocks), or () for 4 evenly "
                       f"spaced ones.")
    return blocks


def soft_dice_loss(probabilities, labels, counted, num_classes: int) -> jnp.ndarray:
    """Per image, 1 - the mean over the classes present in its counted labels of the soft Dice
    2 * sum(p * y) / (sum(p) + sum(y)), sums over the counted pixels; 0 for an image with none.

    probabilities [B, H, W, C], labels [B, H, W] (any value where not counted), counted bool [B, H, W]."""
    weight = counted[..., None].astype(jnp.float32)
    onehot = jax.nn.one_hot(jnp.maximum(labels, 0), num_classes) * weight
    probabilities = probabilities * weight
    intersection = jnp.sum(probabilities * onehot, axis=(1, 2))
    total = jnp.sum(probabilities, axis=(1, 2)) + jnp.sum(onehot, axis=(1, 2))
    dice = 2.0 * intersection / jnp.maximum(total, 1e-7)
    present = jnp.sum(onehot, axis=(1, 2)) > 0
    mean = jnp.sum(jnp.where(present, dice, 0.0), axis=-1) / jnp.maximum(jnp.sum(present, axis=-1), 1)
    return jnp.where(jnp.any(present, axis=-1), 1.0 - mean, 0.0)


class MaskSource:
    """One split of image + mask pairs: records {"image", "mask", "name"} (undecoded where stored so)."""

    def __init__(self, name: str, pairs: Sequence[tuple[Any, Any]] | None = None, dataset=None,
                 columns: tuple[str, str] = ("image", "mask"), reduce_labels: bool = False):
        self.name, self.pairs, self.dataset, self.columns = name, pairs, dataset, columns
        self.reduce_labels = reduce_labels  # as config.task.reduce_labels: mask value v is class v - 1
        self._classes: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.pairs) if self.pairs is not None else len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.pairs is not None:
            image, mask = self.pairs[index]
        else:
            row = self.dataset[int(index)]
            image, mask = (row[column] for column in self.columns)
        return {"image": image, "mask": mask, "name": self.describe(index)}

    def labels(self) -> np.ndarray:
        """No per-image class: one stratum, so carved splits are a seeded random split."""
        return np.zeros(len(self), np.int64)

    def classes(self) -> list[np.ndarray]:
        """The classes of each mask's pixels (every mask decoded once, in threads)."""
        if self._classes is None:
            def shown(index: int) -> np.ndarray:
                values = np.unique(paired.load_mask(self[index]["mask"], self.describe(index)))
                return values[values > 0] - 1 if self.reduce_labels else values

            with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
                self._classes = list(pool.map(shown, range(len(self))))
        return self._classes

    def ids(self) -> list:
        if self.pairs is not None:
            return [str(image) for image, _ in self.pairs]
        return list(range(len(self)))

    def describe(self, index: int) -> str:
        if self.pairs is not None:
            return f"{self.pairs[index][0]} (mask {self.pairs[index][1]})"
        return f"{self.name}[{index}]"


def _stems(folder: Path) -> dict[str, Path]:
    """File stem -> image file of a folder (hidden files skipped); duplicate stems are an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: os.fsencode(p.name)):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in found:
            raise BadValue(f"{folder} holds two files with the stem {path.stem!r}: {found[path.stem].name} "
                           f"and {path.name}; keep one.")
        found[path.stem] = path
    return found


def scan_pairs(root: Path) -> list[tuple[str, str]]:
    """(image path, mask path) pairs of `root/images` and `root/masks`, matched by file stem."""
    images, masks = (root / "images", root / "masks")
    for folder in (images, masks):
        if not folder.is_dir():
            raise FileNotFoundError(f"Segmentation folder {root} needs images/ and masks/ subfolders "
                                    f"(same file stems); {folder} is missing.")
    image_files, mask_files = _stems(images), _stems(masks)
    unmatched = sorted(set(image_files) ^ set(mask_files))
    if unmatched:
        raise BadValue(f"{root}: {len(unmatched)} file stem(s) appear in only one of images/ and masks/, "
                       f"e.g. {unmatched[:5]}; every image needs a mask with the same stem.")
    if not image_files:
        raise BadValue(f"{images} holds no images.")
    return [(str(image_files[stem]), str(mask_files[stem])) for stem in image_files]


def scan_folder(root: str, reduce_labels: bool = False) -> dict[str, MaskSource]:
    """The splits of a segmentation folder: `root/{images,masks}` (one train split) or split folders."""
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"Segmentation folder {path} does not exist: check config.data.source.")
    known = {alias for aliases in SPLIT_ALIASES.values() for alias in aliases}
    split_dirs = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name in known)
    if not split_dirs:
        return {"train": MaskSource(f"{path}", scan_pairs(path), reduce_labels=reduce_labels)}
    return {split: MaskSource(f"{path}/{split}", scan_pairs(path / split), reduce_labels=reduce_labels)
            for split in split_dirs}


def _column(columns: Sequence[str], configured: str | None, names: Sequence[str], key: str,
            where: str) -> str:
    """The configured column, else the first of `names` present."""
    if configured is not None:
        if configured not in columns:
            raise BadKey(f"{where}: {key}={configured!r} is not a column; the columns are {list(columns)}.")
        return configured
    found = next((name for name in names if name in columns), None)
    if found is None:
        raise BadKey(f"{where}: none of the columns {list(columns)} is one of {list(names)}; set {key}.")
    return found


def from_hf(dataset, data_cfg, task_cfg, name: str = "hf:<in-memory>") -> dict[str, MaskSource]:
    """The splits of a `datasets.Dataset` (one train split) or `DatasetDict` with an image and a mask
    column (found by name, or `config.data.image_column` / `config.task.mask_column`)."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        dataset = datasets.DatasetDict({"train": dataset})
    splits = {}
    for split_name, split in dataset.items():
        columns = (_column(split.column_names, data_cfg.image_column, IMAGE_COLUMNS,
                           "config.data.image_column", name),
                   _column(split.column_names, task_cfg.get("mask_column"), MASK_COLUMNS,
                           "config.task.mask_column", name))
        split = split.select_columns(list(columns))
        for column in columns:
            if isinstance(split.features[column], datasets.Image):
                split = split.cast_column(column, datasets.Image(decode=False))
        splits[split_name] = MaskSource(f"{name}/{split_name}", dataset=split, columns=columns,
                                        reduce_labels=bool(task_cfg.get("reduce_labels")))
    return splits


def class_names_of(source_root: str | None, task_cfg) -> list[str]:
    """`config.task.class_names`, else the lines of `<folder>/classes.txt`."""
    names = task_cfg.get("class_names")
    if names:
        return [str(n) for n in names]
    if source_root is not None:
        path = Path(source_root).expanduser() / CLASSES_FILE
        if path.is_file():
            return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raise BadValue("Segmentation needs its class names (mask value i is class i): set "
                   "config.task.class_names, or write a classes.txt (one name per line) in the data "
                   "folder.")


@dataclasses.dataclass(frozen=True)
class PairTransforms:
    """Decodes an image + mask record and applies the same view to both (picklable for grain)."""

    size: tuple[int, int]
    resample: int
    augment: Any
    ignore_index: int
    reduce_labels: bool

    def _load(self, record: dict) -> tuple[Image.Image, np.ndarray]:
        image = load_rgb(record["image"], record["name"])
        mask = paired.load_mask(record["mask"], record["name"])
        if mask.shape != (image.height, image.width):
            raise BadValue(f"{record['name']}: the mask is {mask.shape[1]}x{mask.shape[0]} but the image "
                           f"is {image.width}x{image.height}; a mask has one label per image pixel.")
        if self.reduce_labels:  # 0 is "unlabelled"; class i + 1 becomes class i.
            mask = np.where(mask == 0, self.ignore_index, mask - 1)
        return image, mask

    def _example(self, image: Image.Image, mask: np.ndarray, view: paired.View) -> dict:
        return {"image": paired.apply_to_image(image, view, self.size, self.resample),
                "mask": paired.apply_to_mask(mask, view, self.size)}

    def train(self, record: dict, rng: np.random.Generator) -> dict:
        image, mask = self._load(record)
        example = self._example(image, mask, paired.random_view(image.height, image.width, rng, self.augment))
        example["image"] = paired.photometric(example["image"], rng, self.augment)
        return example

    def eval(self, record: dict) -> dict:
        image, mask = self._load(record)
        return self._example(image, mask, paired.full_view(image.height, image.width))


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@register_task("segmentation")
class Segmentation(Task):
    """Semantic segmentation: per-pixel classes from the patch tokens (see the module docstring)."""

    best_metric = ("mean_iou", "max")

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = ml_collections.ConfigDict()
        # Class names, index i naming mask value i; None = read <data folder>/classes.txt.
        config.class_names = config_dict.placeholder(tuple)
        # Mask value of unlabelled pixels: not counted in the loss or the metrics.
        config.ignore_index = 255
        # True for masks whose 0 means "unlabelled" and whose classes start at 1 (ADE20K /
        # scene_parse_150): 0 becomes ignore_index and every other value drops by one.
        config.reduce_labels = False
        # Column of the mask image in a Hugging Face dataset; None = found by name.
        config.mask_column = config_dict.placeholder(str)
        # Decoder: "last_block" (the final block's patch grid) or "multilevel" (several blocks'
        # outputs unpatchified to finer grids and fused, DPT-like: sharper boundaries, thin structures).
        config.decoder = "last_block"
        # Blocks the multilevel decoder reads (0-based, increasing); () = 4 evenly spaced, the last included.
        config.decoder_blocks = ()
        # Then n steps of conv + 2x upsampling before the per-pixel classifier (0 with "last_block":
        # a linear classifier per patch).
        config.upsample_steps = 0
        # Channels of the decoder's levels and upsampling steps.
        config.head_channels = 128
        # Loss: "ce" (per-pixel cross-entropy), "dice" (soft Dice over the classes present in each
        # image) or "ce+dice" (their sum); ignore_index pixels count in neither.
        config.loss = "ce"
        # The class left untinted in overlays (predict's *_overlay.png, the report's samples), named
        # in their legend as such; None (or a name that is no class) tints every class.
        config.background = "background"
        return config

    def __init__(self, config: ml_collections.ConfigDict, class_names: Sequence[str]):
        super().__init__(config, class_names)
        if 0 <= self.config.ignore_index < self.num_classes:
            raise BadValue(f"config.task.ignore_index={self.config.ignore_index} is one of the "
                           f"{self.num_classes} classes; use a value outside 0..{self.num_classes - 1} "
                           "(255).")
        if self.config.upsample_steps < 0:
            raise BadValue(f"config.task.upsample_steps must be >= 0; got {self.config.upsample_steps}.")
        if self.config.decoder not in DECODERS:
            raise BadValue(f"config.task.decoder={self.config.decoder!r}; use one of {DECODERS}.")
        if self.config.decoder_blocks and self.config.decoder != "multilevel":
            raise BadValue(f"config.task.decoder_blocks={tuple(self.config.decoder_blocks)} is read by "
                           f"config.task.decoder='multilevel' only (decoder={self.config.decoder!r}).")
        if self.config.loss not in LOSSES:
            raise BadValue(f"config.task.loss={self.config.loss!r}; use one of {LOSSES}.")
        fields = {"loss": clu_metrics.Average.from_output("loss"),
                  "confusion_matrix": ConfusionMatrix.of_size(self.num_classes)}
        samples = FirstExamples.of(("image", "truth", "predicted"), SAMPLES)
        self._metrics = {True: clu_metrics.Collection.create(**fields),
                         False: clu_metrics.Collection.create(**fields, samples=samples)}

    # ---- data ----------------------------------------------------------------------------------
    @classmethod
    def open_source(cls, data_cfg, task_cfg) -> ImageDataset:
        spec = parse_source(data_cfg.source, ("hf", "folder", "path"),
                            "'folder:PATH' (images/ + masks/) or 'hf:NAME[:CONFIG]' (an image and an annotation "
                            "column)")
        if spec.kind == "hf":
            raw = from_hf(hf.load_dataset_dict(spec), data_cfg, task_cfg, name=spec.text)
            class_names = class_names_of(None, task_cfg)
        else:
            root = spec.local_path()
            if not os.path.isdir(root):
                raise BadValue(f"config.data.source={spec.text!r}: segmentation reads a folder holding "
                               "images/ and masks/; this is not a folder.")
            raw = scan_folder(root, bool(task_cfg.get("reduce_labels")))
            class_names = class_names_of(root, task_cfg)
        return splits_lib.resolve_splits(spec.text, raw, class_names, data_cfg)

    def data_transforms(self, preprocessing, data_cfg) -> RecordTransforms:
        size = tuple(preprocessing.input_size)
        pair = PairTransforms(size, preprocessing.resample, data_cfg.augment, self.config.ignore_index,
                              self.config.reduce_labels)
        padding = {"image": np.zeros((*size, 3), np.uint8),
                   "mask": np.full(size, self.config.ignore_index, np.int32)}
        return RecordTransforms(train=pair.train, eval=pair.eval, padding=padding)

    # ---- model, loss, metrics ------------------------------------------------------------------
    def make_head(self, spec: Any) -> nn.Module:
        self._output_size = tuple(spec.image_size)  # predicted masks come at the input's size
        blocks = decoder_blocks(self.config, spec.num_layers) if self.config.decoder == "multilevel" else ()
        return SegmentationHead(self.num_classes, self.config.upsample_steps, self.config.head_channels, blocks)

    def _pixels(self, outputs, batch: dict):
        """(logits at mask size, labels with ignored pixels as -1, counted bool [B, H, W])."""
        labels = batch["mask"].astype(jnp.int32)
        logits = _resized(outputs.astype(jnp.float32), labels.shape[1:3])
        counted = (labels >= 0) & (labels < self.num_classes) & (labels != self.config.ignore_index)
        valid = batch.get("valid")
        if valid is not None:
            counted &= jnp.asarray(valid, bool)[:, None, None]
        return logits, jnp.where(counted, labels, -1), counted

    def loss(self, outputs, batch: dict) -> tuple[jnp.ndarray, dict]:
        """`task.loss` of the batch: cross-entropy averaged over every counted pixel of the batch,
        and/or soft Dice averaged over the images with counted pixels (`soft_dice_loss`); aux: each
        image's own loss ("loss", its cross-entropy averaged over its counted pixels and/or its
        Dice loss), the logits at mask size, the labels and the images counted."""
        logits, labels, counted = self._pixels(outputs, batch)
        count = jnp.sum(counted, axis=(1, 2))
        images = count > 0
        per_image, loss = jnp.zeros(count.shape, jnp.float32), jnp.zeros([], jnp.float32)
        if self.config.loss in ("ce", "ce+dice"):
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
            total = jnp.sum(jnp.where(counted, losses, 0.0), axis=(1, 2))
            per_image += total / jnp.maximum(count, 1)
            loss += jnp.sum(total) / jnp.maximum(jnp.sum(count), 1).astype(jnp.float32)
        if self.config.loss in ("dice", "ce+dice"):
            dice = soft_dice_loss(jax.nn.softmax(logits, axis=-1), labels, counted, self.num_classes)
            per_image += dice
            loss += jnp.sum(dice) / jnp.maximum(jnp.sum(images), 1).astype(jnp.float32)
        return loss, {"loss": per_image, "logits": logits, "labels": labels, "mask": images}

    def metrics(self, training: bool = False) -> type[clu_metrics.Collection]:
        """Loss (per-image mean, averaged over images) and the pixel confusion matrix, in training too
        (it is a [C, C] sum, cheap); evaluations add the first images with their true and predicted
        masks, which the report draws."""
        return self._metrics[training]

    def metric_inputs(self, outputs, batch: dict, aux: dict) -> dict[str, jnp.ndarray]:
        return {**aux, "image": batch["image"], "truth": batch["mask"].astype(jnp.int32),
                "predicted": jnp.argmax(aux["logits"], axis=-1).astype(jnp.int32)}

    def summarize(self, computed: dict) -> dict[str, float]:
        """loss, mean_iou, mean_dice, pixel_accuracy and mean_accuracy (the mean per-class accuracy)."""
        stats = iou_stats(computed["confusion_matrix"])
        accuracy = stats["accuracy"]
        return {"loss": float(computed["loss"]), "mean_iou": stats["mean_iou"], "mean_dice": stats["mean_dice"],
                "pixel_accuracy": stats["pixel_accuracy"],
                "mean_accuracy": float(np.nanmean(accuracy)) if np.isfinite(accuracy).any() else np.nan}

    def per_class_rows(self, computed: dict) -> list[dict]:
        """One row per class: IoU, Dice, accuracy (recall), labelled and predicted pixels."""
        matrix = np.asarray(computed["confusion_matrix"])
        stats = iou_stats(matrix)
        return [{"class": name, "iou": _none_if_nan(stats["iou"][i]), "dice": _none_if_nan(stats["dice"][i]),
                 "accuracy": _none_if_nan(stats["accuracy"][i]), "pixels": int(matrix[i].sum()),
                 "predicted_pixels": int(matrix[:, i].sum())}
                for i, name in enumerate(self.class_names)]

    def report(self, computed: dict, outdir: str | os.PathLike, split: str) -> dict:
        """Writes per_class.csv/.md (per-class IoU), report.json, confusion_matrix.png (pixels) and
        samples.png (the split's first images: the image, its true and its predicted mask as overlays
        with a legend), their number in report.json's "samples"."""
        summary = self.summarize(computed)
        rows = self.per_class_rows(computed)
        matrix = np.asarray(computed["confusion_matrix"])
        result = {"split": split, "task": self.name, "metrics": summary, "per_class": rows,
                  "class_names": self.class_names, "confusion_matrix": matrix.tolist()}
        Path(outdir).mkdir(parents=True, exist_ok=True)
        plot_confusion_matrix(matrix, self.class_names, Path(outdir) / "confusion_matrix.png",
                              title=f"Pixel confusion matrix ({split})")
        samples = computed.get("samples")
        if samples:
            panels = [[("image", image, None), ("true", image, truth), ("predicted", image, predicted)]
                      for image, truth, predicted in zip(samples["image"], samples["truth"], samples["predicted"])]
            save_figure(self.overlay_figure(panels, f"{split}: the first {len(panels)} images", inches=2.2),
                        Path(outdir) / "samples.png")
            result["samples"] = len(panels)
        write_evaluation_report(outdir, split, summary, rows, result)
        return result

    def report_sections(self, report: dict) -> list[dict]:
        """The sample overlays (samples.png): the split's first images with their true and predicted
        masks; the per-class IoU is in the common per-class table."""
        if not report.get("samples"):
            return []
        untinted = f" ({self.config.background} is left untinted)" if self._background() is not None else ""
        return [{"title": f"Samples ({report['samples']})",
                 "text": f"The split's first images, their true and their predicted masks{untinted}.",
                 "figures": ["samples.png"]}]

    # ---- overlays ------------------------------------------------------------------------------
    def _background(self) -> int | None:
        """The index of the class left untinted (`task.background`), None when no class is."""
        name = self.config.background
        return self.class_names.index(name) if name in self.class_names else None

    def overlay(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3]: each class's colour (`class_colours`) half over the image [H, W, 3], the
        background class and pixels of no class (ignore_index) left as they are."""
        palette = class_colours(self.num_classes) * 255.0
        mask = np.asarray(mask)
        tinted = (mask >= 0) & (mask < self.num_classes) & (mask != self._background())
        out = np.asarray(image, np.float32).copy()
        out[tinted] = 0.5 * out[tinted] + 0.5 * palette[mask[tinted]]
        return out.round().astype(np.uint8)

    def overlay_figure(self, panels: Sequence[Sequence[tuple[str, Any, Any]]], title: str | None = None,
                       inches: float | None = None):
        """A matplotlib figure of a grid of panels, each (title, RGB image, mask or None: the image
        alone) drawn with `overlay`, and one legend naming the colour of every class the masks show
        and the untinted background class: the one picture of a mask, for predict's
        *_overlay.png and the report's samples.png alike. `inches`: a panel's longer side; None:
        the image's own pixels (at 100 dpi, at least 300)."""
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch

        rows, columns = len(panels), max(len(row) for row in panels)
        height, width = np.asarray(panels[0][0][1]).shape[:2]
        side = (inches or max(height, width, 300) / 100) / max(height, width)  # inches per pixel
        fig = Figure(figsize=(columns * width * side + 0.4, rows * height * side + 0.9), layout="constrained")
        axes = fig.subplots(rows, columns, squeeze=False)
        shown: set[int] = set()
        for row, row_axes in zip(panels, axes):
            for ax, (name, image, mask) in zip(row_axes, row):
                ax.imshow(np.asarray(image) if mask is None else self.overlay(image, mask),
                          interpolation="nearest")
                ax.set_title(name, fontsize=9)
                if mask is not None:
                    shown.update(int(c) for c in np.unique(mask) if 0 <= c < self.num_classes)
            for ax in row_axes:
                ax.set_axis_off()
        palette = class_colours(self.num_classes)
        background = self._background()
        handles = [Patch(facecolor=palette[c], label=self.class_names[c]) for c in sorted(shown - {background})]
        if background is not None:
            handles.append(Patch(facecolor="none", edgecolor="grey", label=f"{self.class_names[background]} (untinted)"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8,
                   title="classes")
        if title:
            fig.suptitle(title, fontsize=10)
        return fig

    # ---- prediction ----------------------------------------------------------------------------
    def predict(self, outputs, top_k: int) -> dict[str, jnp.ndarray]:
        """{"mask": int32 [B, H, W] most probable class per input pixel, "probability": its softmax}."""
        size = self._output_size
        probabilities = jax.nn.softmax(_resized(outputs.astype(jnp.float32), size), axis=-1)
        return {"mask": jnp.argmax(probabilities, axis=-1).astype(jnp.int32),
                "probability": jnp.max(probabilities, axis=-1)}

    def prediction_records(self, predictions: dict, images, names, outdir) -> list[dict]:
        """Per image, `<name>_mask.png` (the predicted class of every pixel at the image's own size:
        `predict`'s mask resized, nearest neighbour; 8-bit, 16-bit past 256 classes) and
        `<name>_overlay.png` (`overlay_figure`: the classes' colours over the image, the background
        untinted, and a legend); the record gives both paths and the pixels of each predicted class:
        {"mask", "overlay", "class_pixels": {name: pixels}}."""
        records = []
        for small, image, name in zip(predictions["mask"], images, names):
            mask = paired.apply_to_mask(small, paired.full_view(*small.shape), (image.height, image.width))
            mask_path = os.path.join(outdir, f"{name}_mask.png")
            overlay_path = os.path.join(outdir, f"{name}_overlay.png")
            Image.fromarray(mask.astype(np.uint8 if self.num_classes <= 256 else np.uint16)).save(mask_path)
            save_figure(self.overlay_figure([[("predicted", np.asarray(image), mask)]]), overlay_path)
            counts = np.bincount(mask.ravel(), minlength=self.num_classes)
            records.append({"mask": mask_path, "overlay": overlay_path,
                            "class_pixels": {self.class_names[c]: int(counts[c]) for c in np.flatnonzero(counts)}})
        return records

