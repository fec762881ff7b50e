"""`kill -9` the training CLI at chosen and random moments, run the same command again, compare.

    python tests/kill_resume.py [--kills 6] [--seed 0] [--root DIR]

A tiny run (a 2-block ViT at 16 px on 72 generated images: 21 steps, an evaluation and a
checkpoint every 3 steps, dropout and flips so every step draws random numbers) is trained once
without interruption. The same command is then started again and again in another workdir, and
each start is stopped at one of these moments:

    step         inside a train step (SIGKILL)
    eval         inside an evaluation (SIGKILL)
    save         inside an asynchronous checkpoint save, its files written, before the commit rename
    delete       while the checkpoints the keep policy dropped are being removed (SIGKILL)
    timer        after a random delay, wherever the run happens to be (SIGKILL)
    ctrl-c       SIGINT inside a train step: the step finishes and is saved; one line naming it, exit 130
    ctrl-c-eval  the same inside an evaluation
    sigterm      SIGTERM (a preemption notice) inside a train step: the same, exit status 143

The named moments are reached through a hook this script installs in the child (`--child`: it
patches the named function to write a marker file and sleep, then runs `vitjax.main`); the parent
waits for the marker and sends the signal. After every stop the checkpoint directory is checked:
every step orbax lists restores completely, and everything else is an unfinished temporary
directory or the trash of dropped checkpoints. When a start reaches the end of training before its
stop point (or after the last stop, when the plain command has run to the end), the workdir's
exported weights, results.json and metrics.jsonl must equal the uninterrupted run's, bit for bit
apart from timings; the next stops begin again in a fresh workdir. The script prints each stop
and how many it tried, and exits with status 0 when everything held.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
KINDS = ("step", "eval", "save", "delete", "timer", "ctrl-c", "ctrl-c-eval", "sigterm")
PAUSE_S = 600
SIGNALLED_PAUSE_S = 3  # a signal is handled once the step ends: a short pause, then the step goes on
SIGNALS = {"ctrl-c": signal.SIGINT, "ctrl-c-eval": signal.SIGINT, "sigterm": signal.SIGTERM,
           "sigterm-eval": signal.SIGTERM}  # the last: tests/test_workdir_safety.py, not a random kind


# --- the child: the CLI with a pause at a named moment -----------------------------------------

def _child(point: str, occurrence: int, marker: str, cli_args: list[str]) -> None:
    """Runs the CLI in this process, pausing (marker written) at the `occurrence`-th `point`."""
    import asyncio

    from orbax.checkpoint._src.path import atomicity

    from vitjax import main
    from vitjax.train import checkpointing, evaluation, setup

    seen = {"n": 0}

    def pause() -> None:
        seen["n"] += 1
        if seen["n"] == occurrence:
            open(marker, "w").close()
            time.sleep(SIGNALLED_PAUSE_S if point in SIGNALS else PAUSE_S)

    if point in ("step", "ctrl-c", "sigterm"):
        jit_train_step = setup.Run.jit_train_step

        def paused_train_step(run):
            step = jit_train_step(run)

            def run_step(state, batch):
                out = step(state, batch)
                pause()  # dispatched, not yet recorded by the loop
                return out
            return run_step
        setup.Run.jit_train_step = paused_train_step
    elif point in ("eval", "ctrl-c-eval", "sigterm-eval"):
        compute = evaluation.compute

        def paused_compute(*args, **kwargs):
            pause()
            return compute(*args, **kwargs)
        evaluation.compute = paused_compute
    elif point == "save":
        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def paused_finalize(self, *args, **kwargs):
            if self.get().parent.name == "checkpoints":  # the step directory, not one of its items
                await asyncio.to_thread(pause)
            return await finalize(self, *args, **kwargs)
        atomicity.AtomicRenameTemporaryPath.finalize = paused_finalize
    elif point == "delete":
        empty_trash = checkpointing.Checkpointer._empty_trash

        def paused_empty_trash(self):
            trash = os.path.join(self.directory, checkpointing.TRASH)
            files = [os.path.join(d, f) for d, _, names in os.walk(trash) for f in names]
            if files:
                os.remove(files[0])  # a removal half done
                pause()
            empty_trash(self)
        checkpointing.Checkpointer._empty_trash = paused_empty_trash
    sys.argv = ["vitjax", *cli_args]
    main.run()


# --- the parent ------------------------------------------------------------------------------

def _write_config(root: str) -> str:
    sys.path[:0] = [REPO, TESTS]
    from train_helpers import colour_folder
    data = colour_folder(os.path.join(root, "data"), per_class=24)
    path = os.path.join(root, "tiny_config.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(f'''\
            """The kill_resume run: 21 steps, a checkpoint every 3, random numbers in every step."""
            import sys
            sys.path[:0] = [{REPO!r}, {TESTS!r}]
            from train_helpers import tiny_config


            def get_config():
                c = tiny_config("folder:{data}", batch_size=8, epochs=3, eval_every="3 steps")
                c.model.dropout_rate = 0.1
                c.data.augment.hflip = 0.5
                return c
            '''))
    return path


def _env() -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", PYTHONPATH=REPO,
                TOKENIZERS_PARALLELISM="false")


def _cli(config: str, workdir: str) -> list[str]:
    return ["--config", config, "--workdir", workdir]


def _run_to_end(config: str, workdir: str) -> None:
    out = subprocess.run([sys.executable, "-m", "vitjax.main", *_cli(config, workdir)], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        raise SystemExit(f"the run in {workdir} failed:\n{out.stderr[-3000:]}")


def _stop_once(kind: str, config: str, workdir: str, rng: random.Random, duration: float,
               log: str) -> str | None:
    """Starts the command and stops it at `kind`; returns what happened in words, or None when
    the run reached its end first. `duration` is an uninterrupted run's, startup included."""
    marker = os.path.join(os.path.dirname(workdir), "paused")
    if os.path.exists(marker):
        os.remove(marker)
    if kind == "timer":
        command = [sys.executable, "-m", "vitjax.main", *_cli(config, workdir)]
    else:
        occurrence = {"step": rng.randint(1, 8), "ctrl-c": rng.randint(2, 8), "eval": rng.randint(1, 3),
                      "save": rng.randint(1, 3), "delete": 1, "ctrl-c-eval": rng.randint(1, 3),
                      "sigterm": rng.randint(2, 8)}[kind]
        command = [sys.executable, os.path.abspath(__file__), "--child", kind, str(occurrence), marker,
                   "--", *_cli(config, workdir)]
    with open(log, "w", encoding="utf-8") as err:
        child = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + (rng.uniform(0.3, 0.8) * duration if kind == "timer" else 600)
        while child.poll() is None and time.time() < deadline and not os.path.exists(marker):
            time.sleep(0.05)
        if child.poll() is not None:
            if child.returncode != 0:
                raise SystemExit(f"{kind}: the run failed before it was stopped; see {log}")
            return None
        if kind in SIGNALS:
            sent = time.time()
            child.send_signal(SIGNALS[kind])
            code = child.wait(timeout=300)
            return check_signalled(kind, code, log, time.time() - sent)
        child.send_signal(signal.SIGKILL)
        child.wait()
    return "killed"


