"""The one parser of `config.data.source` strings, shared by every task's `open_source`.

"hf:NAME[:CONFIG]" (a Hugging Face dataset), "folder:PATH", "coco:PATH", "tfds:NAME", "demo:NAME", or a
plain existing path (kind "path"). Each caller says which kinds it reads; any other string is one clear
error listing them.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

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

    @property
    def path(self) -> str:
        """`name` with `~` expanded (folder, coco and path kinds)."""
        return os.path.expanduser(self.name)


def parse_source(source, accepted: Sequence[str], usage: str) -> SourceSpec:
    """Parses `source` (config.data.source); a kind outside `accepted` (KINDS and/or "path") is a
    ValueError that quotes `usage`, e.g. "'folder:PATH' or 'hf:NAME[:CONFIG]'"."""
    if not isinstance(source, str) or not source:
        raise BadValue(f"config.data.source must be a string such as {usage}; got {source!r}.")
    kind, _, rest = source.partition(":")
    if kind in KINDS and rest:
        name, config = (rest.partition(":")[::2] if kind == "hf" else (rest, ""))
        spec = SourceSpec(source, kind, name, config or None)
    elif os.path.exists(os.path.expanduser(source)):
        spec = SourceSpec(source, "path", source)
    else:
        spec = None
    if spec is None or spec.kind not in accepted:
        missing = " (no such file or folder)" if spec is None and kind not in KINDS else ""
        raise BadValue(f"Unknown config.data.source {source!r}{missing}: this task reads {usage}.")
    return spec
