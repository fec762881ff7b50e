"""Multi-label sources and transforms: records {"image", "labels": class indices, "name"} -> batches
{"image", "label": float32 multi-hot [C]}.

Sources (`open_multilabel`): "hf:NAME[:CONFIG]" with a `Sequence(ClassLabel)` column (found as
"labels"/"label" or the only such column, or `config.data.label_column`), or "folder:ROOT" (or a plain
folder) holding `labels.csv` with the columns `image` (a path relative to ROOT) and `labels` (class
names separated by ";"; empty for none) — or split folders `ROOT/{train,validation,test}/labels.csv`;
class names are the sorted union of the names used. Carved splits are stratified on each image's first
label (-1 without labels would not stratify, so those count as class 0); `classes()` gives each
image's labels, which the split summary counts. Images go through the path of image + class-label
records (`vitjax.data.pipeline.image_label_transforms`: decode cache, host or device augmentation).
"""
from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vitjax.data import hf, splits as splits_lib
from vitjax.data.pipeline import RecordTransforms, TrainAugment, image_label_transforms
from vitjax.data.source_spec import parse_source
from vitjax.data.records import SPLIT_ALIASES, ImageDataset
from vitjax.errors import BadKey, BadValue

LABELS_FILE = "labels.csv"


class MultiLabelSource:
    """One split: (image, [class index, ...]) rows as records {"image", "labels", "name"}."""

    def __init__(self, name: str, images: Sequence[Any] | None, label_sets: Sequence[Sequence[int]],
                 dataset=None, image_column: str | None = None):
        self.name, self.images, self.label_sets = name, images, [list(map(int, s)) for s in label_sets]
        self.dataset, self.image_column = dataset, image_column

    def __len__(self) -> int:
        return len(self.label_sets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.images[index] if self.images is not None else self.dataset[int(index)][self.image_column]
        return {"image": image, "labels": self.label_sets[index], "name": self.describe(index)}

    def labels(self) -> np.ndarray:
        """Each image's first label (0 without labels): the stratification key of carved splits."""
        return np.asarray([s[0] if s else 0 for s in self.label_sets], np.int64)

    def classes(self) -> list[np.ndarray]:
        """Each image's labels (`labels()` are strata only)."""
        return [np.asarray(s, np.int64) for s in self.label_sets]

    def ids(self) -> list:
        return [str(i) for i in self.images] if self.images is not None else list(range(len(self)))

    def describe(self, index: int) -> str:
        return str(self.images[index]) if self.images is not None else f"{self.name}[{index}]"


def read_csv_split(folder: Path) -> list[tuple[str, list[str]]]:
    """(image path, label names) rows of `folder/labels.csv`."""
    path = folder / LABELS_FILE
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"image", "labels"} <= set(reader.fieldnames or ()):
            raise BadValue(f"{path} needs the columns 'image' and 'labels'; it has {reader.fieldnames}.")
        rows = [(str(folder / row["image"]), [n.strip() for n in row["labels"].split(";") if n.strip()])
                for row in reader]
    missing = [image for image, _ in rows if not os.path.isfile(image)]
    if missing:
        raise FileNotFoundError(f"{path} lists {len(missing)} image(s) that do not exist, "
                                f"e.g. {missing[:3]}.")
    return rows


def scan_csv_folder(root: str) -> tuple[dict[str, MultiLabelSource], list[str]]:
    """The splits of a folder with labels.csv (or split folders with one each) and the class names."""
    path = Path(root).expanduser().resolve()
    if (path / LABELS_FILE).is_file():
        folders = {"train": path}
    else:
        known = {alias for aliases in SPLIT_ALIASES.values() for alias in aliases}
        children = sorted(path.iterdir()) if path.is_dir() else []
        folders = {p.name: p for p in children if p.name in known and (p / LABELS_FILE).is_file()}
    if not folders:
        raise FileNotFoundError(f"Multi-label folder {path} needs {LABELS_FILE} (columns image, labels with "
                                "';'-separated class names), or split folders holding one.")
    rows = {split: read_csv_split(folder) for split, folder in folders.items()}
    class_names = sorted({name for split in rows.values() for _, names in split for name in names})
    index = {name: i for i, name in enumerate(class_names)}
    splits = {split: MultiLabelSource(f"{path}/{split}", [image for image, _ in split_rows],
                                      [[index[n] for n in names] for _, names in split_rows])
              for split, split_rows in rows.items()}
    return splits, class_names


