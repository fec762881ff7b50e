"""Image-folder sources: `root/{train,validation,test}/<class>/*.jpg` or `root/<class>/*.jpg`.

Scanned with `os.scandir`, files sorted by their raw (byte) names so the order is the same on every
machine and locale; names that are not valid UTF-8 are kept (surrogate-escaped) and opened as they are.
Hidden entries (".DS_Store", ".ipynb_checkpoints") are ignored. One scan finds every problem of the
folder and reports them together, grouped with their fixes (`problems.Problems`): files beside the
class folders, entries that are not images by their extension, zero-byte files, images that do not
decode (each decoded at reduced size, in threads) and empty class folders. With
`config.data.skip_corrupt` they are listed in one warning and left out (a class folder left without
images is dropped). Class folders whose names differ only by case ("Cat", "cat": two classes here,
one folder on macOS/Windows) and a split with no images stop with an error naming them.
"""
from __future__ import annotations

import os
from concurrent import futures
from typing import Any

import numpy as np

from vitjax.data.problems import Problems
from vitjax.data.records import SPLIT_ALIASES, RecordSource
from vitjax.data.transforms import is_readable
from vitjax.errors import BadValue

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                              ".pgm", ".pbm", ".jfif", ".jp2", ".ico"})


def is_image_file(path: str | os.DirEntry) -> bool:
    """A regular file (symlinks followed; not a FIFO or device, whose read would block) named as an image."""
    regular = path.is_file() if isinstance(path, os.DirEntry) else os.path.isfile(path)
    return regular and os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


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


def _scan_classes(split_dir: str, problems: Problems) -> dict[str, list[str]]:
    """class name -> sorted image paths, for one folder of class subfolders; problems are noted."""
    entries = _entries(split_dir)
    for entry in entries:
        if not entry.is_dir():
            problems.add("stray", entry.path)
    classes = {}
    for class_entry in (e for e in entries if e.is_dir()):
        files = _entries(class_entry.path)
        good = []
        for entry in files:
            if not is_image_file(entry):
                problems.add("not_image", entry.path)
            elif entry.stat().st_size == 0:
                problems.add("zero_byte", entry.path)
            else:
                good.append(entry.path)
        if not files:
            problems.add("empty_class", class_entry.path)
        if good:
            classes[class_entry.name] = good
    return classes


def _undecodable(paths: list[str], threads: int = 8) -> list[str]:
    records = [{"image": path} for path in paths]
    with futures.ThreadPoolExecutor(threads) as pool:
        readable = list(pool.map(lambda i: is_readable(records, i), range(len(records))))
    return [path for path, ok in zip(paths, readable) if not ok]


def scan_folder(root: str, skip_corrupt: bool = False) -> tuple[dict[str, RecordSource], list[str]]:
    """Scans an image folder; class names are the union of the class folders of all splits, sorted.

    Every problem of the folder is reported at once; with `skip_corrupt` they are left out with a warning.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder {root} does not exist: check config.data.source.")
    problems = Problems()
    names = {e.name for e in _entries(root) if e.is_dir()}
    known = {alias for aliases in SPLIT_ALIASES.values() for alias in aliases}
    split_dirs = sorted(names & known)
    if split_dirs:
        other = sorted(names - known)
        if other:
            raise BadValue(f"{root} mixes split folders {split_dirs} with other folders {other}: put class "
                           "folders inside the split folders (root/train/<class>/...).")
        scanned = {s: _scan_classes(os.path.join(root, s), problems) for s in split_dirs}
    else:
        scanned = {"train": _scan_classes(root, problems)}
    for path in _undecodable([p for classes in scanned.values() for ps in classes.values() for p in ps]):
        problems.add("unreadable", path)
    problems.report(f"image folder {root}", skip_corrupt)
    unreadable = problems.paths("unreadable")
    scanned = {split: {c: kept for c, paths in classes.items() if (kept := [p for p in paths if p not in unreadable])}
               for split, classes in scanned.items()}
    for split, classes in scanned.items():
        if not classes:
            raise BadValue(f"Split folder {os.path.join(root, split) if split_dirs else root} has no class "
                           f"subfolders with images: expected <split>/<class>/<image files>.")
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
        raise BadValue(f"{root}: class folders {clashes} differ only by case, so they would be "
                       "separate classes (and one folder on case-insensitive file systems). Merge "
                       "each group into one folder, or rename them apart.")
