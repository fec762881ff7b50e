"""A linear probe of ViT-B/16 on your image folder in minutes on a CPU: the feature cache.

    python -m vitjax.main --config configs/linear_probe.py \
        --config.data.source=folder:/path/to/data --workdir runs/probe

The backbone stays frozen, so it runs once over the images (the training split, then each
evaluated split) and the head trains on the cached features: 30 epochs cost about one forward
pass over the data plus seconds (bench/feature_cache.py measures it beside the same probe over
images and HF Trainer). Checkpoints, early stopping, reports and `best/` are those of any run.
Expected on beans-sized data (~1,000 images): a few minutes on 2 CPU cores, most of it the one
pass through the backbone; a later run on the same folder reads the features back from disk.
"""

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    c.model.checkpoint = "google/vit-base-patch16-224-in21k"
    c.model.dtype = "float32"          # CPU; "bfloat16" on accelerators

    c.data.source = "folder:data"      # set on the command line: --config.data.source=folder:PATH
    c.data.workers = 0
    c.data.cache = "disk"              # decoded images and backbone features, reused by later runs
    c.data.cache_dir = "runs/cache"
    # No augmentation: each image's features are computed once. For augmented views set crop/flip
    # here and train.feature_cache_views > 1 (each view costs one pass through the backbone).
    c.data.augment.crop_scale = (1.0, 1.0)
    c.data.augment.crop_ratio = (1.0, 1.0)
    c.data.augment.hflip = 0.0

    c.optim.freeze = "head_only"       # the linear probe; "last_n_blocks" caches the frozen blocks
    c.optim.name = "adamw"
    c.optim.lr = 3e-3
    c.optim.weight_decay = 0.0
    c.optim.warmup = "0"

    c.train.feature_cache = "on"       # "auto": on whenever the run allows it and it pays
    c.train.feature_cache_views = 1    # augmented views of each training image, computed once
    c.train.batch_size = 32
    c.train.epochs = 30
    c.train.eval_every = "1 epochs"    # evaluations on cached validation features cost milliseconds
    c.train.early_stopping_patience = 5
    return c
