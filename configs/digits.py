"""The offline demo: a small ViT trained from scratch on scikit-learn's digits (no network).

    python -m vitjax.main --config configs/digits.py --workdir runs/digits

1,797 real 8x8 scans of handwritten digits ship with scikit-learn; they are split 80/10/10
(seeded, stratified), upscaled to 32x32 and fed to a 4-block ViT with 4x4 patches. Expected:
test accuracy >= 0.95 in a few minutes on 2 CPU cores (measured: 0.983 in 79-83 s on an idle 2-core
box, whole process; bench/digits_vs_trainer.py runs it beside HF Trainer).
"""

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    # A small ViT from scratch (no checkpoint): 8x8 scans upscaled to 32x32, 4x4 patches.
    c.model.checkpoint = ""
    c.model.spec = dict(image_size=32, patch_size=4, hidden_size=96, num_layers=4,
                        num_heads=4, mlp_dim=192)
    c.model.dtype = "float32"          # CPU: float32 is faster than emulated bfloat16

    c.data.source = "demo:digits"
    c.data.workers = 0                 # tiny images: decoding in-process is fastest
    c.data.cache = "ram"               # decode and resize each scan once
    c.data.augment.crop_scale = (0.8, 1.0)  # mild crops; digits must stay whole
    c.data.augment.crop_ratio = (0.9, 1.1)
    c.data.augment.hflip = 0.0         # a mirrored 2 is not a 2

    c.task.label_smoothing = 0.1

    c.optim.name = "adamw"
    c.optim.lr = 2e-3
    c.optim.weight_decay = 0.05
    c.optim.schedule = "cosine"
    c.optim.warmup = "2 epochs"

    c.train.batch_size = 64
    c.train.epochs = 30
    c.train.eval_every = "3 epochs"
    c.train.best_metric = "accuracy"
    return c
