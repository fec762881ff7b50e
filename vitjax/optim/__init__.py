"""The optimizer room: `config.optim` → an optax transformation with parameter groups.

    from vitjax import optim
    opt = optim.build_optimizer(config.optim, params, num_layers=12, steps_per_epoch=100,
                                total_steps=1000, batch_size=64)
    print(opt.describe())                      # the parameter groups, also saved with the run
    opt_state = opt.tx.init(params)             # frozen params get no state at all
    # train step: model.apply(..., frozen_backbone=opt.backbone_frozen); updates from opt.tx.update
    plateau = optim.build_plateau(config.optim)   # None unless optim.plateau.factor < 1
    ...after an eval: opt_state = optim.set_lr_scale(opt_state, plateau.update(metrics[plateau.metric]))
    # optim.ema_decay > 0: the train step keeps an EMA of the weights (optax.incremental_update)

Modules: `config` (default_config), `groups` (rules, presets, resolution, describe), `build`
(schedules, build_optimizer), `transforms` (per-group rates, gated clipping, the plateau scale),
`plateau` (host-side reduce-on-plateau).
"""
from vitjax.optim.build import OPTIMIZERS, SCHEDULES, Optimizer, base_schedule, build_optimizer, decay_mask
from vitjax.optim.config import default_config
from vitjax.optim.groups import PRESETS, Group, Rule, expand_rules, layer_index, path_tree, resolve
from vitjax.optim.plateau import Plateau, build_plateau
from vitjax.optim.transforms import get_lr_scale, set_lr_scale

__all__ = [
    "OPTIMIZERS", "PRESETS", "SCHEDULES", "Group", "Optimizer", "Plateau", "Rule", "base_schedule",
    "build_optimizer", "build_plateau", "decay_mask", "default_config",
    "expand_rules", "get_lr_scale", "layer_index", "path_tree", "resolve", "set_lr_scale",
]
