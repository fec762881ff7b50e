"""Start-up: seconds from the command to the end of the first train step, before and after a change.

    python bench/startup.py                       # this tree vs `main`, digits demo + ViT-B/16
    python bench/startup.py --before HEAD~3 --cases digits --repeats 3

Each case is the CLI command a user types (`python -m vitjax.main --config ... --workdir ...`), run in
a fresh workdir with `--config.train.log_every=1`: the first line of `metrics.jsonl` is written right
after step 1, and its time minus the launch time is the start-up (interpreter, imports, config,
data, weights, model init, compilation, the step itself). The process is then killed. Each case
runs with a fresh persistent compilation cache ("cold") and again with the cache it filled ("warm"),
for the tree at --before (extracted with `git archive`) and for this tree, in turn (before, after,
before, after, ...), so the machine's drift hits both alike; the table shows the medians.

Cases: "digits" is configs/digits.py as the README runs it; "vit-b16" is configs/imagefolder.py
(ViT-B/16 @224, last 4 blocks + head, float32 on CPU) over a random `save_pretrained` ViT-B/16 and
generated JPEGs (bench/feature_cache.py makes both).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _feature_cache_bench():
    spec = importlib.util.spec_from_file_location("feature_cache_bench",
                                                  os.path.join(ROOT, "bench", "feature_cache.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def case_args(case: str, tmp: str) -> list[str]:
    """The config flags of a case (its data and checkpoint made under `tmp` on first use)."""
    if case == "digits":
        return ["--config", "configs/digits.py"]
    if case == "vit-b16":
        images, checkpoint = os.path.join(tmp, "images"), os.path.join(tmp, "checkpoint")
        if not os.path.isdir(checkpoint):
            bench = _feature_cache_bench()
            bench.make_images(images, 200, 224)
            bench.make_checkpoint(checkpoint, tiny=False)
        return ["--config", "configs/imagefolder.py", f"--config.model.checkpoint={checkpoint}",
                f"--config.data.source=folder:{images}", "--config.model.dtype=float32",
                "--config.data.workers=0", "--config.data.cache=none", "--config.train.batch_size=8"]
    raise ValueError(f"unknown case {case!r}; use digits or vit-b16")


def first_step_seconds(tree: str, args: list[str], workdir: str, cache: str, timeout: float) -> float:
    """Runs the CLI in `tree` until metrics.jsonl has its first train record; returns the seconds."""
    command = [sys.executable, "-m", "vitjax.main", *args, f"--workdir={workdir}",
               "--config.train.log_every=1", "--config.train.progress=False",
               f"--config.compilation_cache={cache}"]
    metrics = os.path.join(workdir, "metrics.jsonl")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=tree)
    start = time.time()
    process = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        while time.time() - start < timeout:
            if os.path.exists(metrics):
                with open(metrics, encoding="utf-8") as f:
                    for line in f:
                        record = json.loads(line)
                        if record.get("split") == "train":
                            return record["time"] - start
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} exited with {process.returncode} before its "
                                   f"first step:\n{process.stderr.read().decode()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"no first step within {timeout} s: {' '.join(command)}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="main", help="git revision of the baseline tree")
    ap.add_argument("--cases", default="digits,vit-b16")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vitjax-startup-")
    try:
        before = os.path.join(tmp, "before")
        os.makedirs(before)
        archive = subprocess.run(["git", "-C", ROOT, "archive", args.before], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", before], input=archive, check=True)
        trees = {"before": before, "after": ROOT}
        times: dict[tuple, list[float]] = {}
        for case in args.cases.split(","):
            flags = case_args(case, tmp)
            for r in range(args.repeats):
                for name, tree in trees.items():
                    cache = os.path.join(tmp, f"jax-cache-{case}-{name}-{r}")
                    for state in ("cold", "warm"):
                        workdir = os.path.join(tmp, f"run-{case}-{name}-{state}-{r}")
                        seconds = first_step_seconds(tree, flags, workdir, cache, args.timeout)
                        times.setdefault((case, state, name), []).append(seconds)
                        print(f"{case} {state} {name}: {seconds:.1f} s", flush=True)
                        shutil.rmtree(workdir, ignore_errors=True)
        print(f"\nstart-up to the end of the first train step (median of {args.repeats}); "
              f"before = {args.before}, after = this tree; {os.cpu_count()} CPUs, "
              f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
        rows = [("case", "compilation cache", "before s", "after s", "after / before")]
        for case in args.cases.split(","):
            for state in ("cold", "warm"):
                b = statistics.median(times[(case, state, "before")])
                a = statistics.median(times[(case, state, "after")])
                rows.append((case, state, f"{b:.1f}", f"{a:.1f}", f"{a / b:.2f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for i, row in enumerate(rows):
            print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
            if i == 0:
                print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
