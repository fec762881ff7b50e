"""`config.sweep`: the search space's defaults and kinds, read by `vitjax.config` (a leaf: it imports
nothing from vitjax, so the config module reaches no sweep code; `vitjax.sweep` runs the study)."""
from __future__ import annotations

import ml_collections

KINDS = ("log_uniform", "uniform", "int", "choice")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


def default_config() -> ml_collections.ConfigDict:
    """`config.sweep`: the search space and the study's settings (read by `--mode sweep` only)."""
    c = ml_collections.ConfigDict()
    c.trials = 10                     # trials in all (finished or pruned), across resumes and machines
    # Entries (config key, kind, ...): ("optim.lr", "log_uniform", 1e-5, 1e-2), ("optim.layer_decay",
    # "uniform", 0.6, 1.0), ("lora.rank", "int", 4, 32), ("optim.freeze", "choice", ("full", "head_only")).
    c.space = ()
    c.sampler = "tpe"                 # "tpe" (Optuna's default) or "random"; seeded by config.seed
    c.pruner = "median"               # "median": stop a trial below the median of earlier ones at the same
                                      # step; "none"
    c.pruner_startup_trials = 2       # trials that always run to the end before any is pruned
    c.pruner_warmup_steps = 0         # train steps before a trial may be pruned
    c.name = ""                       # the study's name in the storage; "" = the workdir's folder name
    return c
