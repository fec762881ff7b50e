"""Hyperparameter sweeps with Optuna: `--mode sweep`, the search space in `config.sweep`.

    python -m vitjax.main --mode sweep --config configs/digits_sweep.py --workdir runs/digits_sweep

Each trial is a normal training run of the config with the sampled values, in its own folder
`<workdir>/trial_NNN`, maximising (or minimising) `config.train.best_metric` on the validation split
(the best checkpoint's value). Every evaluation reports that metric to Optuna through a sink of the
run's metric writer, and the pruner stops trials that fall behind earlier ones at the same step.

The study lives in a real database: `<workdir>/sweep.db` (SQLite) by default, or a shared
PostgreSQL/MySQL URL (`--sweep_storage`) that many machines run the same sweep from. Run the same
command again after a crash and the sweep continues: `sweep.trials` counts finished trials across
runs and machines, and a trial that died mid-run (no heartbeat for two minutes) is retried with the
same values, resuming from its folder's checkpoints. At the end the workdir holds `trials.csv` /
`trials.md` (the table of trials), `param_importances.png` (Optuna's fANOVA importances),
`best_config.py` (a config file that reproduces the best trial) and `sweep.json`.
"""
from __future__ import annotations

import json
import logging
import os

import ml_collections

from vitjax.errors import BadKey, BadValue, UserError
from vitjax.sweep_config import KINDS, PRUNERS, SAMPLERS
from vitjax.workdir import BEST_CONFIG, IMPORTANCES, SWEEP_DB, SWEEP_SUMMARY, TRIALS_CSV, TRIALS_MD, Workdir

log = logging.getLogger(__name__)

def parse_space(config) -> list[tuple]:
    """`config.sweep.space` checked: each key a config key, each kind known with its bounds."""
    from vitjax import config as config_lib

    flat = set(_flatten(config_lib.to_dict(config)))
    entries = []
    for i, entry in enumerate(config.sweep.space):
        key = f"config.sweep.space[{i}]"
        if not isinstance(entry, (list, tuple)) or len(entry) < 3 or entry[1] not in KINDS:
            raise BadValue(f"{key}={entry!r}: write (config key, kind, ...) with kind in {KINDS}, e.g. "
                             f"('optim.lr', 'log_uniform', 1e-5, 1e-2) or ('optim.freeze', 'choice', "
                             f"('full', 'head_only')).")
        name, kind, *args = entry
        if name not in flat:
            raise BadKey(f"{key}: {name!r} is not a config key.{config_lib.close_matches(name, flat)}")
        if kind == "choice":
            if len(args) != 1 or not isinstance(args[0], (list, tuple)) or not args[0]:
                raise BadValue(f"{key}: a choice takes one tuple of values, e.g. ('{name}', 'choice', (a, b)).")
        elif len(args) != 2 or not args[0] < args[1] or (kind == "log_uniform" and args[0] <= 0):
            raise BadValue(f"{key}: {kind} takes (low, high) with low < high"
                             f"{' and low > 0' if kind == 'log_uniform' else ''}; got {tuple(args)}.")
        entries.append((name, kind, *args))
    if not entries:
        raise BadValue("config.sweep.space is empty: list what to search, e.g. "
                         "(('optim.lr', 'log_uniform', 1e-5, 1e-2),).")
    return entries


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _suggest(trial, entry):
    name, kind, *args = entry
    if kind == "log_uniform":
        return trial.suggest_float(name, args[0], args[1], log=True)
    if kind == "uniform":
        return trial.suggest_float(name, args[0], args[1])
    if kind == "int":
        return trial.suggest_int(name, args[0], args[1])
    return trial.suggest_categorical(name, list(args[0]))


