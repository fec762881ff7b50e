"""Nothing lost: a folder vitjax did not create is never emptied, readers of a workdir never touch its
checkpoints, a checkpoint of another model is a config mismatch (not damage), and a SIGTERM in any
phase of a run, setup to export, saves what the phase has, says so and exits 143."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

import kill_resume
from train_helpers import colour_folder, tiny_config
from vitjax import errors, modes, trackers
from vitjax.train import evaluation, outputs, setup
from vitjax.train.checkpointing import CheckpointMismatch
from vitjax.train.preemption import Stopped


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return colour_folder(str(tmp_path_factory.mktemp("colours")), per_class=8)


def _config(colours, **train):
    # 19 train images -> 2 steps of 8 per epoch, 4 steps; one evaluation, at the end.
    return tiny_config(f"folder:{colours}", **{**dict(batch_size=8, epochs=2, eval_every="2 epochs",
                                                      log_every=2), **train})


@pytest.fixture(scope="module")
def trained(colours, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("trained") / "run")
    modes.train(_config(colours), workdir)
    return workdir


def _steps(workdir):
    return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def test_a_folder_vitjax_did_not_create_is_never_emptied(colours, tmp_path):
    model = tmp_path / "hf_model"  # a Hugging Face model folder: a config.json, no checkpoints
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"]}))
    (model / "model.safetensors").write_bytes(b"weights")
    for overwrite in (False, True):
        with pytest.raises(errors.BadValue, match=r"hf_model is not a vitjax workdir \(no "
                                                  r"\.vitjax-workdir marker\) and is not empty"):
            modes.train(_config(colours), str(model), overwrite=overwrite)
    assert sorted(os.listdir(model)) == ["config.json", "model.safetensors"]  # not even a lock file

    # --overwrite of vitjax's own workdir removes what vitjax wrote there, nothing else
    workdir = str(tmp_path / "run")
    modes.prepare_workdir(_config(colours), workdir, overwrite=False)
    os.makedirs(os.path.join(workdir, "checkpoints", "2"))
    os.makedirs(os.path.join(workdir, "eval_test"))
    with open(os.path.join(workdir, "notes.txt"), "w", encoding="utf-8") as f:
        f.write("mine")
    modes.prepare_workdir(_config(colours, epochs=3), workdir, overwrite=True)
    assert sorted(os.listdir(workdir)) == [".vitjax-workdir", "config.json", "config.txt", "notes.txt"]


def test_export_leaves_a_live_runs_checkpoints_alone(trained, tmp_path):
    checkpoints = os.path.join(trained, "checkpoints")
    live = os.path.join(checkpoints, "7.orbax-checkpoint-tmp")  # a save under way in a live run
    os.makedirs(os.path.join(live, "state"))
    os.makedirs(os.path.join(checkpoints, ".deleted", "1"))  # its trash, emptied before its next save
    before = _steps(trained)
    try:
        modes.export(None, trained, str(tmp_path / "exported"))
        assert _steps(trained) == before
        assert os.path.isdir(os.path.join(live, "state"))
    finally:
        shutil.rmtree(live)
        shutil.rmtree(os.path.join(checkpoints, ".deleted"))
    assert os.path.isfile(tmp_path / "exported" / "model.safetensors")


def test_a_checkpoint_of_another_model_is_a_config_mismatch_not_damage(colours, trained, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(trained, workdir)
    os.remove(os.path.join(workdir, "config.json"))
    before = _steps(workdir)
    wider = _config(colours)
    wider.model.spec.hidden_size = 48
    with pytest.raises(CheckpointMismatch, match=r"the checkpoint of step 4 in .* does not fit the model "
                                                 r"and optimizer of this config \(params/backbone/.*: "
                                                 r"\(.*32.*\) in the checkpoint, \(.*48.*\) in the model"):
        modes.train(wider, workdir)
    assert _steps(workdir) == before  # nothing moved aside as "damaged"
    with open(os.path.join(workdir, "model.json"), encoding="utf-8") as f:
        assert json.load(f)["spec"]["hidden_size"] == 32  # the run's record still describes its checkpoints


class _Unhandled(Exception):
    """A SIGTERM that reached no handler of vitjax's (it would have killed the process silently)."""


def _signal_inside(monkeypatch, module, name, when=lambda *a, **k: True):
    """Sends this process a SIGTERM inside `module.name` (when `when(args)`), then runs it."""
    real = getattr(module, name)

    def patched(*args, **kwargs):
        if when(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, patched)


def test_sigterm_in_every_phase_saves_says_so_and_exits_143(colours, tmp_path, monkeypatch):
    def unhandled(signum, frame):
        raise _Unhandled("SIGTERM outside vitjax's handlers")

    previous = signal.signal(signal.SIGTERM, unhandled)
    workdir, config = str(tmp_path / "run"), _config(colours)
    phases = [
        (modes, "prepare_workdir", lambda *a, **k: True, r"while preparing the workdir .*run, before training"),
        (setup, "build_run", lambda *a, **k: True, r"while setting up the run in .*run, before training"),
        (evaluation, "evaluate", lambda *a, **k: True,  # the last evaluation of training
         r"at step 4 of 4; saved the checkpoint of step 4"),
        (evaluation, "report", lambda run, params, step, split, outdir: split == "test",
         r"while evaluating the best checkpoint, after training ended at step 4"),
        (outputs, "export", lambda *a, **k: True,
         r"while writing the results and the export \(both complete\)"),
        (trackers.Trackers, "finish", lambda *a, **k: True,
         r"while handing the results to the trackers; the run in .*run is complete"),
    ]
    try:
        for module, name, when, message in phases:
            with monkeypatch.context() as patch:
                _signal_inside(patch, module, name, when)
                with pytest.raises(Stopped, match=f"stopped by SIGTERM {message}") as stopped:
                    modes.train(config, workdir)
            assert stopped.value.exit_code == 143, name
            saved = _steps(workdir) if os.path.isdir(os.path.join(workdir, "checkpoints")) else []
            assert [s for s in saved if not s.startswith(".")] == (
                [] if name in ("prepare_workdir", "build_run") else ["4"])
        assert os.path.isdir(os.path.join(workdir, "best"))  # the export that was under way completed
        results = modes.train(config, workdir)  # and the run ends as one that was never stopped
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert results["best_step"] == 4 and set(results["metrics"]) == {"validation", "test"}


def test_sigterm_in_the_final_report_exits_143_and_leaves_no_ram_cache(colours, tmp_path):
    config = tmp_path / "config.py"
    config.write_text(f"import sys\nsys.path[:0] = [{kill_resume.REPO!r}, {kill_resume.TESTS!r}]\n"
                      f"from train_helpers import tiny_config\n\n\ndef get_config():\n"
                      f"    c = tiny_config('folder:{colours}', batch_size=8, epochs=2, "
                      f"eval_every='2 epochs', test_split='')\n"
                      f"    c.data.cache = 'ram'\n    return c\n")
    workdir = str(tmp_path / "run")
    # the 2nd evaluation: the best checkpoint's validation report, after training
    child, code, _, log = kill_resume.signal_when_paused(
        "sigterm-eval", 2, ["--config", str(config), "--workdir", workdir], str(tmp_path))
    text = open(log, encoding="utf-8").read()
    assert code == 143, text[-2000:]
    assert text.strip().splitlines()[-1].startswith(
        "vitjax: stopped by SIGTERM while evaluating the best checkpoint, after training ended at step 4")
    assert "Traceback" not in text
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"{child.pid}-")]
    assert _steps(workdir) == ["4"]
