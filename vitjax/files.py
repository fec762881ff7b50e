"""JSON files vitjax keeps or is given (a checkpoint's `config.json` and `preprocessor_config.json`,
a workdir's `config.json` and `data_split.json`, `vitjax_model.json`), read with every failure named
by the file and the fix; the JSON object of a config; and `writing`, how an output file is written whole
or not at all. Paths may be local or on object storage (`vitjax.storage`)."""

from __future__ import annotations

import contextlib
import json
import os

from vitjax import storage
from vitjax.errors import BadValue, WriteFailed


def read_json(path: str, what: str = "") -> dict:
    """The JSON object in `path`; a file that is not one is named with how to fix it."""
    try:
        value = json.loads(storage.read_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadValue(f"{path} is not valid JSON ({e}); {what or 'restore the file or write it again'}.") \
            from None
    if not isinstance(value, dict):
        raise BadValue(f"{path} holds a JSON {type(value).__name__}, not an object; "
                       f"{what or 'restore the file or write it again'}.")
    return value


@contextlib.contextmanager
def writing(path: str | os.PathLike):
    """Yields a temporary name beside `path` to write to; it becomes `path` once written. A write that
    fails (a full disk, no permission) leaves neither behind and is named with the fix. On object
    storage the name is a local file, uploaded whole once written."""
    if storage.is_remote(path):
        try:
            with storage.local_output(path, folder=False) as local:
                yield local
        except OSError as e:
            raise write_failed(path, e) from e
        return
    root, ext = os.path.splitext(os.fspath(path))
    partial = f"{root}.partial{ext}"  # the same extension: writers pick the format from it
    try:
        yield partial
        os.replace(partial, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise write_failed(path, e) from e


def write_failed(path: str | os.PathLike, error: OSError) -> WriteFailed:
    """The one-line error for an output `path` that could not be written."""
    return WriteFailed(f"could not write {os.fspath(path)} ({error.strerror or error}); free disk space (or fix "
                       "the folder's permissions) and run the same command again.")


def write_text(path: str | os.PathLike, text: str) -> None:
    """`text` into `path` (UTF-8) through `writing`."""
    with writing(path) as partial, open(partial, "w", encoding="utf-8") as f:
        f.write(text)


def config_dict(config) -> dict:
    """An `ml_collections.ConfigDict` as the plain JSON object a workdir's `config.json` holds (a value
    JSON cannot hold becomes its string)."""
    return json.loads(config.to_json_best_effort())
