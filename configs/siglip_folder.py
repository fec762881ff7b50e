"""Your own images on a SigLIP vision tower (the strongest general-purpose image encoder to fine-tune).

    python -m vitjax.main --config configs/siglip_folder.py \
        --config.data.source=folder:/path/to/data --workdir runs/siglip

`google/siglip-base-patch16-224` (model_type "siglip": the text tower is ignored; fixed-resolution
SigLIP 2 repos such as `google/siglip2-base-patch16-224` are the same architecture and load too). The
head classifies the mean of the patch tokens, as transformers' SiglipForImageClassification, so
`runs/siglip/best/` loads in transformers; images are resized as the repo's SiglipImageProcessor says
(224x224 bicubic, mean = std = 0.5). Expected: not measured here (no network on the test machine);
tests/test_families_configs.py runs this config on a tiny local SigLIP checkpoint.
"""

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    c.model.checkpoint = "google/siglip-base-patch16-224"
    c.model.dtype = "bfloat16"

    c.data.source = "folder:data"      # set on the command line: --config.data.source=folder:PATH
    c.data.split_fractions = (0.8, 0.1, 0.1)
    c.data.workers = 8
    c.data.augment.crop_scale = (0.35, 1.0)
    c.data.augment.hflip = 0.5

    # "mean": SiglipForImageClassification's head (exports to transformers). "pooled" would use the
    # tower's attention-pooling head, which has no transformers classification class.
    c.task.pooling = "mean"
    c.task.label_smoothing = 0.1

    c.optim.name = "adamw"
    c.optim.lr = 1e-4                  # SigLIP features are strong: a gentle fine-tune
    c.optim.weight_decay = 0.05
    c.optim.warmup = "1 epochs"
    c.optim.freeze = "last_n_blocks"
    c.optim.last_n_blocks = 4

    c.train.batch_size = 32
    c.train.epochs = 10
    c.train.best_metric = "macro_f1"
    c.train.early_stopping_patience = 4
    return c
