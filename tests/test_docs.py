"""The docs site: `mkdocs build --strict` builds it offline, and every shell and Python block of the
README and the docs/ pages is run by a test. A block is run here (on a tiny stand-in for the quick
start's runs/digits), or by the test RUN_ELSEWHERE names (which reads it from its page), or its page
says, visibly, on the block's title, "Not run by the tests:" and why (tests/doc_blocks.py)."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from doc_blocks import NOT_RUN, PAGES, REPO, code_blocks
from train_helpers import digits_folder

# (page, the start of the block's first line) -> the test file that runs (or checks) the block; it reads
# the block from the page, so an edit to the command is what it runs (in its own folders, on a local
# stand-in for a hub checkpoint or dataset, made small). The README's quick start is checked, not run:
# its install + first run is the first run below, its test command is the suite itself (.ci/run).
RUN_ELSEWHERE = {
    ("README.md", "# Try it:"): "test_readme.py",
    ("docs/deploy.md", "# Export to ONNX"): "test_deploy_readme.py",
    ("docs/deploy.md", "curl -F files=@digit.png"): "test_deploy_readme.py",
    ("docs/robustness.md", "python -m vitjax.main --mode robustness"): "test_robustness_e2e.py",
    ("docs/lora-sweeps-trackers.md", "python -m vitjax.main --mode sweep"): "test_sweep.py",
    ("docs/lora-sweeps-trackers.md", "python -m vitjax.main --config configs/digits.py"): "test_trackers.py",
    ("docs/tasks.md", "python -m vitjax.main --config examples/regression_config.py"): "test_examples.py",
    ("docs/lora-sweeps-trackers.md", "python -m vitjax.main --config configs/lora_beans.py"): "test_lora.py",
    ("docs/training.md", "python -m vitjax.main --config configs/linear_probe.py"): "test_feature_cache.py",
    ("docs/scale-out.md", "# 4 nodes of 8 GPUs"): "test_launch_k8s.py",  # rendered and validated, not applied
    ("docs/scale-out.md", "python launch/ray_train.py"): "test_ray_train.py",  # with the tests' tiny run
}
# Run by the tests below.
FIRST_RUN = "python -m vitjax.main --config configs/digits.py --workdir runs/digits"
RUN_HERE = {
    ("docs/index.md", FIRST_RUN),
    ("docs/getting-started.md", FIRST_RUN),
    ("docs/scale-out.md", "launch/local_multiprocess.sh"),
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


# Appended to a training command the docs give for the digits demo: the same run made small (a 1-block
# ViT, one epoch), seconds instead of minutes.
SMALL = ["--config.model.spec.hidden_size=32", "--config.model.spec.num_layers=1", "--config.model.spec.num_heads=2",
         "--config.model.spec.mlp_dim=64", "--config.train.epochs=1", "--config.train.eval_every=1 epochs",
         "--config.optim.warmup=0", "--config.train.progress=False", "--config.compilation_cache="]


def _run(command: str, cwd: Path, *, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _small(command: str) -> str:
    return " ".join([command, *(shlex.quote(flag) for flag in SMALL)])


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A checkout as a user has it after the first run, the folder they run the docs' commands from:
    configs/ and launch/, runs/digits trained by the first-run command (made small), images to predict."""
    root = tmp_path_factory.mktemp("user")
    for name in ("configs", "launch"):
        os.symlink(REPO / name, root / name)
    (command,) = _block("docs/getting-started.md", FIRST_RUN).commands
    assert _block("docs/index.md", FIRST_RUN).commands == [command]
    done = _run(_small(command), root)
    assert done.returncode == 0, done.stderr[-3000:]
    data = digits_folder(str(root / "data"), range(3), per_class=2)
    os.makedirs(root / "photos")
    shutil.copy(Path(data) / "0" / "000.png", root / "photo1.png")
    shutil.copy(Path(data) / "1" / "000.png", root / "photos" / "a.png")
    shutil.copy(Path(data) / "2" / "000.png", root / "digit.png")
    return root


def test_the_first_run(user_folder):
    """index.md and getting-started.md: the digits demo trains (made small) and leaves its workdir."""
    results = json.loads((user_folder / "runs" / "digits" / "results.json").read_text(encoding="utf-8"))
    assert results["data_source"] == "demo:digits" and len(results["class_names"]) == 10
    assert (user_folder / "runs" / "digits" / "best" / "model.safetensors").is_file()


def test_the_other_modes(user_folder):
    """getting-started.md: evaluate, predict and export on the run, as written."""
    for command in _block("docs/getting-started.md", "python -m vitjax.main --mode evaluate").commands:
        done = _run(command, user_folder)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert (user_folder / "preds" / "predictions.json").is_file()
    assert (user_folder / "preds" / "photo1_explain.png").is_file()  # --explain
    assert (user_folder / "exported" / "config.json").is_file()


def test_the_python_api(user_folder):
    """deploy.md's "From Python" block, run as a script."""
    (user_folder / "api.py").write_text(_block("docs/deploy.md", "import numpy as np").code, encoding="utf-8")
    done = _run(f"{sys.executable} api.py", user_folder)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("[[(")
    assert (user_folder / "preds" / "predictions.json").is_file()
    assert (user_folder / "preds" / "digit_explain.png").is_file()
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


def test_the_local_multiprocess_launch(user_folder):
    """scale-out.md: the digits demo as two jax.distributed processes on this machine (made small)."""
    (command,) = _block("docs/scale-out.md", "launch/local_multiprocess.sh").commands
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = _run(_small(command), user_folder, env={"VITJAX_PORT": str(port)})
    assert done.returncode == 0, done.stderr[-3000:]
    workdir = command.split("--workdir ")[1].split()[0]
    results = json.loads((user_folder / workdir / "results.json").read_text(encoding="utf-8"))
    assert results["devices"] == 2 and results["steps"] >= 1
