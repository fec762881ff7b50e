"""Task plugins given as `.py` file paths, imported under stable names that every process can import.

`config.task.plugins` may name a plugin by its file path. Its module is imported as
`vitjax.plugin_files.p<hex of the absolute path>`: a name that encodes where the file is, so grain's
data worker processes, which unpickle the plugin's record transforms by module name, import the very
same file (importing this package installs the finder that decodes such names). Without it they fail
with `ModuleNotFoundError` as soon as `config.data.workers > 0`.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

_PREFIX = __name__ + ".p"


def module_name(path: Path) -> str:
    """The importable module name of the plugin file at `path` (resolved to an absolute path)."""
    return _PREFIX + str(Path(path).expanduser().resolve()).encode("utf-8").hex()


def import_file(path: Path):
    """Imports (once) the plugin file at `path` under `module_name(path)`."""
    return importlib.import_module(module_name(path))


class _Finder(importlib.abc.MetaPathFinder):
    """Finds `vitjax.plugin_files.p<hex>` modules: the file whose absolute path the hex encodes."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(_PREFIX):
            return None
        try:
            file = Path(bytes.fromhex(fullname[len(_PREFIX):]).decode("utf-8"))
        except ValueError:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
    sys.meta_path.append(_Finder())
