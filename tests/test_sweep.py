"""Sweeps with Optuna: on digits a short lr sweep beats a deliberately bad default; the docs' CLI
command (made small) writes the trials table, the importance plot and a best_config.py that rebuilds
the best trial, and continues from its SQLite study; the pruning sink stops a trial that falls behind."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from doc_blocks import set_flag, vitjax_args
from train_helpers import colour_folder, tiny_config
from vitjax import config as config_lib, modes, sweep

optuna = pytest.importorskip("optuna")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = "docs/lora-sweeps-trackers.md"  # the sweep command, run below made small
# configs/digits_sweep.py made small: a 2-block ViT at 16 px, 2 epochs per trial.
SMALL = ["--config.model.spec.image_size=16", "--config.model.spec.hidden_size=32",
         "--config.model.spec.num_layers=2", "--config.model.spec.num_heads=2",
         "--config.model.spec.mlp_dim=64", "--config.train.epochs=2", "--config.optim.warmup=0",
         "--config.compilation_cache=", "--config.sweep.pruner=none"]


def _cli(*args, cwd=REPO):
    out = subprocess.run([sys.executable, "-m", "vitjax.main", *args], cwd=cwd, capture_output=True,
                         text=True, timeout=900, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _load(path):
    spec = importlib.util.spec_from_file_location("best_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.slow  # a whole digits sweep; the CLI test below runs a sweep in the default suite
def test_digits_lr_sweep_beats_a_bad_default(tmp_path):
    """On digits, 2 trials over lr find a model far better than the default lr of 1e-6."""
    config = tiny_config("demo:digits", epochs=2, batch_size=32)
    config.optim.lr = 1e-6
    config.sweep.update(trials=2, pruner="none", space=(("optim.lr", "log_uniform", 1e-3, 3e-2),))
    baseline = modes.train(config, str(tmp_path / "default"))["metrics"]["validation"]["accuracy"]
    best = modes.sweep(config, str(tmp_path / "sweep"))["best"]
    print(f"SWEEP digits: default lr 1e-6 -> validation accuracy {baseline:.3f}; best trial "
          f"#{best['trial']} lr {best['params']['optim.lr']:.2e} -> {best['value']:.3f}")
    assert best["value"] > baseline + 0.2
    assert (tmp_path / "sweep" / "sweep.db").exists()  # the study, where the same call continues it


def test_sweep_cli_writes_the_table_plot_and_best_config_and_resumes(tmp_path):
    workdir = tmp_path / "sweep"
    data = colour_folder(str(tmp_path / "colours"), per_class=8)
    args = set_flag(vitjax_args(PAGE, "python -m vitjax.main --mode sweep"), "--workdir", str(workdir))
    args += [*SMALL, f"--config.data.source=folder:{data}", "--config.train.batch_size=8"]
    storage = f"--sweep_storage=sqlite:///{tmp_path}/shared.db"  # as a PostgreSQL/MySQL URL would be
    _cli(*args, storage, "--config.sweep.trials=2")
    # the same command with one more trial continues the study: trials 0-1 are not run again
    _cli(*args, storage, "--config.sweep.trials=3")
    assert not (workdir / "sweep.db").exists()
    summary = json.load(open(workdir / "sweep.json"))
    assert [t["trial"] for t in summary["trials"]] == [0, 1, 2]
    assert sorted(p.name for p in workdir.glob("trial_*")) == ["trial_000", "trial_001", "trial_002"]
    assert (workdir / "param_importances.png").stat().st_size > 0
    table = (workdir / "trials.md").read_text()
    assert "optim.lr" in table and "task.label_smoothing" in table and table.count("COMPLETE") == 3

    # best_config.py rebuilds the best trial's config, key for key
    best = summary["best"]
    rebuilt = _load(workdir / "best_config.py")
    trial = json.load(open(os.path.join(best["workdir"], "config.json")))
    assert config_lib.differences(config_lib.to_dict(rebuilt), trial) == []
    assert rebuilt.optim.lr == best["params"]["optim.lr"]
    assert "python -m vitjax.main --config" in (workdir / "best_config.py").read_text()


def test_the_pruning_sink_stops_a_trial_behind_the_median():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    first = study.ask()
    sweep.PruningReport(first, "accuracy").write(10, {"accuracy": 0.9}, "validation")
    study.tell(first, 0.9)
    second = study.ask()
    report = sweep.PruningReport(second, "accuracy")
    report.write(10, {"accuracy": 0.95, "loss": 0.1}, "train")  # train records are not reported
    with pytest.raises(optuna.TrialPruned, match="pruned at step 10"):
        report.write(10, {"accuracy": 0.2}, "validation")


def test_sweep_space_errors_name_the_entry():
    config = config_lib.base_config()
    config.model.spec = dict(num_layers=2)
    config.sweep.space = (("optim.lrr", "log_uniform", 1e-5, 1e-2),)
    with pytest.raises(KeyError, match=r"space\[0\].*'optim.lrr' is not a config key.*'optim.lr'"):
        sweep.parse_space(config)
    config.sweep.space = (("optim.lr", "log_uniform", 0.0, 1e-2),)
    with pytest.raises(ValueError, match=r"log_uniform takes \(low, high\) with low < high and low > 0"):
        sweep.parse_space(config)
    config.sweep.space = (("optim.lr", "normal", 0.0, 1e-2),)
    with pytest.raises(ValueError, match=r"kind in \('log_uniform'"):
        sweep.parse_space(config)
