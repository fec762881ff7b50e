"""Faults during training: NaN/inf, a full or read-only checkpoint directory, Ctrl-C at the CLI.

In each case the run stops with one message saying what happened and what to do, and the last good
checkpoint stays complete and restorable. `kill -9` at random moments: tests/kill_resume.py (slow).
"""

from __future__ import annotations

import errno
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from orbax.checkpoint._src.path import atomicity

from test_cli_errors import run_main_raising
from train_helpers import colour_folder, tiny_config
from vitjax import modes
from vitjax.train import checkpointing, loop, setup
from vitjax.train.checkpointing import Checkpointer, CheckpointWriteError


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return colour_folder(str(tmp_path_factory.mktemp("colours")), per_class=8)


def _config(colours, **train):
    # 24 images: 19 train -> 2 steps of 8 per epoch; an evaluation and a checkpoint every epoch.
    return tiny_config(f"folder:{colours}", **{**dict(batch_size=8, epochs=3, test_split="",
                                                      export=False), **train})


def _steps(directory):
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def _state(directory, step):
    """The state of a saved step, read without knowing the model (fails unless it is complete)."""
    with ocp.CheckpointManager(directory) as manager:
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return restored["state"]


def _all_finite(tree):
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


def _fail_on_save(monkeypatch, step: int, error: OSError):
    """orbax's commit of the checkpoint of `step` raises `error` (in its background thread)."""
    real = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self, *args, **kwargs):
        if f"/{step}.orbax-checkpoint-tmp" in str(self.get()):
            raise error
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", finalize)


# --- NaN / inf ------------------------------------------------------------------------------------


def test_parameters_turning_nan_are_never_checkpointed(colours, tmp_path, monkeypatch):
    real = setup.Run.jit_train_step

    def poisoned(run):
        step_fn = real(run)

        def step(state, batch):
            state, out = step_fn(state, batch)
            if int(state.step) == 4:  # the update of step 4 (an evaluation step) blows up; its loss was finite
                state = state.replace(params=jax.tree.map(lambda x: x * jnp.nan, state.params))
            return state, out
        return step

    monkeypatch.setattr(setup.Run, "jit_train_step", poisoned)
    workdir = str(tmp_path / "run")
    with pytest.raises(modes.UserError, match=r"parameters became NaN/inf by step 4\. The last good "
                                              r"checkpoint \(step 2\) .* is kept\. Lower config\.optim\.lr"):
        modes.train(_config(colours), workdir)
    checkpoints = os.path.join(workdir, "checkpoints")
    assert _steps(checkpoints) == ["2"]
    assert _all_finite(_state(checkpoints, 2)["params"])


def test_an_absurd_learning_rate_stops_at_the_first_logged_loss(colours, tmp_path):
    config = _config(colours, log_every=1, epochs=1)
    config.optim.lr = 1e30
    config.optim.warmup = "0"
    # step 1's loss comes from the initial weights; step 2's from the first update
    with pytest.raises(modes.UserError, match=r"training loss became (nan|inf) by step 2\. No checkpoint "
                                              r"had been saved yet\. Lower config\.optim\.lr \(now 1e\+30\)"):
        modes.train(config, str(tmp_path / "run"))
    assert _steps(os.path.join(tmp_path, "run", "checkpoints")) == []


# --- a full or read-only checkpoint directory -----------------------------------------------------


def test_disk_full_during_a_save_stops_with_the_step_and_keeps_the_earlier_checkpoint(
        colours, tmp_path, monkeypatch):
    _fail_on_save(monkeypatch, 4, OSError(errno.ENOSPC, "No space left on device"))
    workdir = str(tmp_path / "run")
    with pytest.raises(modes.UserError, match=r"CheckpointWriteError: could not write the checkpoint of "
                                              r"step 4 .*No space left on device.*intact \(latest: step 2\)"
                                              r".*Free disk space"):
        modes.train(_config(colours), workdir)
    checkpoints = os.path.join(workdir, "checkpoints")
    assert "2" in _steps(checkpoints) and "4" not in _steps(checkpoints)
    assert _all_finite(_state(checkpoints, 2)["params"])
    assert any(name.startswith("4.") for name in _steps(checkpoints))  # half-written, not a step
    reopened = Checkpointer(checkpoints, metric="accuracy", mode="max")  # as the next run does
    assert reopened.latest_step() == 2
    deadline = time.time() + 30  # orbax removes unfinished step directories in the background
    while _steps(checkpoints) != ["2"] and time.time() < deadline:
        time.sleep(0.05)
    reopened.close()
    assert _steps(checkpoints) == ["2"]


