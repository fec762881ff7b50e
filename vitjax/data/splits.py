"""Train/validation/test resolution: named splits, seeded stratified carving, and the audit file.

`resolve_splits` maps a source's split names onto train/validation/test (config names or the usual
aliases; "carve" = ignore the source's split and carve it), drops corrupt files when
`config.data.skip_corrupt` (with a warning listing them), and carves
missing validation/test splits out of train with `stratified_split`: per class, a permutation drawn
from `split_seed` only, so the split is identical on every run and on resume. A class some split has
no image of (e.g. present in train but not in validation) is logged as a warning; a record counts
for every class it shows (`vitjax.data.records.class_image_counts`: its class, or each of the
classes of a multi-label image, a mask or boxes). `write_split` writes
the record identifiers (file paths relative to the folder, or indices in the source split) of every
split to `<workdir>/data_split.json` so the split used can be audited.
"""
from __future__ import annotations

import json
import logging
from typing import Sequence

import numpy as np

from vitjax import storage
from vitjax.data.records import (CARVE, SPLIT_ALIASES, SPLITS, ImageDataset, RecordSource, SubsetSource,
                                 check_labels, class_image_counts)
from vitjax.errors import BadKey, BadValue
from vitjax.files import read_json
from vitjax.workdir import SPLIT

SPLIT_FILE = SPLIT


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Splits indices 0..len-1 into len(fractions) sorted index arrays, each class in those proportions.

    Each class is permuted by a generator seeded with (seed, class) and its records get evenly spaced
    positions in [0, 1) (with a random per-class offset, so small classes do not all round the same
    way); cutting the records ordered by position at the cumulative fractions gives global counts
    exact to one record and per-class counts within one. Depends only on labels, fractions and seed.
    """
    fractions = np.asarray(fractions, np.float64)
    if fractions.ndim != 1 or np.any(fractions < 0) or fractions.sum() <= 0:
        raise BadValue(f"config.data.split_fractions must be non-negative with a positive sum, got "
                       f"{fractions.tolist()}.")
    fractions = fractions / fractions.sum()
    labels = np.asarray(labels)
    position = np.zeros(len(labels))
    for c in np.unique(labels):
        rng = np.random.default_rng([seed, int(c)])
        idx = rng.permutation(np.flatnonzero(labels == c))
        position[idx] = (np.arange(len(idx)) + rng.uniform()) / len(idx)
    order = np.argsort(position, kind="stable")
    bounds = np.round(np.cumsum(fractions) * len(labels)).astype(int)
    return [np.sort(part) for part in np.split(order, bounds[:-1])]


def _find(raw: dict[str, RecordSource], split: str, configured: str | None, where: str) -> str | None:
    """The source's split to use as `split`; None = carve it out of train."""
    if configured == CARVE and split != "train":
        return None
    if configured is not None:
        if configured not in raw:
            raise BadKey(f"{where}: config.data.{split}_split={configured!r} is not a split of the source; "
                         f"its splits are {sorted(raw)}.")
        return configured
    return next((alias for alias in SPLIT_ALIASES[split] if alias in raw), None)


def resolve_splits(source: str, raw: dict[str, RecordSource], class_names: list[str] | None,
                   data_cfg) -> ImageDataset:
    """Builds the ImageDataset: named splits, corrupt files dropped if asked, missing splits carved.

    `class_names=None`: the records have no classes (their `labels()` only stratify the carving);
    the dataset's class list is then empty and nothing checks or warns about classes."""
    names = {s: _find(raw, s, data_cfg[f"{s}_split"], source) for s in SPLITS}
    if names["train"] is None:
        raise BadKey(f"{source}: no train split among {sorted(raw)}; set config.data.train_split.")
    splits: dict[str, RecordSource] = {}
    origin: dict[str, str] = {}
    for split, name in names.items():
        if name is None:
            continue
        if len(raw[name]) == 0:
            raise BadValue(f"{source}: split '{name}' has no images. Add images or set "
                           f"config.data.{split}_split to another split.")
        if class_names is not None:
            check_labels(raw[name], name, class_names, source)
        splits[split], origin[split] = raw[name], name
    if data_cfg.skip_corrupt:
        from vitjax.data.transforms import without_corrupt
        splits = {s: without_corrupt(records, f"{source}/{origin[s]}") for s, records in splits.items()}
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        fractions = dict(zip(SPLITS, data_cfg.split_fractions))
        keep = ["train"] + missing
        parts = stratified_split(splits["train"].labels(), [fractions[s] for s in keep],
                                 data_cfg.split_seed)
        train, carved = splits["train"], f"{origin['train']} (carved, seed {data_cfg.split_seed})"
        for split, indices in zip(keep, parts):
            if len(indices) == 0:
                raise BadValue(f"{source}: carving '{split}' out of {len(train)} training images with "
                               f"split_fractions={tuple(fractions.values())} leaves it empty; add images "
                               "or raise its fraction.")
            splits[split] = SubsetSource(train, indices)
            origin[split] = carved
    dataset = ImageDataset(source=source, splits={s: splits[s] for s in SPLITS},
                           class_names=list(class_names or []), origin=origin)
    if class_names is not None:
        _warn_missing_classes(dataset)
    return dataset


