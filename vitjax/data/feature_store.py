"""Named arrays filled once, in RAM or in files next to the decode cache: what the feature cache keeps.

`filled_arrays(path, layout, fill)` returns a dict of arrays of the given shapes and dtypes. With
`path=None` they are numpy arrays in this process, filled by `fill(arrays)` every run. With a path
they are raw memory-mapped files `<path>.<name>` plus `<path>.json` (the layout), written beside
their targets and renamed over them, the json last: a later run with the same path (the caller
puts a fingerprint of everything the arrays depend on into it) maps the finished files and skips
`fill`; a run killed while filling leaves no json, so the next one fills again.
"""
from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np

Layout = dict[str, tuple[tuple[int, ...], np.dtype]]  # name -> (shape, dtype)


def filled_arrays(path: str | None, layout: Layout,
                  fill: Callable[[dict[str, np.ndarray]], None]) -> dict[str, np.ndarray]:
    """The arrays of `layout`, read from `path` when a finished copy is there, else filled by `fill`."""
    if path is None:
        arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in layout.items()}
        fill(arrays)
        return arrays
    index = {name: {"shape": list(shape), "dtype": np.dtype(dtype).name} for name, (shape, dtype) in layout.items()}
    if os.path.exists(path + ".json"):
        with open(path + ".json", encoding="utf-8") as f:
            if json.load(f) == index:
                return _mapped(path, layout, "r")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    arrays = _mapped(path, layout, "w+", suffix=".tmp")
    fill(arrays)
    for name, array in arrays.items():
        array.flush()
        os.replace(f"{path}.{name}.tmp", f"{path}.{name}")
    with open(path + ".json.tmp", "w", encoding="utf-8") as f:
        json.dump(index, f)
    os.replace(path + ".json.tmp", path + ".json")
    return _mapped(path, layout, "r")


def _mapped(path: str, layout: Layout, mode: str, suffix: str = "") -> dict[str, np.memmap]:
    return {name: np.memmap(f"{path}.{name}{suffix}", dtype, mode, shape=shape)
            for name, (shape, dtype) in layout.items()}