def test_a_read_only_directory_fails_at_the_save_at_once(tmp_path, monkeypatch):
    directory = str(tmp_path / "checkpoints")
    state = {"w": jnp.arange(3.0)}
    ckpt = Checkpointer(directory, metric="accuracy", mode="max")
    ckpt.save(1, state, {}, {}, metrics={"accuracy": 0.5})
    ckpt.wait()
    os.chmod(directory, 0o555)
    if os.access(directory, os.W_OK):  # root ignores permissions: refuse the write as a read-only mount

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", directory)

        monkeypatch.setattr(checkpointing.tempfile, "NamedTemporaryFile", read_only)
    try:
        with pytest.raises(CheckpointWriteError, match=r"checkpoint of step 2 .*(Read-only|Permission "
                                                       r"denied).*intact \(latest: step 1\)"):
            ckpt.save(2, state, {}, {}, metrics={"accuracy": 0.6})
        ckpt.close()
    finally:
        os.chmod(directory, 0o755)
    assert _steps(directory) == ["1"]
    np.testing.assert_array_equal(_state(directory, 1)["w"], [0, 1, 2])


# --- Ctrl-C at the command line -------------------------------------------------------------------


@pytest.mark.parametrize("raised, line", [
    (loop.Interrupted(loop._interrupted(8, 21, 8, "/w/checkpoints")),
     "vitjax: stopped by Ctrl-C at step 8 of 21; the latest checkpoint is step 8 in /w/checkpoints."),
    (KeyboardInterrupt(), "vitjax: interrupted by Ctrl-C; run the same command again to resume"),
])
def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys, raised, line):
    with pytest.raises(SystemExit) as exit_info:
        run_main_raising(monkeypatch, raised)
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1 and "Traceback" not in err


# --- a damaged checkpoint, the exported folder ------------------------------------------------------


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_complete_one(colours, tmp_path, caplog):
    config = _config(colours, epochs=2, keep_best=2)
    workdir = str(tmp_path / "run")
    modes.train(config, workdir)
    checkpoints = os.path.join(workdir, "checkpoints")
    assert _steps(checkpoints) == ["2", "4"]
    data_files = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(checkpoints, "4", "state"))
                  for f in files if os.path.basename(d) == "d"]
    assert data_files
    for path in data_files:  # its array data lost after it was committed
        os.remove(path)
    with caplog.at_level(logging.WARNING):
        results = modes.train(config, workdir)
    assert f"the checkpoint of step 4 in {checkpoints} is damaged" in caplog.text
    assert "resuming from the previous complete checkpoint" in caplog.text
    assert results["steps"] == 4 and _steps(checkpoints) == ["2", "4"]  # step 4 trained and saved again
    assert os.path.isdir(os.path.join(checkpoints, ".damaged-4"))
    assert _all_finite(_state(checkpoints, 4)["params"])


def test_the_exported_folder_is_readable_by_all_and_export_mode_keeps_the_model_card(colours, tmp_path):
    config = _config(colours, epochs=1, export=True, test_split="")
    workdir = str(tmp_path / "run")
    modes.train(config, workdir)
    best = os.path.join(workdir, "best")
    mask = os.umask(0)
    os.umask(mask)
    assert {name: os.stat(os.path.join(best, name)).st_mode & 0o777 for name in os.listdir(best)} == {
        name: 0o666 & ~mask for name in os.listdir(best)}
    with open(os.path.join(best, "README.md"), encoding="utf-8") as f:
        card = f.read()
    assert "| validation |" in card
    modes.export(config, workdir, None)  # into best/ again, from the checkpoint
    with open(os.path.join(best, "README.md"), encoding="utf-8") as f:
        assert f.read() == card


def test_a_real_write_failure_is_one_message_without_orbax_tracebacks(tmp_path, caplog):
    """The file-size limit makes the kernel refuse the write (EFBIG) as a full disk would (ENOSPC):
    tensorstore reports it as a ValueError in orbax's background thread."""
    import resource
    import signal

    directory = str(tmp_path / "checkpoints")
    ckpt = Checkpointer(directory, metric="accuracy", mode="max")
    ckpt.save(1, {"w": jnp.zeros(4)}, {}, {}, metrics={"accuracy": 0.5})
    ckpt.wait()
    big = {"w": jnp.asarray(np.random.default_rng(0).random(1_000_000), jnp.float32)}  # 4 MB, incompressible
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    try:
        with caplog.at_level(logging.INFO), pytest.raises(
                CheckpointWriteError, match=r"could not write the checkpoint of step 2 to .*File too large.*"
                                            r"intact \(latest: step 1\)\. Free disk space"):
            ckpt.save(2, big, {}, {}, metrics={"accuracy": 0.6})
            ckpt.wait()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
        ckpt.close()
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage()[:200] for r in caplog.records]
    assert _steps(directory)[:1] == ["1"] and "2" not in _steps(directory)
