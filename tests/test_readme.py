"""The README's quick start: two commands that each do their own set-up (the demo command installs
vitjax before training; the test command installs the test extra before the suite), and `.ci/run` runs
exactly the README's test command. The demo's config itself runs in tests/test_configs.py; the README's
and docs/' other blocks are run by tests/test_docs.py. The README stays short: the rest is in docs/."""

from __future__ import annotations

import os
import re

from doc_blocks import REPO, code_blocks


def _quick_start() -> dict[str, str]:
    block = code_blocks("README.md", "bash")[0]
    commands, comment = {}, None
    for line in block.code.splitlines():
        if line.startswith("# "):
            comment = line[2:].split(":")[0]
        elif line.strip():
            commands[comment] = line.strip()
    return commands


def test_the_quick_start_is_two_self_contained_commands():
    commands = _quick_start()
    assert list(commands) == ["Try it", "Test it"]
    assert re.fullmatch(r"python -m pip install -e \. && python -m vitjax\.main --config configs/digits\.py "
                        r"--workdir runs/digits", commands["Try it"])
    assert commands["Test it"].startswith('python -m pip install -e ".[test]" && ')
    assert commands["Test it"].endswith("python -m pytest -q")


def test_ci_runs_exactly_the_readme_test_command():
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert lines[-1] == _quick_start()["Test it"]


def test_the_readme_is_short_and_links_every_docs_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)", readme))
    assert linked == {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
