"""Where a profiled step's device time goes: the kernels of a `jax.profiler` trace, summed by name.

    python bench/profile_summary.py PROFILE_DIR [--steps 10] [--top 25]

PROFILE_DIR is what `train_throughput.py --profile PROFILE_DIR` wrote (the newest `*.trace.json.gz`
under it is read). Prints per kernel name its time per step and share of the device time, and the
shares of kernel families (matrix products, fused attention, XLA fusions, copies, the rest), which
say which lever is left: matmul-bound (dtype, shapes), attention, or elementwise/memory-bound work.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re

# Kernel families by name, first match wins (cuBLAS/CUTLASS products, cuDNN attention, XLA fusions).
FAMILIES = (
    ("attention", re.compile(r"cudnn|flash|fmha|attention", re.I)),
    ("matmul", re.compile(r"gemm|cutlass|cublas|xmma|sm90_|nvjet|dot", re.I)),
    ("copy/transpose", re.compile(r"copy|transpose|memcpy|memset", re.I)),
    ("fusion", re.compile(r"fusion|reduce|loop_|input_", re.I)),
)


def load_events(profile_dir: str, process: str, thread: str) -> list[dict]:
    """The complete ('X') events of the threads whose name contains `thread` in the processes whose
    name contains `process`, from the newest trace. On a GPU the kernels are on the device's "Stream"
    threads; its "XLA Ops" / "XLA Modules" threads repeat the same time per op and per program."""
    traces = sorted(glob.glob(os.path.join(profile_dir, "**", "*.trace.json.gz"), recursive=True),
                    key=os.path.getmtime)
    if not traces:
        raise FileNotFoundError(f"no *.trace.json.gz under {profile_dir}; write one with "
                                "bench/train_throughput.py --profile DIR")
    with gzip.open(traces[-1], "rt", encoding="utf-8") as f:
        events = json.load(f)["traceEvents"]
    meta = lambda kind, key: {key(e): e["args"]["name"] for e in events
                              if e.get("ph") == "M" and e.get("name") == kind}
    processes = meta("process_name", lambda e: e["pid"])
    threads = meta("thread_name", lambda e: (e["pid"], e["tid"]))
    return [e for e in events if e.get("ph") == "X" and process in processes.get(e["pid"], "")
            and thread in threads.get((e["pid"], e["tid"]), "")]


def family(name: str) -> str:
    return next((fam for fam, rx in FAMILIES if rx.search(name)), "other")


def summarize(events: list[dict], steps: int, top: int) -> str:
    by_name = collections.Counter()
    for e in events:
        by_name[e["name"]] += e.get("dur", 0.0)  # microseconds
    total = sum(by_name.values()) or 1.0
    by_family = collections.Counter()
    for name, dur in by_name.items():
        by_family[family(name)] += dur
    lines = [f"device time {total / steps / 1e3:.2f} ms/step over {len(by_name)} kernel names", "",
             f"{'family':<16} {'ms/step':>8} {'share':>6}"]
    lines += [f"{fam:<16} {dur / steps / 1e3:>8.3f} {100 * dur / total:>5.1f}%"
              for fam, dur in by_family.most_common()]
    lines += ["", f"{'kernel':<80} {'ms/step':>8} {'share':>6}"]
    lines += [f"{name[:80]:<80} {dur / steps / 1e3:>8.3f} {100 * dur / total:>5.1f}%"
              for name, dur in by_name.most_common(top)]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("profile_dir")
    p.add_argument("--steps", type=int, default=10, help="steps the trace holds (train_throughput's --steps)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--process", default="/device:", help="trace processes whose name contains this")
    p.add_argument("--thread", default="Stream", help="their threads whose name contains this")
    args = p.parse_args(argv)
    print(summarize(load_events(args.profile_dir, args.process, args.thread), args.steps, args.top))


if __name__ == "__main__":
    main()
