"""Preemption: SIGTERM and Ctrl-C finish the step under way, save it, say where and exit 143 / 130;
`train.checkpoint_every` bounds what a hard crash loses. Two processes where only one is preempted:
tests/test_scale.py (slow); SIGTERM and Ctrl-C at random moments, resumed bit for bit:
tests/kill_resume.py (slow).
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from safetensors.numpy import load_file

import kill_resume
from train_helpers import colour_folder, tiny_config
from vitjax import config as config_lib
from vitjax import modes
from vitjax.train import setup
from vitjax.train.preemption import Stopped


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return colour_folder(str(tmp_path_factory.mktemp("colours")), per_class=8)


def _config(colours, **train):
    # 19 train images -> 2 steps of 8 per epoch, 6 steps; an evaluation every 3 epochs.
    return tiny_config(f"folder:{colours}", **{**dict(batch_size=8, epochs=3, eval_every="3 epochs",
                                                      log_every=5, test_split=""), **train})


def _steps(workdir):
    return sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())


def _on_train_step(monkeypatch, n: int, action):
    """Calls `action()` inside the n-th train step, after the step was dispatched."""
    real = setup.Run.jit_train_step
    calls = {"n": 0}

    def patched(run):
        step_fn = real(run)

        def step(state, batch):
            out = step_fn(state, batch)
            calls["n"] += 1
            if calls["n"] == n:
                action()
            return out
        return step

    monkeypatch.setattr(setup.Run, "jit_train_step", patched)


def test_sigterm_saves_the_step_under_way_and_the_resumed_run_equals_an_uninterrupted_one(
        colours, tmp_path, monkeypatch):
    straight = str(tmp_path / "straight")
    modes.train(_config(colours), straight)
    workdir = str(tmp_path / "run")
    with monkeypatch.context() as patch:
        _on_train_step(patch, 3, lambda: os.kill(os.getpid(), signal.SIGTERM))
        with pytest.raises(Stopped, match=r"stopped by SIGTERM at step 3 of 6; saved the checkpoint of "
                                          r"step 3 in .*checkpoints\. Run the same command again") as e:
            modes.train(_config(colours), workdir)
    assert e.value.exit_code == 143
    assert _steps(workdir) == [3]  # no evaluation was due: without the signal nothing was saved
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    modes.train(_config(colours), workdir)
    ours = load_file(os.path.join(workdir, "best", "model.safetensors"))
    theirs = load_file(os.path.join(straight, "best", "model.safetensors"))
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert _logged(workdir) == _logged(straight)  # the train metrics of steps 1-3 carried over


def _logged(workdir):
    """metrics.jsonl without timings."""
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [{k: v for k, v in json.loads(line).items() if k not in ("time", "images_per_s")}
                for line in f]


def test_checkpoint_every_bounds_what_a_crash_loses(colours, tmp_path, monkeypatch):
    def crash():
        raise RuntimeError("the machine went away")

    for every, kept in (("0 steps", []), ("2 steps", [4])):
        workdir = str(tmp_path / f"run_{every[0]}")
        with monkeypatch.context() as patch:
            _on_train_step(patch, 5, crash)
            with pytest.raises(RuntimeError, match="went away"):
                modes.train(_config(colours, checkpoint_every=every), workdir)
        assert _steps(workdir) == kept


@pytest.mark.parametrize("kind", ["sigterm", "ctrl-c"])
def test_the_cli_saves_and_exits_with_the_signal_status_within_30_s(colours, tmp_path, kind):
    config = tmp_path / "config.py"
    config.write_text(f"import sys\nsys.path[:0] = [{kill_resume.REPO!r}, {kill_resume.TESTS!r}]\n"
                      f"from train_helpers import tiny_config\n\n\ndef get_config():\n"
                      f"    return tiny_config('folder:{colours}', batch_size=8, epochs=3, "
                      f"eval_every='3 epochs', test_split='')\n")
    workdir = str(tmp_path / "run")
    _, code, seconds, log = kill_resume.signal_when_paused(
        kind, 2, ["--config", str(config), "--workdir", workdir], str(tmp_path))
    kill_resume.check_signalled(kind, code, log, seconds)
    assert _steps(workdir) == [2]


@pytest.mark.parametrize("key, value, message", [
    ("optim.lr", float("nan"), r"config\.optim\.lr must be a positive number, got nan"),
    ("optim.lr", float("inf"), r"config\.optim\.lr must be a positive number, got inf"),
    ("train.eval_every", "0epochs", r"config\.train\.eval_every='0epochs' would evaluate and checkpoint "
                                    r"after every step; give a positive duration"),
    ("train.checkpoint_every", "often", r"config\.train\.checkpoint_every='often' is not a duration"),
])
def test_values_that_would_misbehave_are_refused(key, value, message):
    config = tiny_config("demo:digits")
    group, name = key.split(".")
    config[group][name] = value
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config)
