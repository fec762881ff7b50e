"""The one parser of `config.data.source` strings, shared by every task's `open_source`.

"hf:NAME[:CONFIG]" (a Hugging Face dataset), "folder:PATH", "coco:PATH", "tfds:NAME", "demo:NAME", or a
plain existing path (kind "path"). PATH may be on object storage (`s3://bucket/key`, `gs://...`): readers
open `SourceSpec.local_path()`, a local copy made once per content (`vitjax.storage.cached_copy`). Each
caller says which kinds it reads; any other string is one clear error listing them.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from vitjax import storage
from vitjax.errors import BadValue

KINDS = ("hf", "folder", "coco", "tfds", "demo")


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A parsed source string: `kind` is one of `KINDS` or "path"; `name` is what follows the kind
    (dataset name, folder or file path); `config` is the Hugging Face dataset config, if any."""

    text: str
    kind: str
    name: str
    config: str | None = None

    def local_path(self) -> str:
        """The local file or folder that `name` names (folder, coco and path kinds), `~` expanded. On
        object storage, a copy in the local cache (`storage.cached_copy`, once per content); a file there
        (a COCO annotations file) is copied with the folder holding it, where its images are."""
        if not storage.is_remote(self.name):
            return os.path.expanduser(self.name)
        with storage.remote_errors(self.name):
            is_file = storage.isfile(self.name)
        if is_file:
            return os.path.join(storage.cached_copy(storage.dirname(self.name)), storage.basename(self.name))
        return storage.cached_copy(self.name)


def parse_source(source, accepted: Sequence[str], usage: str) -> SourceSpec:
    """Parses `source` (config.data.source); a kind outside `accepted` (KINDS and/or "path") is a
    ValueError that quotes `usage`, e.g. "'folder:PATH' or 'hf:NAME[:CONFIG]'"."""
    if not isinstance(source, str) or not source:
        raise BadValue(f"config.data.source must be a string such as {usage}; got {source!r}.")
    kind, _, rest = source.partition(":")
    if kind in KINDS and rest:
        name, config = (rest.partition(":")[::2] if kind == "hf" else (rest, ""))
        spec = SourceSpec(source, kind, name, config or None)
    elif storage.is_remote(source) or os.path.exists(os.path.expanduser(source)):
        spec = SourceSpec(source, "path", source)
    else:
        spec = None
    if spec is None or spec.kind not in accepted:
        missing = " (no such file or folder)" if spec is None and kind not in KINDS else ""
        raise BadValue(f"Unknown config.data.source {source!r}{missing}: this task reads {usage}.")
    return spec
