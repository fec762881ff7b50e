"""Image-classification sources: `open_source(data_cfg)` turns `config.data.source` into an `ImageDataset`.

Records are `{"image": PIL image | bytes | {"bytes","path"} | path | uint8 array, "label": int}` (the
record model is `vitjax.data.records`). Source kinds: "hf:NAME[:CONFIG]" (vitjax.data.hf),
"folder:PATH" or a plain existing folder (vitjax.data.folders), "tfds:NAME" (optional extra),
"demo:digits" (scikit-learn's digits).
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np

from vitjax.data import folders, hf, splits as splits_lib
from vitjax.data.records import ArraySource, ImageDataset, RecordSource
from vitjax.data.source_spec import parse_source
from vitjax.errors import BadKey, BadValue

USAGE = ("'hf:NAME[:CONFIG]' (a Hugging Face dataset), 'folder:PATH' or an existing folder path, "
         "'tfds:NAME' (TensorFlow Datasets) or 'demo:digits'")

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
    spec = parse_source(data_cfg.source, ("hf", "folder", "tfds", "demo", "path"), USAGE)
    if spec.kind == "hf":
        raw, class_names = hf.from_hf(hf.load_dataset_dict(spec), data_cfg, name=spec.text)
    elif spec.kind in ("folder", "path"):
        raw, class_names = folders.scan_folder(spec.local_path(), data_cfg.skip_corrupt)
    elif spec.kind == "tfds":
        raw, class_names = open_tfds(spec.name)
    elif spec.name == "digits":
        raw, class_names = demo_digits()
    else:
        raise BadValue(f"Unknown demo source {spec.text!r}: the only demo is 'demo:digits'.")
    return splits_lib.resolve_splits(spec.text, raw, class_names, data_cfg)


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
        raise BadKey(f"TFDS dataset {spec!r} has features {list(features)}; vitjax needs an 'image' "
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
