"""Workdirs on object storage (`vitjax.storage`), against a real S3 API server (tests/s3_server.py)."""
from __future__ import annotations

import os

import pytest

from vitjax import storage


def test_storage_functions_on_s3(s3_bucket, tmp_path):
    root = storage.join(s3_bucket, "run")
    assert storage.is_remote(root) and not storage.is_remote(str(tmp_path)) and storage.scheme(root) == "s3"
    assert storage.join(root, "a", "b.txt") == f"{s3_bucket}/run/a/b.txt"
    assert not storage.exists(root) and storage.listdir(root) == []
    storage.write_text(storage.join(root, "a", "b.txt"), "hello")
    storage.write_bytes(storage.join(root, "c.bin"), b"\0\1")
    assert storage.read_text(storage.join(root, "a", "b.txt")) == "hello"
    assert storage.isdir(root) and storage.isdir(storage.join(root, "a")) and storage.isfile(storage.join(root, "c.bin"))
    assert storage.listdir(root) == ["a", "c.bin"]
    assert storage.walk_files(root) == ["a/b.txt", "c.bin"]
    assert storage.glob(storage.join(root, "*.bin")) == [storage.join(root, "c.bin")]
    # the lock's primitive: a conditional create, refused (412 on the server) once the object exists
    lock = storage.join(root, "lock")
    assert storage.create_exclusive(lock, b"one") and not storage.create_exclusive(lock, b"two")
    assert storage.read_bytes(lock) == b"one"
    # trees both ways, the commit marker last; a local file for libraries that need one
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "x.txt").write_text("x")
    (tmp_path / "tree" / "DONE").write_text("")
    storage.copy(str(tmp_path / "tree"), storage.join(root, "tree"), last="DONE")
    assert storage.walk_files(storage.join(root, "tree")) == ["DONE", "sub/x.txt"]
    with storage.local_copy(storage.join(root, "tree")) as local:
        assert open(os.path.join(local, "sub", "x.txt")).read() == "x"
    assert not os.path.exists(local)
    with storage.local_output(storage.join(root, "out")) as local:
        open(os.path.join(local, "plot.png"), "wb").write(b"png")
    assert storage.read_bytes(storage.join(root, "out", "plot.png")) == b"png" and not os.path.exists(local)
    with pytest.raises(RuntimeError), storage.local_output(storage.join(root, "failed")) as local:
        open(os.path.join(local, "half.png"), "wb").write(b"p")
        raise RuntimeError("the writer failed")
    assert not storage.exists(storage.join(root, "failed"))  # nothing uploaded from a failed write
    storage.rename(storage.join(root, "tree"), storage.join(root, "moved"))
    assert storage.walk_files(storage.join(root, "moved")) == ["DONE", "sub/x.txt"] and not storage.exists(storage.join(root, "tree"))
    storage.rmtree(storage.join(root, "moved"))
    assert not storage.exists(storage.join(root, "moved"))
    # a mirror uploads what changed since its last sync
    mirror = storage.Mirror(storage.join(root, "logs"))
    with open(os.path.join(mirror.local, "metrics.jsonl"), "a") as f:
        f.write("1\n")
    mirror.sync()
    assert storage.read_text(storage.join(root, "logs", "metrics.jsonl")) == "1\n"
    with open(mirror.pull("metrics.jsonl"), "a") as f:
        f.write("2\n")
    mirror.close()
    assert storage.read_text(storage.join(root, "logs", "metrics.jsonl")) == "1\n2\n"


# ---- the workdir on s3:// ------------------------------------------------------------------------------
import importlib.util  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from tests import kill_resume  # noqa: E402
from tests.test_preemption import _on_train_step  # noqa: E402
from tests.train_helpers import tiny_config  # noqa: E402
from vitjax import modes, workdir_lock  # noqa: E402
from vitjax.errors import BadValue  # noqa: E402
from vitjax.train.checkpointing import has_checkpoints  # noqa: E402
from vitjax.train.preemption import Stopped  # noqa: E402
from vitjax.workdir import LOCK, Workdir  # noqa: E402


