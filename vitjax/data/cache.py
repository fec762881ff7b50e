"""Decoded-image sources and the decode cache shared by grain worker processes.

`DecodedSource` wraps a record source: it decodes each image to RGB (`transforms.load_rgb`) and, when
given a `prepare` function (Preprocessing.to_uint8 for evaluation, a squash-resize for training),
turns it into a fixed-shape uint8 array. With a cache file, prepared images are stored in a memory-mapped
uint8 [N, H, W, 3] file plus a byte of "filled" flags, filled lazily on first read by whichever process
reads the record, so a small dataset is decoded once. `cache="ram"` puts the file in shared memory
(/dev/shm) for this run only; `cache="disk"` keeps it in `cache_dir`, reused by later runs when the
records, the preparation and the shape are the same (a fingerprint names the file). `cache_dir` is a
local folder; records of a source on object storage are files of its local copy, whose folder is named
by the objects' content (`vitjax.storage.cached_copy`), so the fingerprint follows the content too.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import tempfile
from typing import Any, Callable

import numpy as np

from vitjax import storage
from vitjax.data.leftovers import remove_dead_ram_caches
from vitjax.data.transforms import load_rgb
from vitjax.errors import BadValue


class DecodedSource:
    """Records with decoded RGB images: PIL images, or uint8 arrays of `shape` after `prepare`; the
    records' other fields unchanged."""

    def __init__(self, records, prepare: Callable | None = None, shape: tuple[int, int, int] | None = None,
                 cache_path: str | None = None, draft_size: int | None = None):
        self.records, self.prepare, self.shape, self.cache_path = records, prepare, shape, cache_path
        self.draft_size = draft_size  # JPEG reduced-scale decoding (transforms.load_rgb), None = full.
        self._mapped = None  # (arrays, filled) memmaps, opened on first use in each process.
        if cache_path is not None:
            n = len(records)
            if not os.path.exists(cache_path + ".filled"):  # Create once, before workers start.
                np.memmap(cache_path, np.uint8, "w+", shape=(n, *shape)).flush()
                np.memmap(cache_path + ".filled", np.uint8, "w+", shape=(n,)).flush()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_mapped"] = None  # Reopened by path in worker processes.
        return state

    def __len__(self) -> int:
        return len(self.records)

    def _open(self):
        if self._mapped is None:  # Threads may race here; both open the same files, harmless.
            n = len(self.records)
            self._mapped = (np.memmap(self.cache_path, np.uint8, "r+", shape=(n, *self.shape)),
                            np.memmap(self.cache_path + ".filled", np.uint8, "r+", shape=(n,)))
        return self._mapped

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        record = self.records[index]
        if self.cache_path is not None:
            arrays, filled = self._open()
            if filled[index]:
                return {**record, "image": np.array(arrays[index])}
        image = load_rgb(record["image"], self.records.describe(index), self.draft_size)
        if self.prepare is not None:
            image = np.asarray(self.prepare(image), np.uint8)
            if image.shape != self.shape:
                raise ValueError(f"Preparing {self.records.describe(index)} gave shape {image.shape}, "
                                 f"expected {self.shape}.")
            if self.cache_path is not None:
                arrays, filled = self._open()
                arrays[index] = image
                filled[index] = 1
        return {**record, "image": image}


def fingerprint(records, kind: str, shape, extra: str) -> str:
    h = hashlib.sha256()
    h.update(repr((kind, tuple(shape), extra, len(records), records.describe(0) if len(records) else "",
                   records.describe(len(records) - 1) if len(records) else "")).encode("utf-8", "replace"))
    h.update(np.ascontiguousarray(records.labels()).tobytes())
    h.update(repr(records.ids()).encode("utf-8", "replace"))
    return h.hexdigest()[:20]


def cache_path(data_cfg, records, kind: str, shape, extra: str) -> str | None:
    """The cache file for `records` prepared as `kind` (None when `data_cfg.cache == "none"`)."""
    mode = data_cfg.cache
    if mode == "none":
        return None
    name = f"vitjax-{kind}-{shape[0]}x{shape[1]}-{fingerprint(records, kind, shape, extra)}.u8"
    if mode == "ram":
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        remove_dead_ram_caches(folder)
        path = os.path.join(folder, f"{os.getpid()}-{name}")
        atexit.register(_remove, path)
        return path
    if mode == "disk":
        folder = disk_cache_dir(data_cfg)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, name)
    raise BadValue(f"config.data.cache={mode!r}: use 'none', 'ram' or 'disk'.")


def disk_cache_dir(data_cfg) -> str:
    """`config.data.cache_dir`, where `cache="disk"` keeps the decode and feature caches: a local folder,
    since they are memory-mapped files (the data itself may be on object storage)."""
    folder = data_cfg.cache_dir
    if not folder:
        raise BadValue("config.data.cache='disk' needs config.data.cache_dir (a folder for the cache).")
    if storage.is_remote(folder):
        raise BadValue(f"config.data.cache_dir={folder!r} is on object storage, but the decode and feature "
                       "caches are memory-mapped files: give a local folder (config.data.source may stay "
                       "on object storage).")
    return folder


def _remove(path: str) -> None:
    for p in (path, path + ".filled"):
        if os.path.exists(p):
            os.remove(p)
