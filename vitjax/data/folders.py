"""Image-folder sources: `root/{train,validation,test}/<class>/*.jpg` or `root/<class>/*.jpg`.

Scanned with `os.scandir`, files sorted by their raw (byte) names so the order is the same on every
machine and locale; names that are not valid UTF-8 are kept (surrogate-escaped) and opened as they are.
Hidden entries (".DS_Store", ".ipynb_checkpoints") are ignored. Checked at scan time: an empty class
folder, a split with no images, a zero-byte image file, a file that is not an image by its
extension, and class folders whose names differ only by case ("Cat", "cat": two classes here, one
folder on macOS/Windows) each stop with an error naming them (zero-byte and non-image files are
skipped with a warning listing them under `config.data.skip_corrupt`). Corrupt image contents are
found when the image is decoded (the error names the file) or, with `config.data.skip_corrupt`, by a scan before training.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from vitjax.data.records import SPLIT_ALIASES, RecordSource

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                              ".pgm", ".pbm", ".jfif", ".jp2", ".ico"})


class FileSource:
    """A split made of image files and their labels."""

    def __init__(self, name: str, root: str, paths: list[str], labels: list[int]):
        self.name, self.root = name, root
        self.paths = paths
        self._labels = np.asarray(labels, np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.paths[index], "label": int(self._labels[index])}

    def labels(self) -> np.ndarray:
        return self._labels

    def ids(self) -> list:
        return [os.path.relpath(p, self.root) for p in self.paths]

    def describe(self, index: int) -> str:
        return self.paths[index]


def _entries(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: os.fsencode(e.name))


def _scan_classes(split_dir: str, skip_corrupt: bool) -> dict[str, list[str]]:
    """class name -> sorted image paths, for one folder of class subfolders."""
    entries = _entries(split_dir)
    stray = [e.path for e in entries if not e.is_dir()]
    if stray:
        raise ValueError(f"{split_dir} should hold only class subfolders, but has files {stray[:5]}"
                         f"{'...' if len(stray) > 5 else ''}. Move them into a class folder or remove them.")
    classes = {}
    for class_entry in entries:
        files = _entries(class_entry.path)
        bad = [e.path for e in files if not e.is_file()
               or os.path.splitext(e.name)[1].lower() not in IMAGE_EXTENSIONS]
        empty = [e.path for e in files if e.path not in bad and e.stat().st_size == 0]
        if bad or empty:
            listing = (f"entries that are not image files: {bad} (image extensions: {sorted(IMAGE_EXTENSIONS)})"
                       if bad else f"zero-byte image files: {empty}")
            if not skip_corrupt:
                raise ValueError(f"Class folder {class_entry.path} holds {listing}. Remove or re-copy them, "
                                 "or set config.data.skip_corrupt=True to skip them with a warning.")
            logging.warning("skip_corrupt: skipping %d file(s) of %s: %s", len(bad) + len(empty),
                            class_entry.path, bad + empty)
            files = [e for e in files if e.path not in bad and e.path not in empty]
        if not files:
            raise ValueError(f"Class folder {class_entry.path} has no images: add its images or delete the folder.")
        classes[class_entry.name] = [e.path for e in files]
    if not classes:
        raise ValueError(f"Split folder {split_dir} has no class subfolders with images: expected "
                         f"{split_dir}/<class>/<image files>.")
    return classes


def scan_folder(root: str, skip_corrupt: bool = False) -> tuple[dict[str, RecordSource], list[str]]:
    """Scans an image folder; class names are the union of the class folders of all splits, sorted.

    With `skip_corrupt`, zero-byte and non-image files are skipped with a warning instead of an error.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder {root} does not exist: check config.data.source.")
    names = {e.name for e in _entries(root) if e.is_dir()}
    known = {alias for aliases in SPLIT_ALIASES.values() for alias in aliases}
    split_dirs = sorted(names & known)
    if split_dirs:
        other = sorted(names - known)
        if other:
            raise ValueError(f"{root} mixes split folders {split_dirs} with other folders {other}: put class "
                             "folders inside the split folders (root/train/<class>/...).")
        scanned = {s: _scan_classes(os.path.join(root, s), skip_corrupt) for s in split_dirs}
    else:
        scanned = {"train": _scan_classes(root, skip_corrupt)}
    class_names = sorted({c for classes in scanned.values() for c in classes}, key=os.fsencode)
    _check_case_clashes(root, class_names)
    index = {c: i for i, c in enumerate(class_names)}
    splits = {}
    for split, classes in scanned.items():
        paths = [p for c in class_names for p in classes.get(c, [])]
        labels = [index[c] for c in class_names for _ in classes.get(c, [])]
        splits[split] = FileSource(f"{root}/{split}", root, paths, labels)
    return splits, class_names


def _check_case_clashes(root: str, class_names: list[str]) -> None:
    by_folded: dict[str, list[str]] = {}
    for name in class_names:
        by_folded.setdefault(name.casefold(), []).append(name)
    clashes = [names for names in by_folded.values() if len(names) > 1]
    if clashes:
        raise ValueError(f"{root}: class folders {clashes} differ only by case, so they would be "
                         "separate classes (and one folder on case-insensitive file systems). Merge "
                         "each group into one folder, or rename them apart.")
