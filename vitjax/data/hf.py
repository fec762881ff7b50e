"""Hugging Face `datasets` sources: "hf:NAME[:CONFIG]" by name, or an in-memory Dataset/DatasetDict.

The image and label columns are found automatically where unambiguous ("image"/"img" or the only
`Image` feature; "label"/"labels" or the only `ClassLabel` feature) and can be set with
`config.data.image_column` / `config.data.label_column`. Class names come from the `ClassLabel`;
string labels become classes in sorted order; plain integer labels are named "0", "1", ...
Images are read undecoded (`Image(decode=False)`) so decoding happens in the pipeline's workers.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vitjax.data import splits as splits_lib
from vitjax.data.records import RecordSource
from vitjax.data.source_spec import SourceSpec
from vitjax.errors import BadKey, BadValue

IMAGE_NAMES = ("image", "img")
LABEL_NAMES = ("label", "labels")


def load_dataset_dict(spec: SourceSpec):
    """`datasets.load_dataset` of an "hf:NAME[:CONFIG]" source (hub cache or download); every task's
    hf: source goes through here, so a failure always names the source and the fix."""
    import datasets
    try:
        return datasets.load_dataset(spec.name, spec.config)
    except Exception as e:  # the hub raises many kinds; keep the cause, add the fix.
        raise BadValue(f"config.data.source {spec.text!r}: datasets.load_dataset({spec.name!r}"
                       f"{', ' + repr(spec.config) if spec.config else ''}) failed: {e}. Check the dataset "
                       "name/config on the Hub, your network or HF_HUB_OFFLINE, or use a local folder.") from e


def from_hf(dataset, data_cfg, *, name: str = "hf") -> tuple[dict[str, RecordSource], list[str]]:
    """Wraps a `datasets.Dataset` (one "train" split) or `DatasetDict` as record sources + class names."""
    import datasets
    if isinstance(dataset, datasets.Dataset):
        dataset = datasets.DatasetDict({"train": dataset})
    if not isinstance(dataset, datasets.DatasetDict) or not dataset:
        raise BadValue(f"{name}: expected a datasets.Dataset or a non-empty DatasetDict, got {type(dataset)}.")
    first = next(iter(dataset.values()))
    image_col = _pick_column(first, data_cfg.image_column, IMAGE_NAMES, datasets.Image,
                             "image", name)
    label_col = _pick_column(first, data_cfg.label_column, LABEL_NAMES, datasets.ClassLabel,
                             "label", name)
    feature = first.features[label_col]
    string_names = None
    if isinstance(feature, datasets.ClassLabel):
        class_names = list(feature.names)
    elif getattr(feature, "dtype", None) in ("string", "large_string"):
        string_names = sorted({str(v) for split in dataset.values() for v in split[label_col]})
        class_names = string_names
    else:
        top = max(int(np.max(np.asarray(split[label_col]))) for split in dataset.values() if len(split))
        class_names = [str(i) for i in range(top + 1)]
    splits = {}
    for split_name, split in dataset.items():
        for col in (image_col, label_col):
            if col not in split.column_names:
                raise BadKey(f"{name}: split '{split_name}' has no column '{col}' (columns: "
                             f"{split.column_names}). Set config.data.image_column/label_column.")
        splits[split_name] = HFSource(f"{name}/{split_name}", split, image_col, label_col, string_names)
    return splits, class_names


def _pick_column(ds, configured: str | None, names: Sequence[str], feature_type, what: str, where: str) -> str:
    """The column configured, else the one conventional name present, else the one typed feature."""
    columns = ds.column_names
    key = f"config.data.{what}_column"
    if configured is not None:
        if configured not in columns:
            raise BadKey(f"{where}: {key}={configured!r} is not a column; the columns are {columns}.")
        return configured
    by_name = [c for c in names if c in columns]
    typed = [c for c in columns if isinstance(ds.features[c], feature_type)]
    if len(by_name) > 1:  # e.g. both "label" and "labels": prefer the one with the typed feature.
        by_name = [c for c in by_name if c in typed] or by_name
    candidates = by_name if by_name else typed
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise BadKey(f"{where}: no {what} column found among the columns {columns} (looked for "
                     f"{list(names)} or a {feature_type.__name__} feature). Set {key} to the right column.")
    raise BadValue(f"{where}: the {what} column is ambiguous: {candidates} all qualify (columns: "
                   f"{columns}). Set {key} to the one to use.")


class HFSource:
    """A split of a Hugging Face dataset; images come back undecoded ({"bytes", "path"}) or as stored."""

    def __init__(self, name: str, ds, image_col: str, label_col: str, string_names: list[str] | None):
        import datasets
        ds = ds.select_columns([image_col, label_col])
        if isinstance(ds.features[image_col], datasets.Image):
            ds = ds.cast_column(image_col, datasets.Image(decode=False))
        self.name, self.ds = name, ds
        self.image_col, self.label_col = image_col, label_col
        self._index = {n: i for i, n in enumerate(string_names)} if string_names else None
        self._labels = None

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.ds[int(index)]
        label = row[self.label_col]
        return {"image": row[self.image_col],
                "label": self._index[str(label)] if self._index else int(label)}

    def labels(self) -> np.ndarray:
        if self._labels is None:
            values = self.ds[self.label_col]
            self._labels = (np.asarray([self._index[str(v)] for v in values], np.int64) if self._index
                            else np.asarray(values, np.int64))
        return self._labels

    def ids(self) -> list:
        return list(range(len(self)))

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}] (column '{self.image_col}')"


def open_hf_dataset(dataset, data_cfg):
    """`open_source` for an in-memory `datasets.Dataset`/`DatasetDict` (no hub access)."""
    raw, class_names = from_hf(dataset, data_cfg, name="hf:<in-memory>")
    return splits_lib.resolve_splits("hf:<in-memory>", raw, class_names, data_cfg)