class PruningReport:
    """A metric-writer sink: reports each validation value of `metric` to the trial and stops the run
    (`optuna.TrialPruned`) when the pruner says so."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric = trial, metric

    def write(self, step: int, scalars: dict, prefix: str) -> None:
        import optuna

        if prefix != "validation" or self.metric not in scalars:
            return
        self.trial.report(float(scalars[self.metric]), int(step))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: validation {self.metric}="
                                     f"{scalars[self.metric]:.4f}")


def trial_config(config, params: dict) -> ml_collections.ConfigDict:
    """`config` with the sampled `params` (dotted keys) set."""
    trial = config.copy_and_resolve_references()
    trial.update_from_flattened_dict({k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    return trial


def _study(config, workdir: str, storage: str | None):
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    cfg = config.sweep
    if cfg.sampler not in SAMPLERS or cfg.pruner not in PRUNERS:
        raise BadValue(f"config.sweep.sampler={cfg.sampler!r} / pruner={cfg.pruner!r}: use a sampler in "
                         f"{SAMPLERS} and a pruner in {PRUNERS}.")
    url = storage or f"sqlite:///{os.path.abspath(os.path.join(workdir, SWEEP_DB))}"
    storage = RDBStorage(url, heartbeat_interval=60, grace_period=120,
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
    name = cfg.name or os.path.basename(os.path.abspath(workdir))
    # A continued sweep seeds its sampler past the trials it has: the same seed would draw them again.
    known = next((s.n_trials for s in optuna.get_all_study_summaries(storage) if s.study_name == name), 0)
    seed = config.seed + known
    sampler = (optuna.samplers.TPESampler(seed=seed) if cfg.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials,
                                          n_warmup_steps=cfg.pruner_warmup_steps)
              if cfg.pruner == "median" else optuna.pruners.NopPruner())
    direction = "maximize" if config.train.best_mode == "max" else "minimize"
    return optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                               direction=direction, load_if_exists=True)


def run(config, workdir: str, storage: str | None, train) -> dict:
    """Runs (or continues) the sweep of `config` in `workdir`, each trial a `train(config, folder, sinks=...)`
    (`vitjax.modes.train`); returns the summary (also sweep.json)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState


    space = parse_space(config)
    metric = config.train.best_metric
    study = _study(config, workdir, storage)

    def objective(trial):
        params = {entry[0]: _suggest(trial, entry) for entry in space}
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        frozen = next(t for t in running if t.number == trial.number)
        first = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)  # a retry resumes the dead trial's folder
        folder = Workdir(workdir).trial(trial.number if first is None else first)
        trial.set_user_attr("workdir", folder)
        log.info("trial %d: %s", trial.number, params)
        results = train(trial_config(config, params), folder, sinks=[PruningReport(trial, metric)])
        return results["metrics"]["validation"][metric]

    done = (TrialState.COMPLETE, TrialState.PRUNED)
    remaining = config.sweep.trials - len(study.get_trials(deepcopy=False, states=done))
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=(UserError,),
                       callbacks=[optuna.study.MaxTrialsCallback(config.sweep.trials, states=done)])
    return summarize(study, config, workdir)


def summarize(study, config, workdir: str) -> dict:
    """Writes trials.csv/.md, param_importances.png, best_config.py and sweep.json; returns the summary."""
    from optuna.trial import TrialState

    rows = [{"trial": t.number, "state": t.state.name, "value": t.value, **t.params,
             "workdir": os.path.relpath(t.user_attrs.get("workdir", ""), workdir) if t.user_attrs.get("workdir") else ""}
            for t in study.get_trials(deepcopy=False)]
    _write_table(rows, workdir)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    summary = {"study": study.study_name, "metric": config.train.best_metric,
               "direction": study.direction.name.lower(), "trials": rows}
    if completed:
        best = study.best_trial
        summary["best"] = {"trial": best.number, "value": best.value, "params": best.params,
                           "workdir": best.user_attrs.get("workdir")}
        path = os.path.join(workdir, BEST_CONFIG)
        with open(path, "w", encoding="utf-8") as f:
            f.write(config_source(trial_config(config, best.params), _best_docstring(summary, path)))
        log.info("best trial %d: %s=%.4f with %s; its config: %s", best.number, config.train.best_metric,
                 best.value, best.params, path)
    if len(completed) >= 2:
        _plot_importances(study, os.path.join(workdir, IMPORTANCES))
    with open(os.path.join(workdir, SWEEP_SUMMARY), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


def _write_table(rows: list[dict], workdir: str) -> None:
    import csv

    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(os.path.join(workdir, TRIALS_CSV), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    cell = lambda v: "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    table = "\n".join(lines) + "\n"
    with open(os.path.join(workdir, TRIALS_MD), "w", encoding="utf-8") as f:
        f.write(table)
    print(table)


def _plot_importances(study, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")  # the sweep's own process: draw off-screen
    import matplotlib.pyplot as plt
    import optuna

    ax = optuna.visualization.matplotlib.plot_param_importances(study)
    from vitjax.report import save_figure

    ax.figure.tight_layout()
    save_figure(ax.figure, path, dpi=120)
    plt.close(ax.figure)


def _best_docstring(summary: dict, path: str) -> str:
    best = summary["best"]
    return (f"The best trial (#{best['trial']}) of the sweep {summary['study']!r}: validation "
            f"{summary['metric']}={best['value']:.4f} with {best['params']}.\n\n"
            f"    python -m vitjax.main --config {path} --workdir runs/{summary['study']}_best\n\n"
            f"retrains it (written by `--mode sweep`; every knob of the trial's resolved config).")


def config_source(config, docstring: str) -> str:
    """A config file (`get_config()`) that rebuilds `config` key by key."""
    lines = [f'"""{docstring}\n"""', "", "from vitjax.config import base_config", "", "",
             "def get_config():",
             f"    c = base_config({config.task.name!r}, plugins={tuple(config.task.plugins)!r})"]
    flat = {}

    def walk(prefix, node):
        for k in node.keys():
            v = node[k]
            if isinstance(v, ml_collections.ConfigDict):
                walk(f"{prefix}{k}.", v)
            else:
                flat[f"{prefix}{k}"] = v

    walk("", config)
    lines += [f"    c.{key} = {value!r}" for key, value in flat.items()]
    lines.append("    return c")
    return "\n".join(lines) + "\n"