def _load_config(path: str):
    spec = importlib.util.spec_from_file_location("kill_resume_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _kill_inside_step(config_path: str, workdir: str, step: int, folder, env: dict) -> None:
    """The CLI in a child process, `kill -9`ed inside its `step`-th train step (tests/kill_resume.py)."""
    marker = os.path.join(folder, "paused")
    child = subprocess.Popen([sys.executable, kill_resume.__file__, "--child", "step", str(step), marker, "--",
                              "--config", config_path, "--workdir", workdir], cwd=folder,
                             env={**kill_resume._env(), **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not os.path.exists(marker) and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, child.stderr.read().decode()[-3000:]
    child.send_signal(signal.SIGKILL)
    child.wait()


def _layout(root: str) -> set[str]:
    """The workdir's files, relative, with the names that differ between two equal runs folded: a
    checkpoint's files (orbax names its data files by hash) to its step, TensorBoard's event files."""
    out = set()
    for name in storage.walk_files(root):
        parts = name.split("/")
        if parts[0] == "checkpoints":
            out.add("/".join(parts[:2]))
        elif parts[0] == "tensorboard":
            out.add("tensorboard/<events>")
        elif name != LOCK:
            out.add(name)
    return out


def test_a_run_on_s3_killed_preempted_and_resumed_equals_the_run_on_local_disk(s3_bucket, s3_env, tmp_path,
                                                                               monkeypatch):
    """kill -9 in a train step, then SIGTERM in another, then to the end, with --workdir s3://...: the
    export, results.json and metrics.jsonl equal a local run's, the bucket holds the same files, nothing
    lands in a local folder named `s3:`; predict, evaluate and serve read the bucket's best/."""
    config_path = kill_resume._write_config(str(tmp_path))
    config = _load_config(config_path)
    monkeypatch.chdir(tmp_path)
    local = str(tmp_path / "local")
    modes.train(config, local)

    workdir = f"{s3_bucket}/runs/digits"
    _kill_inside_step(config_path, workdir, 8, tmp_path, s3_env)
    lock = storage.join(workdir, LOCK)
    assert json.loads(storage.read_text(lock))["host"] == socket.gethostname()  # a killed run leaves its lock
    assert has_checkpoints(storage.join(workdir, "checkpoints"))
    with monkeypatch.context() as patch:  # resumed (the dead run's lock taken over), then preempted
        _on_train_step(patch, 2, lambda: os.kill(os.getpid(), signal.SIGTERM))
        with pytest.raises(Stopped, match=rf"stopped by SIGTERM at step (\d+) of 21; saved the checkpoint of step "
                                          rf"\d+ in {workdir}/checkpoints") as stopped:
            modes.train(config, workdir)
    step = stopped.value.args[0].split("saved the checkpoint of step ")[1].split()[0]
    assert storage.isfile(storage.join(workdir, "checkpoints", step, "_CHECKPOINT_METADATA"))
    assert not storage.exists(lock)  # released in good order
    modes.train(config, workdir)

    copy = str(tmp_path / "copy")
    storage.copy(workdir, copy)
    assert kill_resume._compare(local, copy) == []
    assert _layout(workdir) == _layout(local)
    assert {"config.json", "data_split.json", "metrics.jsonl", "results.json", "report.html", "learning_curves.png",
            ".vitjax-workdir", "best/model.safetensors"} <= _layout(workdir)
    assert not os.path.exists(tmp_path / "s3:")

    # the modes after training, reading the bucket: the local run's answers
    images = [str(tmp_path / "data" / "red")]
    predicted = [modes.predict(None, wd, None, images, None, str(tmp_path / f"pred_{i}")) for i, wd in
                 enumerate((local, workdir))]
    assert predicted[0] == predicted[1]
    assert modes.evaluate(None, workdir, None, "validation") == modes.evaluate(None, local, None, "validation")
    assert storage.isfile(storage.join(workdir, "eval_validation", "report.json"))
    from fastapi.testclient import TestClient

    from vitjax.serve import cli
    apps = []
    monkeypatch.setattr("uvicorn.run", lambda app, **server: apps.append(app))
    assert cli.main(["--model", f"{workdir}/best"]) == 0
    with open(predicted[0][0]["file"], "rb") as f, TestClient(apps[0]) as client:
        served = client.post("/predict", files=[("files", ("a.png", f.read()))]).json()["predictions"][0]
    assert served["label"] == predicted[0][0]["label"]
    assert not os.path.exists(tmp_path / "s3:")


def test_the_lock_object_marker_and_refusals_on_s3(s3_bucket, caplog):
    workdir = f"{s3_bucket}/run"
    lock = storage.join(workdir, LOCK)
    with workdir_lock.hold(workdir):
        assert json.loads(storage.read_text(lock))["pid"] == os.getpid()
        with pytest.raises(workdir_lock.WorkdirBusy, match=rf"in use by another run \(pid {os.getpid()}.*lock object "
                                                           rf"{lock}\).*aws s3 rm {lock}"):
            modes.train(tiny_config("folder:/nowhere"), workdir)
    assert not storage.exists(lock)
    # another host's lock is never taken over; a dead process's of this host is
    storage.write_text(lock, json.dumps({"host": "elsewhere", "pid": 1}))
    with pytest.raises(workdir_lock.WorkdirBusy, match="pid 1 on host elsewhere"), workdir_lock.hold(workdir):
        pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage.write_text(lock, json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    with workdir_lock.hold(workdir):
        assert json.loads(storage.read_text(lock))["pid"] == os.getpid()
    assert "taking over the lock" in caplog.text
    # a prefix vitjax did not create is refused and never cleared
    storage.write_text(storage.join(s3_bucket, "theirs", "data.csv"), "a,b\n")
    foreign = Workdir(storage.join(s3_bucket, "theirs"))
    with pytest.raises(BadValue, match="is not a vitjax workdir"):
        foreign.check_usable(overwrite=True)
    with pytest.raises(BadValue, match="nothing in it is deleted"):
        foreign.clear()
    assert storage.exists(storage.join(s3_bucket, "theirs", "data.csv"))


def test_multi_process_runs_on_s3_are_refused_and_gs_passes(monkeypatch):
    import jax
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(BadValue, match=r"--workdir s3://b/run: a run of 2 processes .* gs:// workdir"):
        modes.check_workdir_store("s3://b/run")
    modes.check_workdir_store("gs://b/run")
    modes.check_workdir_store("/shared/run")
