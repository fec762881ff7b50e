"""The docs site: `mkdocs build --strict` builds it offline, and every shell and Python block of the
README and the docs/ pages is run by a test. A block is run here (on a tiny stand-in for the quick
start's runs/digits), or by the test RUN_ELSEWHERE names (which reads it from its page), or its page
says, visibly, on the block's title, "Not run by the tests:" and why (tests/doc_blocks.py)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from doc_blocks import NOT_RUN, PAGES, REPO, code_blocks
from train_helpers import digits_folder, tiny_config

# (page, the start of the block's first line) -> the test file that runs (or checks) the block; it reads
# the block from the page, so an edit to the command is what it runs.
RUN_ELSEWHERE = {
    ("README.md", "# Try it:"): "test_readme.py",
    ("docs/deploy.md", "# Export to ONNX"): "test_deploy_readme.py",
    ("docs/deploy.md", "curl -F files=@digit.png"): "test_deploy_readme.py",
    ("docs/robustness.md", "python -m vitjax.main --mode robustness"): "test_robustness_e2e.py",
}
# Run by the tests below.
RUN_HERE = {
    ("docs/getting-started.md", "python -m vitjax.main --mode evaluate"),
    ("docs/deploy.md", "import numpy as np"),
}


def _claim(block) -> str | None:
    """How `block` is run: "here", a test file's name, or None."""
    for (page, start), test in RUN_ELSEWHERE.items():
        if block.page == page and block.first_line.startswith(start):
            return test
    if any(block.page == page and block.first_line.startswith(start) for page, start in RUN_HERE):
        return "here"
    return None


def _block(page: str, start: str):
    (block,) = [b for b in code_blocks(page) if b.first_line.startswith(start)]
    return block


def test_every_block_is_run_or_says_why():
    unclaimed, twice, claimed = [], [], set()
    for page in PAGES:
        for block in code_blocks(page):
            claim = _claim(block)
            if block.not_run:
                assert block.title[len(NOT_RUN):].strip(), f"{block}: say why it is not run"
                if claim:
                    twice.append(str(block))
            elif claim is None:
                unclaimed.append(str(block))
            else:
                claimed.add(claim)
                if claim != "here":
                    assert block.page in (REPO / "tests" / claim).read_text(encoding="utf-8"), \
                        f"{block}: {claim} does not read {block.page}"
    assert not unclaimed, (f"blocks no test runs: {unclaimed}; run them (tests/test_docs.py) or title them "
                           f'```bash title="{NOT_RUN} <why>"')
    assert not twice, f"blocks both run and marked not run: {twice}"
    for (page, start), test in RUN_ELSEWHERE.items():  # no stale entry
        assert test in claimed, f"RUN_ELSEWHERE names no block: {page}: {start!r}"
    for page, start in RUN_HERE:
        _block(page, start)


def test_the_site_builds_offline_and_strict(tmp_path):
    """Strict: a broken link, a missing page in the nav or a docstring mkdocstrings cannot render fails."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    html = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "site").rglob("*.html"))
    assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html  # theme.font: false
    assert NOT_RUN in html  # the marks are visible on the pages


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """What a user has after the quick start, in the folder they run the docs' commands from: runs/digits
    (a tiny run of a few digit classes standing in for the demo's), a few images to predict, a
    `python` on PATH."""
    from vitjax import modes

    root = tmp_path_factory.mktemp("user")
    data = digits_folder(str(root / "data"), range(3), per_class=20)
    modes.train(tiny_config(f"folder:{data}", epochs=1), str(root / "runs" / "digits"))
    os.makedirs(root / "photos")
    shutil.copy(Path(data) / "0" / "000.png", root / "photo1.png")
    shutil.copy(Path(data) / "1" / "000.png", root / "photos" / "a.png")
    shutil.copy(Path(data) / "2" / "000.png", root / "digit.png")
    return root


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_other_modes(user_folder):
    """getting-started.md: evaluate, predict and export on the run, as written."""
    for command in _block("docs/getting-started.md", "python -m vitjax.main --mode evaluate").commands:
        done = _run(command, user_folder)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert (user_folder / "preds" / "predictions.json").is_file()
    assert (user_folder / "exported" / "config.json").is_file()


def test_the_python_api(user_folder):
    """deploy.md's "From Python" block, run as a script."""
    (user_folder / "api.py").write_text(_block("docs/deploy.md", "import numpy as np").code, encoding="utf-8")
    done = _run(f"{sys.executable} api.py", user_folder)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("[[(")
    assert (user_folder / "preds" / "predictions.json").is_file()
    assert (user_folder / "exported" / "config.json").is_file()


def _rooms() -> dict[str, int]:
    """docs/architecture.md's rooms table: module path prefix ("vitjax/train/", "vitjax/main.py") -> layer."""
    rooms = {}
    for line in (REPO / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines():
        row = re.match(r"\| (\d) [^|]*\| ([^|]*) \|", line)
        for path in re.findall(r"`([^`]+)`", row.group(2)) if row else ():
            assert (REPO / path).exists(), f"docs/architecture.md names {path}, which does not exist"
            rooms[path] = int(row.group(1))
    return rooms


def test_the_architecture_page_is_the_import_graph():
    """Every module is in one room of the page's table, and no import runs up to a higher layer."""
    from test_data_source_spec import _module_graph

    rooms = _rooms()

    def path(module: str) -> str:
        parts = module.split(".")
        if parts[:2] == ["vitjax", "tasks"]:
            parts = parts[1:]
        else:
            parts[0] = "vitjax"
        return "/".join(parts)

    def layer(module: str) -> int | None:
        p = path(module)
        found = [room for room in rooms if room in (f"{p}.py", f"{p}/__init__.py", f"{p}/")
                 or (room.endswith("/") and p.startswith(room))]
        return rooms[max(found, key=len)] if found else None

    graph = _module_graph()
    missing = sorted(m for m in graph if layer(m) is None)
    assert not missing, f"modules in no room of docs/architecture.md's table: {missing}"
    up = sorted(f"{a} (layer {layer(a)}) -> {b} (layer {layer(b)})" for a, imports in graph.items()
                for b in imports if layer(b) < layer(a))
    assert not up, f"imports that run up the layers of docs/architecture.md: {up}"


def test_the_plugin_reference_lives_once():
    """The trainer's call sequence and the hooks are written in vitjax/registry.py's docstrings only;
    docs/tasks.md renders them (mkdocstrings) instead of keeping a copy that drifts."""
    assert "single_from_model_output" in (REPO / "vitjax" / "registry.py").read_text(encoding="utf-8")
    copies = [page for page in PAGES if "single_from_model_output" in (REPO / page).read_text(encoding="utf-8")]
    assert not copies, f"a copy of the plugin call sequence in {copies}; render vitjax.registry instead"
    assert "::: vitjax.registry" in (REPO / "docs" / "tasks.md").read_text(encoding="utf-8")
