"""The record model every data module shares; imports nothing from vitjax.

A split is a `RecordSource` (`len()`, `[i] -> record dict`, `labels()`, `ids()`, `describe(i)`, and
`classes()` where `labels()` are not the records' classes);
`ArraySource` holds records in memory, `SubsetSource` is a split carved out of another, and an
`ImageDataset` is the splits of one source with its class names and where each split came from.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence

import numpy as np

from vitjax.errors import BadValue

SPLITS = ("train", "validation", "test")
# A split name meaning "do not use the source's split of that kind; carve it out of train".
CARVE = "carve"
# Names a source may use for each split, in order of preference.
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}


class RecordSource(Protocol):
    """One split: random access to `{"image": ..., "label": int}` records."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def labels(self) -> np.ndarray:
        """int64 [len] labels, read without decoding images: the stratum of each record for carving
        splits, which is its class unless the source has `classes()`."""

    def ids(self) -> list:
        """One identifier per record (file path or index in the original split), for audits."""

    def describe(self, index: int) -> str:
        """Human-readable name of a record for error messages (a file path, `split[i]`)."""

    # Optional, for sources whose `labels()` are strata only (multi-label, masks, boxes):
    # def classes(self) -> list[np.ndarray] | None:
    #     """Per record, the class indices its image shows (counted by the split summary and its
    #     warnings); None when `labels()` are the classes."""


def record_classes(split: RecordSource) -> list[np.ndarray] | None:
    """Per record of `split`, the class indices it shows; None when its `labels()` are its classes."""
    classes = getattr(split, "classes", None)
    return None if classes is None else classes()


def class_image_counts(split: RecordSource, num_classes: int) -> np.ndarray:
    """int64 [num_classes]: how many records of `split` show each class."""
    classes = record_classes(split)
    if classes is None:
        return np.bincount(split.labels(), minlength=num_classes)[:num_classes]
    counts = np.zeros(num_classes, np.int64)
    for shown in classes:
        shown = np.asarray(shown, np.int64)
        counts[np.unique(shown[(shown >= 0) & (shown < num_classes)])] += 1
    return counts


class ArraySource:
    """Records held in memory as a uint8 image array [N, H, W, 3] and int labels."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray):
        self.name = name
        self.images = images
        self._labels = np.asarray(labels, np.int64)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "label": int(self._labels[index])}

    def labels(self) -> np.ndarray:
        return self._labels

    def ids(self) -> list:
        return list(range(len(self)))

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"


class SubsetSource:
    """The records of `parent` at `indices` (a split carved out of another)."""

    def __init__(self, parent: RecordSource, indices: Sequence[int]):
        self.parent = parent
        self.indices = np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.parent[int(self.indices[index])]

    def labels(self) -> np.ndarray:
        return self.parent.labels()[self.indices]

    def classes(self) -> list[np.ndarray] | None:
        parent = record_classes(self.parent)
        return None if parent is None else [parent[i] for i in self.indices]

    def ids(self) -> list:
        parent_ids = self.parent.ids()
        return [parent_ids[i] for i in self.indices]

    def describe(self, index: int) -> str:
        return self.parent.describe(int(self.indices[index]))


@dataclasses.dataclass
class ImageDataset:
    """The splits of a source, its class names, and the provenance of each split."""

    source: str
    splits: dict[str, RecordSource]
    class_names: list[str]
    # split -> where it came from, e.g. {"train": "train", "validation": "carved from train"}.
    origin: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def check_labels(split: RecordSource, split_name: str, class_names: Sequence[str], where: str) -> None:
    """Raises ValueError naming the first record whose label is outside the class list."""
    labels = split.labels()
    bad = np.flatnonzero((labels < 0) | (labels >= len(class_names)))
    if bad.size:
        i = int(bad[0])
        raise BadValue(
            f"{where}: split '{split_name}' has {bad.size} label(s) outside the {len(class_names)} classes "
            f"{list(class_names)[:10]}{'...' if len(class_names) > 10 else ''}; the first is {split.describe(i)} "
            f"with label {int(labels[i])}. Fix the labels, or leave that split out (e.g. an unlabelled test "
            f"split: config.data.test_split = \"{CARVE}\" carves a labelled one out of train).")
