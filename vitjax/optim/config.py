"""`default_config()`: every knob of `config.optim`, commented.

Durations (`warmup`, `unfreeze_every`, `step.every`, `step.milestones`, `cyclic.period`, the start of
`unfreeze` / `param_groups` entries) are written as strings in any unit, see `vitjax.durations`:
"500 steps", "3 epochs", "20000 examples", "10%". A "step" is one train step (one global batch); with
gradient accumulation the optimizer updates every `grad_accum_steps` steps and the schedules advance
once per update.
"""
from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder


def default_config() -> ml_collections.ConfigDict:
    """The `config.optim` subtree with its defaults (AdamW, warmup + cosine, everything trainable)."""
    c = ml_collections.ConfigDict()
    # Optimizer: "adamw" (decoupled weight decay), "sgd" (momentum, optional Nesterov, L2 weight decay
    # added to the gradient as in torch) or "lion" (sign updates; use a 3-10x smaller lr than AdamW).
    c.name = "adamw"
    c.lr = 1e-4                       # peak learning rate, reached at the end of warmup
    c.weight_decay = 0.05             # adamw/lion (decoupled); for sgd (L2) use ~1e-4; 0 = off. Not applied
                                      # to biases, norms, layer scales, cls/distillation/mask tokens, posemb
    c.b1 = placeholder(float)         # adamw/lion first-moment decay; None = optax default (0.9)
    c.b2 = placeholder(float)         # adamw/lion second-moment decay; None = default (adamw 0.999, lion 0.99)
    c.eps = 1e-8                      # adamw denominator epsilon
    c.momentum = 0.9                  # sgd momentum (0 = plain SGD)
    c.nesterov = False                # sgd: Nesterov momentum
    c.momentum_dtype = "float32"      # dtype of the momentum state (adamw/lion first moment, sgd trace);
                                      # "bfloat16" halves it and its memory traffic (second moment stays float32)

    # Schedule of the base learning rate: linear warmup from 0, then "cosine" / "linear" decay to
    # lr * end_lr_fraction at the last step, "constant", "step" (multiply by step.gamma at milestones,
    # like torch's StepLR / MultiStepLR) or "cyclic" (see cyclic.mode).
    c.schedule = "cosine"
    c.warmup = "5%"                   # a duration: "500 steps", "1 epochs", "5%", "0" = none
    c.end_lr_fraction = 0.0           # final lr as a fraction of the peak (cosine / linear / onecycle)
    # schedule="step": give exactly one of `every` and `milestones`; durations from the start of
    # training, bare numbers are epochs. StepLR(step_size=7, gamma=0.1) is every="7", gamma=0.1.
    c.step = ml_collections.ConfigDict()
    c.step.every = placeholder(str)   # multiply the rate by gamma every this long, e.g. "7 epochs"
    c.step.milestones = ()            # or at these times, e.g. ("30 epochs", "60 epochs"), after the warmup
    c.step.gamma = 0.1                # the factor applied at each step, in (0, 1]
    # schedule="cyclic": mode "triangular" (after the warmup, a triangle wave from lr down to
    # lr * low_fraction at half a period and back up, every period) or "onecycle" (Smith's one cycle:
    # the warmup becomes a cosine rise from lr * low_fraction to lr, then a cosine fall to
    # lr * end_lr_fraction at the end; set warmup to its rising part, e.g. "30%" as torch's OneCycleLR).
    c.cyclic = ml_collections.ConfigDict()
    c.cyclic.mode = "triangular"
    c.cyclic.period = "4 epochs"      # triangular: length of one whole cycle (bare numbers are epochs)
    c.cyclic.low_fraction = 0.1       # the low point (triangular) / start (onecycle) as a fraction of lr

    c.clip_grad_norm = 1.0            # clip the global gradient norm of trained params; 0 = off
    c.grad_accum_steps = 1            # average gradients over this many steps per update (optax.MultiSteps)

    # Which parameters train. Everything below expands into one ordered list of (regex, rule) over
    # parameter paths like "backbone/encoder/layer_07/attention/query/kernel"; the first full match
    # wins; `Optimizer.describe()` prints the resulting groups.
    # freeze: "full" (train everything), "head_only" (linear probe), "last_n_blocks" (head, final norm
    # and the top `last_n_blocks` encoder blocks), "none" (param_groups must cover every parameter), or
    # any other string: a regex of parameters to freeze, the rest trains (join several regexes with |,
    # e.g. "backbone/embeddings/.*|backbone/encoder/layer_0[0-5]/.*").
    c.freeze = "full"
    c.last_n_blocks = 2               # blocks trained by freeze="last_n_blocks" (at most the depth)
    # Entries (regex, lr multiplier) or (regex, lr multiplier, start), checked before the preset; a
    # multiplier of None freezes; start is a duration (bare numbers are epochs) before which the group
    # stays still. E.g. (("head/.*", 10.0), ("backbone/embeddings/.*", None)).
    c.param_groups = ()
    # Gradual unfreezing, no recompilation: entries (regex, start) train with multiplier 1 from start on
    # (bare numbers are epochs), e.g. (("backbone/encoder/layer_1[01]/.*", 2), ("backbone/.*", 4)).
    c.unfreeze = ()
    # Top-down gradual unfreezing: final norm + top block from this duration on, one more block every
    # such duration, the embeddings last (bare numbers are epochs); None = off. The head follows `freeze`.
    c.unfreeze_every = placeholder(str)
    c.layer_decay = 1.0               # layer-wise lr decay: layer i gets decay**(depth+1-i); 1.0 = off

    c.ema_decay = 0.0                 # EMA of the weights for evaluation (e.g. 0.999); 0 = off

    # Reduce-on-plateau on an eval metric (host side, scales every group's lr; see vitjax.optim.plateau).
    c.plateau = ml_collections.ConfigDict()
    c.plateau.factor = 1.0            # multiply the lr by this after `patience` bad evals; 1.0 = off
    c.plateau.metric = "loss"         # the eval metric watched
    c.plateau.mode = "min"            # "min" (losses) or "max" (accuracies)
    c.plateau.patience = 2            # evals without improvement before reducing
    c.plateau.min_delta = 0.0         # an improvement must beat the best by more than this
    c.plateau.cooldown = 0            # evals to wait after a reduction before counting again
    c.plateau.min_scale = 0.01        # never scale the lr below this fraction
    return c
