"""The one source-string parser, the one hub-error wrapping every task's hf: source shares, and the
data package's import graph (the record model imports nothing from vitjax; data imports nothing above it)."""
import ast
from pathlib import Path

import pytest

from test_data_fakes import data_config
from vitjax import registry
from vitjax.data.source_spec import SourceSpec, parse_source

REPO = Path(__file__).resolve().parents[1]


def test_parse_source_kinds(tmp_path):
    every = ("hf", "folder", "coco", "tfds", "demo", "path")
    assert parse_source("hf:beans", every, "x") == SourceSpec("hf:beans", "hf", "beans")
    assert parse_source("hf:glue:cola", every, "x") == SourceSpec("hf:glue:cola", "hf", "glue", "cola")
    assert parse_source("folder:~/a:b", every, "x") == SourceSpec("folder:~/a:b", "folder", "~/a:b")
    assert parse_source("demo:digits", every, "x").kind == "demo"
    assert parse_source(str(tmp_path), every, "x") == SourceSpec(str(tmp_path), "path", str(tmp_path))
    assert parse_source("s3://b/x", every, "x") == SourceSpec("s3://b/x", "path", "s3://b/x")  # checked when read
    assert parse_source("folder:gs://b/x", every, "x") == SourceSpec("folder:gs://b/x", "folder", "gs://b/x")
    with pytest.raises(ValueError, match=r"Unknown config.data.source 'beans' \(no such file or folder\): "
                                         r"this task reads 'hf:NAME'"):
        parse_source("beans", every, "'hf:NAME'")
    with pytest.raises(ValueError, match=r"'tfds:x'.*this task reads 'folder:PATH'"):
        parse_source("tfds:x", ("folder",), "'folder:PATH'")
    with pytest.raises(ValueError, match=r"must be a string"):
        parse_source(None, every, "x")


@pytest.mark.parametrize("task", ["classification", "multilabel", "segmentation", "detection"])
def test_every_task_explains_a_failing_hub_dataset(task):
    registry.load_plugins()
    task_cfg = registry.task_config("classification" if task == "multilabel" else task)
    if task == "multilabel":
        task_cfg.multi_label = True
    task_class = registry.get_task(task_cfg.name)
    with pytest.raises(ValueError, match=r"'hf:no-such/dataset-xyz': datasets.load_dataset.*failed.*HF_HUB_OFFLINE"):
        task_class.open_source(data_config(source="hf:no-such/dataset-xyz"), task_cfg)


def _imports(path: Path) -> set[str]:
    """The vitjax modules `path` imports (at any depth of the file: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("vitjax.")}


def _module_graph() -> dict[str, set[str]]:
    files = {".".join(p.relative_to(REPO).with_suffix("").parts): p for p in (REPO / "vitjax").rglob("*.py")}
    files |= {"vitjax.tasks." + p.stem: p for p in (REPO / "tasks").glob("*.py")}
    files = {name.removesuffix(".__init__"): path for name, path in files.items()}
    return {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}


# Leaf modules anything may import: the user-error classes, the JSON reader built on them, the path layer.
LEAVES = ("vitjax.errors", "vitjax.files", "vitjax.workdir", "vitjax.storage")  # modules importing no other but these


def test_record_model_imports_nothing_from_vitjax():
    for name in ("records.py", "source_spec.py"):
        assert not {m for m in _imports(REPO / "vitjax" / "data" / name) if not m.startswith(LEAVES)}


def test_data_package_reaches_nothing_above_it():
    """(Import circles, here and everywhere, are checked by test_import_graph.py.)"""
    graph = _module_graph()
    data = {name for name in graph if name.startswith("vitjax.data.")}
    up = {name: sorted(m for m in graph[name] if not m.startswith(("vitjax.data", "vitjax.images", *LEAVES)))
          for name in data}
    assert not any(up.values()), f"vitjax.data reaches outside itself: {up}"
