"""Your own images: class folders on disk (e.g. surface-roughness photos), ViT-B/16 fine-tune.

    python -m vitjax.main --config configs/imagefolder.py \
        --config.data.source=folder:/path/to/data --workdir runs/mydata

The folder is `data/train/<class>/*.jpg` (+ optional `data/validation/`, `data/test/`) or a
single folder of class subfolders; missing validation/test splits are carved out of train
(80/10/10, seeded and stratified; the split is written to the workdir). The last 4 blocks and
the head are fine-tuned, which suits small datasets of a few hundred images per class.
"""

import os

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    c.model.checkpoint = "google/vit-base-patch16-224-in21k"
    c.model.dtype = "bfloat16"

    c.data.source = "folder:data"      # set on the command line: --config.data.source=folder:PATH
    c.data.split_fractions = (0.8, 0.1, 0.1)
    c.data.workers = 8
    c.data.cache = "disk"              # decoded once, reused by later runs on the same folder,
    c.data.cache_dir = os.path.expanduser("~/.cache/vitjax/decoded")  # kept in this folder
    c.data.skip_corrupt = False        # True: skip unreadable files, listing them in a warning
    c.data.augment.crop_scale = (0.35, 1.0)
    c.data.augment.hflip = 0.5
    c.data.augment.policy = "randaugment"

    c.task.label_smoothing = 0.1

    c.optim.name = "adamw"
    c.optim.lr = 3e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup = "1 epochs"
    c.optim.freeze = "last_n_blocks"
    c.optim.last_n_blocks = 4

    c.train.batch_size = 32
    c.train.epochs = 10
    c.train.best_metric = "macro_f1"   # robust to unbalanced classes
    c.train.early_stopping_patience = 4
    return c
