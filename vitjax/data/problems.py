"""Problems of a dataset found in one scan, reported together: grouped by kind, each kind with its fix.

A scan adds what it finds (`add(kind, path)`) instead of stopping at the first; `report(source,
skip)` then raises one `BadValue` listing them all, or, when `skip` (config.data.skip_corrupt), logs
them as one warning and lets the caller drop them.
"""

from __future__ import annotations

import logging

from vitjax.errors import BadValue

log = logging.getLogger(__name__)

# kind -> (what it is, the fix)
KINDS = {
    "not_image": ("entries that are not image files", "remove them or move them out of the class folders"),
    "stray": ("files beside the class folders", "move them into a class folder or remove them"),
    "zero_byte": ("zero-byte files", "copy them again"),
    "unreadable": ("images that cannot be decoded (truncated or not images)", "copy them again or remove them"),
    "empty_class": ("class folders without images", "add their images or delete the folders"),
}
_SHOWN = 10  # paths listed per kind


class Problems:
    def __init__(self):
        self.found: dict[str, list[str]] = {}

    def add(self, kind: str, path: str) -> None:
        assert kind in KINDS, kind
        self.found.setdefault(kind, []).append(path)

    def __len__(self) -> int:
        return sum(len(paths) for paths in self.found.values())

    def paths(self, *kinds: str) -> set[str]:
        return {p for kind in (kinds or self.found) for p in self.found.get(kind, [])}

    def _lines(self) -> list[str]:
        lines = []
        for kind, (what, fix) in KINDS.items():
            paths = self.found.get(kind, [])
            if paths:
                more = f" ... ({len(paths)} in all)" if len(paths) > _SHOWN else ""
                lines.append(f"  {len(paths)} {what} ({fix}): {', '.join(paths[:_SHOWN])}{more}")
        return lines

    def report(self, source: str, skip: bool) -> None:
        """Raises one error listing every problem, or with `skip` logs them as one warning."""
        if not self.found:
            return
        if not skip:
            raise BadValue(f"{source} has {len(self)} problem(s):\n" + "\n".join(self._lines()) +
                           "\nFix them, or set config.data.skip_corrupt=True to train without them "
                           "(they are then listed in a warning).")
        log.warning("skip_corrupt: leaving out %d problem file(s)/folder(s) of %s:\n%s", len(self), source,
                    "\n".join(self._lines()))