def signal_when_paused(kind: str, occurrence: int, cli_args: list[str], folder: str):
    """Starts the CLI (`cli_args`) in a child paused at the `occurrence`-th moment `kind`, sends it
    the kind's signal there and waits for it to end; returns (child, exit status, seconds from the
    signal to the end, path of its stderr log)."""
    marker, log = os.path.join(folder, "paused"), os.path.join(folder, "err.log")
    with open(log, "w", encoding="utf-8") as err:
        child = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", kind, str(occurrence), marker, "--",
             *cli_args], cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 300
        while not os.path.exists(marker) and child.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        sent = time.time()
        child.send_signal(SIGNALS[kind])
        code = child.wait(timeout=120)
    return child, code, time.time() - sent, log


def check_signalled(kind: str, code: int, log: str, seconds: float) -> str:
    """A signalled run saved the step under way, said where in one last line, and exited with
    the signal's status within the usual 30 s grace period."""
    with open(log, encoding="utf-8") as f:
        text = f.read()
    last = text.strip().splitlines()[-1] if text.strip() else ""
    name, status = ("SIGTERM", 143) if kind == "sigterm" else ("Ctrl-C", 130)
    saved = last.startswith(f"vitjax: stopped by {name} at step ") and "saved the checkpoint" in last
    if code != status or "Traceback" in text or not saved or seconds > 30:
        raise SystemExit(f"{kind}: status {code} after {seconds:.0f} s, last line {last!r}; see {log}")
    return f"{name}: saved, one line, status {status} after {seconds:.0f} s"


