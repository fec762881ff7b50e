"""Data sources: `open_source(data_cfg)` turns `config.data.source` into an `ImageDataset`.

An `ImageDataset` holds random-access splits ("train", "validation", "test"), each a `RecordSource`
(`len()`, `[i] -> {"image": PIL image | bytes | {"bytes","path"} | path | uint8 array, "label": int}`),
the class names, and where every split came from (for the audit file written by `splits.write_split`).
Source kinds: "hf:NAME[:CONFIG]" (vitjax.data.hf), "folder:PATH" or a plain existing path
(vitjax.data.folders), "tfds:NAME" (optional extra), "demo:digits" (scikit-learn's digits).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any, Protocol, Sequence

import numpy as np

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
        """int64 [len] labels, read without decoding images (stratification, audits)."""

    def ids(self) -> list:
        """One identifier per record (file path or index in the original split), for audits."""

    def describe(self, index: int) -> str:
        """Human-readable name of a record for error messages (a file path, `split[i]`)."""


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
        raise ValueError(
            f"{where}: split '{split_name}' has {bad.size} label(s) outside the {len(class_names)} classes "
            f"{list(class_names)[:10]}{'...' if len(class_names) > 10 else ''}; the first is {split.describe(i)} "
            f"with label {int(labels[i])}. Fix the labels, or leave that split out (e.g. an unlabelled test "
            f"split: config.data.test_split = \"{CARVE}\" carves a labelled one out of train).")


def demo_digits() -> tuple[dict[str, RecordSource], list[str]]:
    """scikit-learn's 1,797 8x8 digit scans (grey 0..16) as uint8 RGB images, one "train" split.

    Read from the file `sklearn.datasets.load_digits` reads (64 pixels and the label per row),
    found without importing scikit-learn, which takes seconds; `load_digits` where it is not there.
    """
    spec = importlib.util.find_spec("sklearn")
    path = spec and os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if path and os.path.isfile(path):
        table = np.loadtxt(path, delimiter=",")
        pixels, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits
        digits = load_digits()
        pixels, labels = digits.images, digits.target
    grey = np.round(pixels * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    return {"train": ArraySource("digits", images, labels)}, [str(d) for d in range(10)]


def open_source(data_cfg) -> ImageDataset:
    """Opens `data_cfg.source`, resolves train/validation/test (carving missing ones from train)."""
    from vitjax.data import splits as splits_lib
    source = data_cfg.source
    if not isinstance(source, str) or not source:
        raise ValueError(f"config.data.source must be a string such as 'hf:beans', 'folder:/data/x', "
                         f"'tfds:cifar10' or 'demo:digits'; got {source!r}.")
    kind, _, rest = source.partition(":")
    if kind == "hf" and rest:
        from vitjax.data import hf
        raw, class_names = hf.load_hf(rest, data_cfg)
    elif kind == "folder" and rest:
        from vitjax.data import folders
        raw, class_names = folders.scan_folder(rest, data_cfg.get("skip_corrupt", False))
    elif kind == "tfds" and rest:
        raw, class_names = open_tfds(rest)
    elif source == "demo:digits":
        raw, class_names = demo_digits()
    elif os.path.isdir(source):
        from vitjax.data import folders
        raw, class_names = folders.scan_folder(source, data_cfg.get("skip_corrupt", False))
    else:
        raise ValueError(
            f"Unknown config.data.source {source!r}: use 'hf:NAME[:CONFIG]' (a Hugging Face dataset), "
            "'folder:PATH' or an existing folder path, 'tfds:NAME' (TensorFlow Datasets) or 'demo:digits'.")
    return splits_lib.resolve_splits(source, raw, class_names, data_cfg)


def open_tfds(spec: str) -> tuple[dict[str, RecordSource], list[str]]:
    """A TFDS dataset through `tfds.data_source` (array_record random access); needs the tfds extra."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            f"config.data.source 'tfds:{spec}' needs TensorFlow Datasets, which is not installed: "
            "run `pip install 'vitjax[tfds]'` (or use an 'hf:' source instead).") from e
    builder = tfds.builder(spec)
    features = builder.info.features
    image_key = next((k for k in ("image", "img") if k in features), None)
    label_key = next((k for k in ("label", "labels") if k in features), None)
    if image_key is None or label_key is None:
        raise KeyError(f"TFDS dataset {spec!r} has features {list(features)}; vitjax needs an 'image' "
                       "and a 'label' feature. Convert it to an image folder or a Hugging Face dataset.")
    raw = {name: TFDSSource(f"tfds:{spec}/{name}", tfds.data_source(spec, split=name), image_key, label_key)
           for name in builder.info.splits}
    return raw, list(features[label_key].names)


class TFDSSource:
    """A split of a TFDS array_record data source."""

    def __init__(self, name: str, data_source, image_key: str, label_key: str):
        self.name, self.data_source = name, data_source
        self.image_key, self.label_key = image_key, label_key
        self._labels = None

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.data_source[index]
        return {"image": np.asarray(record[self.image_key]), "label": int(record[self.label_key])}

    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.asarray([self.data_source[i][self.label_key] for i in range(len(self))],
                                      np.int64)
        return self._labels

    def ids(self) -> list:
        return list(range(len(self)))

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"