def from_hf(dataset, data_cfg, name: str = "hf:<in-memory>") -> tuple[dict[str, MultiLabelSource], list[str]]:
    """The splits of a `datasets.Dataset`/`DatasetDict` with a `Sequence(ClassLabel)` label column."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        dataset = datasets.DatasetDict({"train": dataset})
    first = next(iter(dataset.values()))

    def is_label_list(column):
        return isinstance(getattr(first.features[column], "feature", None), datasets.ClassLabel)

    label_col = data_cfg.label_column
    if label_col is None:
        typed = [c for c in first.column_names if is_label_list(c)]
        label_col = ([c for c in ("labels", "label") if c in typed] or typed or [None])[0]
    if label_col not in first.column_names or not is_label_list(label_col):
        raise BadKey(f"{name}: multi-label classification needs a Sequence(ClassLabel) column; the "
                     f"features are {dict(first.features)}. Set config.data.label_column.")
    image_col = data_cfg.image_column or next(
        (c for c in ("image", "img") if c in first.column_names), None)
    if image_col is None:
        raise BadKey(f"{name}: no image column among {first.column_names}; set config.data.image_column.")
    splits = {}
    for split_name, split in dataset.items():
        split = split.select_columns([image_col, label_col])
        if isinstance(split.features[image_col], datasets.Image):
            split = split.cast_column(image_col, datasets.Image(decode=False))
        splits[split_name] = MultiLabelSource(f"{name}/{split_name}", None, split[label_col], split,
                                              image_col)
    return splits, list(first.features[label_col].feature.names)


def open_multilabel(data_cfg) -> ImageDataset:
    """`open_source` for multi-label records: an "hf:" dataset or a folder with labels.csv."""
    spec = parse_source(data_cfg.source, ("hf", "folder", "path"),
                        f"'hf:NAME[:CONFIG]' (a Sequence(ClassLabel) column) or 'folder:PATH' (with {LABELS_FILE})")
    if spec.kind == "hf":
        raw, class_names = from_hf(hf.load_dataset_dict(spec), data_cfg, name=spec.text)
    else:
        raw, class_names = scan_csv_folder(spec.local_path())
    return splits_lib.resolve_splits(spec.text, raw, class_names, data_cfg)


def multi_hot_transforms(preprocessing, data_cfg, num_classes: int) -> RecordTransforms:
    """The transforms of multi-label records: the image as for image + class-label records (decode
    cache and device-side augmentation included), the labels as a multi-hot "label" [C]; no mixup."""
    images = image_label_transforms(preprocessing, data_cfg)
    multi_hot = MultiHot(images.train, num_classes)
    return RecordTransforms(train=multi_hot.train, eval=multi_hot.eval,
                            padding={**images.padding, "label": np.zeros((num_classes,), np.float32)},
                            decode_cache=True, device_augment=True)


@dataclasses.dataclass(frozen=True)
class MultiHot:
    """Decoded multi-label record -> {"image", "label": float32 multi-hot [C]} (picklable)."""

    augment: TrainAugment
    num_classes: int

    def _label(self, record: dict) -> np.ndarray:
        label = np.zeros((self.num_classes,), np.float32)
        label[np.asarray(record["labels"], np.int64)] = 1.0
        return label

    def train(self, record: dict, rng: np.random.Generator) -> dict:
        return {"image": self.augment.image(record, rng), "label": self._label(record)}

    def eval(self, record: dict) -> dict:
        return {"image": record["image"], "label": self._label(record)}
