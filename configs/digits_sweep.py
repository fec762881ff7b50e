"""A learning-rate and label-smoothing sweep of the offline digits demo, with Optuna (no network).

    python -m vitjax.main --mode sweep --config configs/digits_sweep.py --workdir runs/digits_sweep

8 trials of the 4-block ViT of configs/digits.py for 10 epochs each, the learning rate drawn
log-uniformly from 1e-4..1e-2 and label smoothing from {0, 0.1} by TPE; trials that fall below the
median of earlier ones at the same evaluation are pruned. Each trial is a run in
runs/digits_sweep/trial_NNN; the study is runs/digits_sweep/sweep.db (run the command again to
continue it). Writes trials.csv/.md, param_importances.png and best_config.py. Expected: a best
validation accuracy >= 0.95, and the learning rate the most important parameter.
"""

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    c.model.checkpoint = ""
    c.model.spec = dict(image_size=32, patch_size=4, hidden_size=96, num_layers=4,
                        num_heads=4, mlp_dim=192)
    c.model.dtype = "float32"

    c.data.source = "demo:digits"
    c.data.workers = 0
    c.data.cache = "ram"
    c.data.augment.crop_scale = (0.8, 1.0)
    c.data.augment.crop_ratio = (0.9, 1.1)
    c.data.augment.hflip = 0.0

    c.optim.name = "adamw"
    c.optim.lr = 1e-6                  # a bad default on purpose: the sweep replaces it
    c.optim.weight_decay = 0.05
    c.optim.warmup = "1 epochs"

    c.train.batch_size = 64
    c.train.epochs = 10
    c.train.eval_every = "2 epochs"    # each evaluation reports to the pruner
    c.train.best_metric = "accuracy"
    c.train.progress = False

    c.sweep.trials = 8
    c.sweep.space = (("optim.lr", "log_uniform", 1e-4, 1e-2),
                     ("task.label_smoothing", "choice", (0.0, 0.1)))
    c.sweep.sampler = "tpe"
    c.sweep.pruner = "median"
    c.sweep.pruner_startup_trials = 2
    c.sweep.pruner_warmup_steps = 0
    return c