def _warn_missing_classes(dataset: ImageDataset) -> None:
    for name, split in dataset.splits.items():
        counts = class_image_counts(split, dataset.num_classes)
        absent = [c for c, n in zip(dataset.class_names, counts) if n == 0]
        if absent:
            effect = ("the model never sees them" if name == "train" else
                      "their per-class metrics stay empty and macro averages count them as 0")
            logging.warning("%s: split '%s' has no images of the classes %s%s: %s. Add images of "
                            "them or remove those classes.", dataset.source, name, absent[:10],
                            "..." if len(absent) > 10 else "", effect)


def split_summary(dataset: ImageDataset) -> dict:
    """Per split: origin, size and per class the number of images showing it (for logs and the
    audit file)."""
    summary = {}
    for name, split in dataset.splits.items():
        summary[name] = {"origin": dataset.origin.get(name, name), "size": len(split)}
        if dataset.class_names:
            counts = class_image_counts(split, dataset.num_classes)
            summary[name]["per_class"] = {c: int(n) for c, n in zip(dataset.class_names, counts)}
    return summary


def read_split(path: str, what: str) -> dict:
    """The data_split.json at `path` as `write_split` wrote it; a file of another shape is named, with
    `what` to do about it."""
    recorded = read_json(path, what)
    splits = recorded.get("splits")
    if not (isinstance(recorded.get("source"), str) and isinstance(recorded.get("class_names"), (list, type(None)))
            and isinstance(splits, dict) and all(isinstance(split, dict) for split in splits.values())):
        raise BadValue(f"{path} is not a data split vitjax wrote (\"source\", \"class_names\" and \"splits\" of "
                       f"objects); {what}.")
    return recorded


def write_split(workdir: str, dataset: ImageDataset, replace: bool = False) -> str:
    """Writes `<workdir>/data_split.json`: source, classes, and per split its summary and record ids.

    When the file is already there (a resumed run), the split must be the same: otherwise an error
    says which split changed, so a resumed run never trains or evaluates on a different split.
    `replace` (the run has no checkpoint yet, so nothing was trained on the old split): the file is
    rewritten instead.
    """
    storage.makedirs(workdir)
    summary = split_summary(dataset)
    payload = {"source": dataset.source, "class_names": dataset.class_names,
               "splits": {name: dict(summary[name], ids=[i if isinstance(i, str) else int(i) for i in split.ids()],
                                     labels=split.labels().tolist())
                          for name, split in dataset.splits.items()}}
    # Through JSON and back, so the comparison sees exactly what a file would hold.
    text = json.dumps(payload, indent=1, ensure_ascii=True)  # ascii: non-UTF-8 names stay writable.
    path = storage.join(workdir, SPLIT_FILE)
    if storage.exists(path) and not replace:
        previous = read_split(path, "delete it to record the current split afresh")
        current = json.loads(text)
        changed = [k for k in ("source", "class_names") if previous.get(k) != current[k]]
        changed += [f"splits/{name}" for name in current["splits"]
                    if previous.get("splits", {}).get(name, {}).get("ids") != current["splits"][name]["ids"]
                    or previous["splits"][name].get("labels") != current["splits"][name]["labels"]]
        if changed:
            raise BadValue(f"The data split differs from the one recorded in {path} ({', '.join(changed)}): "
                           "the data, config.data.source/split_* or skip_corrupt results changed since this "
                           "run started. Restore them, or use a new workdir (or delete the file) to start "
                           "over with the new split.")
        return path
    storage.write_text(path, text)
    logging.info("Data split written to %s: %s", path,
                 {name: s["size"] for name, s in summary.items()})
    return path
