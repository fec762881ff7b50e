"""The command line: a user's mistake is one line naming the key or file and the fix; a bug keeps
its traceback (`vitjax.errors.UserError` marks the former, any other exception is the latter)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from train_helpers import tiny_config
from vitjax import errors, main, modes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    out = subprocess.run([sys.executable, "-m", "vitjax.main", "--config", "configs/digits.py",
                          "--workdir", "/nonexistent/run", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    return out.returncode, out.stderr.strip()


@pytest.mark.parametrize("override, line", [
    ("--config.train.epoch=3", "vitjax: --config.train.epoch: config.train has no key 'epoch'. Did you "
                               "mean 'epochs' or 'export'? Known keys under config.train: ['batch_size',"),
    ("--config.optim.learning_rate=1e-3", "vitjax: --config.optim.learning_rate: config.optim has no key "
                                          "'learning_rate'. Known keys under config.optim: ['b1', 'b2',"),
    ("--config.optm.lr=1", "vitjax: --config.optm.lr: config.optm is not a group of keys."),
])
def test_a_mistyped_override_is_one_clean_line(override, line):
    code, err = _cli(override)
    assert code == 1 and err.startswith(line), err
    assert "\n" not in err and "\\n" not in err and "\\'" not in err


def run_main_raising(monkeypatch, raised):
    """`main.main` of a train run whose mode raises `raised`."""
    def train(*args):
        raise raised

    monkeypatch.setattr(modes, "train", train)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver((main._CONFIG, tiny_config("demo:digits")), (main._WORKDIR, "/w"),
                             (main._MODE, "train")):
        main.main([])


def test_a_user_error_is_one_line(monkeypatch):
    with pytest.raises(SystemExit) as exit_info:
        run_main_raising(monkeypatch, errors.BadValue("config.train.epochs must be a positive number, got 0."))
    assert exit_info.value.code == "vitjax: config.train.epochs must be a positive number, got 0."
    with pytest.raises(SystemExit) as exit_info:
        run_main_raising(monkeypatch, errors.BadKey("--split 'tset' is not a split"))
    assert exit_info.value.code == "vitjax: --split 'tset' is not a split"  # not KeyError's quoted repr


@pytest.mark.parametrize("bug", [ValueError("too many values to unpack"), KeyError("logits")])
def test_a_bug_keeps_its_traceback(monkeypatch, bug):
    with pytest.raises(type(bug)):  # not turned into a one-line SystemExit hiding where it came from
        run_main_raising(monkeypatch, bug)


def test_an_os_error_is_one_line_with_its_kind(monkeypatch):
    @modes._user_errors
    def mode():
        raise FileNotFoundError("/data/x.jpg: no such file")

    with pytest.raises(modes.UserError, match=r"^FileNotFoundError: /data/x\.jpg: no such file$"):
        mode()
