"""Nothing a run leaves behind outlives it: data workers die with a killed parent, RAM decode caches of
dead runs are removed at the next start, the training iterator (and its workers) ends with training,
and a run with workers unlinks every shared-memory batch (no "leaked shared_memory" warning at exit)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from train_helpers import colour_folder, tiny_config
from vitjax import modes
from vitjax.data import cache, leftovers, pipeline
from vitjax.data.config import default_config
from vitjax.train import loop

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)


def worker_pid(_):
    return os.getpid()


_PARENT = textwrap.dedent("""
    import sys, time
    import grain
    from vitjax.data import pipeline
    from vitjax.data.config import default_config
    from test_leftovers import worker_pid
    cfg = default_config()
    cfg.workers, cfg.prefetch, cfg.read_threads = 2, 1, 1
    it = iter(pipeline.parallel_reader(grain.MapDataset.range(10**6).map(worker_pid), cfg, workers=2))
    pids = {next(it) for _ in range(50)}
    print(" ".join(map(str, sorted(pids))), flush=True)
    time.sleep(600)
""")


_CLOSING = textwrap.dedent("""
    import grain
    import numpy as np
    from vitjax.data import pipeline
    from vitjax.data.config import default_config
    cfg = default_config()
    cfg.workers, cfg.prefetch, cfg.read_threads = 2, 1, 1
    batch = lambda i: {"image": np.full((4, 16, 16, 3), i % 255, np.uint8), "label": np.arange(4)}
    it = iter(pipeline.parallel_reader(grain.MapDataset.range(10**6).map(batch), cfg, workers=2))
    batches = [next(it) for _ in range(6)]
    del batches
    it.close()
    print("closed", flush=True)
""")


def test_closing_the_workers_iterator_unlinks_every_shared_memory_batch():
    """The workers' batches travel in shared memory; closing the iterator stops the workers in grain's
    order, so each block is unlinked (a worker killed early leaves its in-flight blocks behind)."""
    out = subprocess.run([sys.executable, "-c", _CLOSING], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS])))
    assert out.returncode == 0 and "closed" in out.stdout, out.stderr[-3000:]
    assert "leaked shared_memory" not in out.stderr, out.stderr[-3000:]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the workers' state in /proc")
def test_data_workers_die_when_their_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS])))
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2 and parent.pid not in workers
        assert all(_running(pid) for pid in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.time() + 30
    while any(_running(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers)


def test_ram_caches_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = [f"{dead.pid}-vitjax-train-16x16-abc.u8", f"{dead.pid}-vitjax-train-16x16-abc.u8.filled",
             f"{os.getpid()}-vitjax-eval-16x16-def.u8", "unrelated.u8"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = leftovers.remove_dead_ram_caches(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted(names[:2])
    assert sorted(os.listdir(tmp_path)) == sorted(names[2:])


def test_a_ram_cache_start_removes_dead_runs_caches(tmp_path, monkeypatch):
    removed = []
    monkeypatch.setattr(cache, "remove_dead_ram_caches", lambda folder: removed.append(folder))

    class Records:
        def __len__(self):
            return 1

        def describe(self, i):
            return "r"

        def labels(self):
            return [0]

        def ids(self):
            return [0]

    cfg = default_config()
    cfg.cache = "ram"
    cache.cache_path(cfg, Records(), "train", (16, 16, 3), "")
    assert removed and os.path.isdir(removed[0])


def test_the_training_iterator_is_closed_before_the_final_evaluation(tmp_path, monkeypatch):
    closed, seen_at_finish = [], []
    real_close, real_finish = pipeline.DevicePrefetch.close, loop.outputs.finish

    def close(self):
        closed.append(True)
        real_close(self)

    def finish(*args, **kwargs):
        seen_at_finish.append(bool(closed))
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(pipeline.DevicePrefetch, "close", close)
    monkeypatch.setattr(loop.outputs, "finish", finish)
    data = colour_folder(str(tmp_path / "data"), per_class=8)
    modes.train(tiny_config(f"folder:{data}", batch_size=8, epochs=1, test_split="", export=False),
                str(tmp_path / "run"))
    assert seen_at_finish == [True]


@pytest.mark.slow
def test_a_run_with_workers_ends_without_leaked_shared_memory_warnings(tmp_path):
    data = colour_folder(str(tmp_path / "data"), per_class=8)
    config = tmp_path / "config.py"
    config.write_text(f"import sys\nsys.path[:0] = [{REPO!r}, {TESTS!r}]\nfrom train_helpers import tiny_config\n\n\n"
                      f"def get_config():\n    c = tiny_config('folder:{data}', batch_size=8, epochs=1)\n"
                      f"    c.data.workers = 2\n    c.data.cache = 'ram'\n    return c\n")
    out = subprocess.run([sys.executable, "-m", "vitjax.main", "--config", str(config), "--workdir",
                          str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "leaked shared_memory" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
