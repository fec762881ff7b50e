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
