"""Packaging: the built-in plugins install as `vitjax.tasks`, and no top-level `tasks` module is installed."""
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package():
    """`packages` is an explicit list (find cannot see the mapped `tasks/` folder): a new subpackage
    missing from it would be absent from a wheel."""
    setuptools_cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "vitjax").rglob("__init__.py")
    }
    assert set(setuptools_cfg["packages"]) == on_disk | {"vitjax.tasks"}
    assert setuptools_cfg["package-dir"] == {"vitjax.tasks": "tasks"}


def test_user_tasks_module_in_cwd_does_not_shadow_builtin_plugins(tmp_path):
    """A user's own `tasks.py` next to their config used to break every run ("'tasks' is not a package")."""
    (tmp_path / "tasks.py").write_text("raise RuntimeError('the user module must not be imported')\n")
    script = (
        "from vitjax import registry; registry.load_plugins(); "
        "import vitjax.tasks.detection as d; print(registry.available_tasks(), d.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "['classification', 'detection', 'segmentation'] vitjax.tasks.detection" in result.stdout