def _check_checkpoints(directory: str) -> list[int]:
    """Every listed step restores whole; every other entry is unfinished or trash. Returns the steps."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(directory):
        return []
    names = os.listdir(directory)
    strays = [n for n in names  # hidden entries (the trash, a write probe) are never steps
              if not n.isdigit() and ".orbax-checkpoint-tmp" not in n and not n.startswith(".")]
    if strays:
        raise SystemExit(f"{directory} holds entries that are neither steps nor unfinished saves: {strays}")
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
    steps = sorted(manager.all_steps())
    if steps != sorted(int(n) for n in names if n.isdigit()):
        raise SystemExit(f"{directory}: orbax lists steps {steps}, the directory holds {sorted(names)}")
    for step in steps:
        try:
            manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore(),
                host=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - any failure means a corrupt step
            raise SystemExit(f"{directory}/{step} is listed as a checkpoint but does not restore: {e}")
    manager.close()
    return steps


# Values that legitimately differ between two runs of the same computation.
_TIMING = ("time", "images_per_s", "runtime_s", "train_images_per_s")


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if not k.endswith(_TIMING)}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _compare(straight: str, resumed: str) -> list[str]:
    """Differences between the outputs of two workdirs (weights exactly, logs without timings)."""
    import numpy as np
    from safetensors.numpy import load_file

    problems = []
    ours = load_file(os.path.join(resumed, "best", "model.safetensors"))
    theirs = load_file(os.path.join(straight, "best", "model.safetensors"))
    if ours.keys() != theirs.keys():
        problems.append("the exported tensors differ in names")
    for name in sorted(ours.keys() & theirs.keys()):
        if not np.array_equal(ours[name], theirs[name]):
            problems.append(f"tensor {name}: max |diff| {np.abs(ours[name] - theirs[name]).max():.3g}")
    for name in ("results.json", "metrics.jsonl"):
        with open(os.path.join(resumed, name), encoding="utf-8") as a, \
                open(os.path.join(straight, name), encoding="utf-8") as b:
            read = json.load if name.endswith(".json") else (lambda f: [json.loads(x) for x in f])
            mine, reference = _without_timing(read(a)), _without_timing(read(b))
        if mine != reference:
            problems.append(f"{name} differs from the uninterrupted run's")
    return problems


def run(kills: int, seed: int, root: str) -> int:
    """The whole check; returns the number of stops tried (raises SystemExit on a failure).

    Stops continue in one workdir until a start reaches the end of training before its stop
    point; that round's result is compared and the next stops begin a new round.
    """
    logging.disable(logging.WARNING)  # orbax's notes on opening the directories read-only
    rng = random.Random(seed)
    config = _write_config(root)
    straight = os.path.join(root, "straight")
    started = time.time()
    _run_to_end(config, straight)
    duration = time.time() - started
    print(f"uninterrupted run: {duration:.0f} s", flush=True)
    kinds = [KINDS[i % len(KINDS)] for i in range(kills)]
    rng.shuffle(kinds)
    tried = rounds = 0
    while tried < kills:
        rounds += 1
        if rounds > 2 * kills:
            raise SystemExit(f"the run kept finishing before the stop point {kinds[tried]!r}")
        resumed = os.path.join(root, f"resumed_{rounds}")
        while tried < kills:
            kind = kinds[tried]
            outcome = _stop_once(kind, config, resumed, rng, duration,
                                 os.path.join(root, f"stop_{rounds}_{tried + 1:02d}.log"))
            steps = _check_checkpoints(os.path.join(resumed, "checkpoints"))
            if outcome is None:  # the run reached its end: this round is done
                break
            tried += 1
            print(f"stop {tried}/{kills} (round {rounds}): {kind:<7} {outcome}; complete checkpoints "
                  f"{steps}", flush=True)
        else:
            _run_to_end(config, resumed)
            _check_checkpoints(os.path.join(resumed, "checkpoints"))
        problems = _compare(straight, resumed)
        if problems:
            raise SystemExit(f"round {rounds}: the resumed run differs from the uninterrupted one:\n  "
                             + "\n  ".join(problems))
        print(f"round {rounds}: the result equals the uninterrupted run's", flush=True)
    print(f"{kills} stops tried in {rounds} round(s); every resumed run equals the uninterrupted one "
          f"(weights, results, metrics) and no checkpoint was ever corrupt.")
    return kills


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        point, occurrence, marker, separator, *cli_args = sys.argv[2:]
        assert separator == "--"
        _child(point, int(occurrence), marker, cli_args)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=len(KINDS), help="stops to try (default: one of each kind)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kind order, occurrences and delays")
    parser.add_argument("--root", default=None, help="working folder (default: a new temporary one)")
    args = parser.parse_args()
    run(args.kills, args.seed, args.root or tempfile.mkdtemp(prefix="kill_resume_"))


if __name__ == "__main__":
    main()
