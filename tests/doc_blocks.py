"""The code blocks of the README and the docs/ pages, as the tests read them.

A shell or Python block is either run by a test (tests/test_docs.py lists which one, by page and first
line) or marked on the page itself, visibly, with a title that starts with "Not run by the tests:" and
says why (a whole training run, a GPU, a cluster, the Hugging Face hub):

    ```bash title="Not run by the tests: needs a SLURM cluster"
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]
CODE = {"bash", "sh", "shell", "console", "python", "py", "pycon"}  # the languages a reader runs
NOT_RUN = "Not run by the tests:"
_FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
_TITLE = re.compile(r'title="([^"]*)"')


@dataclasses.dataclass(frozen=True)
class Block:
    page: str         # "docs/deploy.md"
    line: int         # of the opening fence, 1-based
    language: str
    title: str
    code: str

    @property
    def first_line(self) -> str:
        return next(line for line in self.code.splitlines() if line.strip())

    @property
    def not_run(self) -> bool:
        return self.title.startswith(NOT_RUN)

    @property
    def commands(self) -> list[str]:
        """A shell block's commands: comment lines dropped, `\\` continuations joined."""
        joined = re.sub(r"\\\n\s*", "", self.code)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.first_line!r})"


def blocks(page: str) -> list[Block]:
    """Every fenced block of `page` (a path relative to the repository), in order."""
    text = (REPO / page).read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        title = _TITLE.search(match.group(2))
        found.append(Block(page, text.count("\n", 0, match.start()) + 1, match.group(1), title.group(1) if title else "",
                           match.group(3)))
    return found


def code_blocks(page: str, language: str | None = None) -> list[Block]:
    """The blocks of `page` a reader runs (shell and Python), optionally of one language only."""
    return [b for b in blocks(page) if b.language in CODE and (language is None or b.language == language)]


def vitjax_args(page: str, start: str) -> list[str]:
    """The arguments of `page`'s one `python -m vitjax.main` command starting with `start`, for a test
    that runs it (in its own folders, made small with overrides it appends)."""
    found = [c for b in code_blocks(page) if b.language in ("bash", "sh") for c in b.commands if c.startswith(start)]
    assert len(found) == 1, f"{page}: {len(found)} commands start with {start!r}"
    words = shlex.split(found[0])
    assert words[:3] == ["python", "-m", "vitjax.main"], found[0]
    return words[3:]


def set_flag(args: list[str], flag: str, value: str) -> list[str]:
    """`args` with `flag`'s value replaced (`--flag value` or `--flag=value`); the flag must be there."""
    for i, arg in enumerate(args):
        if arg == flag:
            return [*args[:i + 1], value, *args[i + 2:]]
        if arg.startswith(flag + "="):
            return [*args[:i], f"{flag}={value}", *args[i + 1:]]
    raise AssertionError(f"{flag} is not in {args}")
