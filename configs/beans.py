"""ViT-B/16 (ImageNet-21k) fine-tuned on beans: the classic HF fine-tuning recipe, in JAX.

    python -m vitjax.main --config configs/beans.py --workdir runs/beans

Downloads google/vit-base-patch16-224-in21k and the `beans` dataset (1,034 train / 133
validation / 128 test leaf photos, 3 classes) from the Hugging Face hub, replaces the head,
and fine-tunes the whole network for 5 epochs in bfloat16. Expected: test accuracy ~0.97-0.98
(as the transformers recipe) in about a minute on one H100.
"""

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    c.model.checkpoint = "google/vit-base-patch16-224-in21k"
    c.model.image_size = 0             # 0 = the checkpoint's 224 px
    c.model.dtype = "bfloat16"

    c.data.source = "hf:beans"         # image column "image", ClassLabel "labels": found automatically
    c.data.workers = 8
    c.data.cache = "ram"               # 1k images: decode once
    c.data.augment.crop_scale = (0.5, 1.0)
    c.data.augment.hflip = 0.5

    c.optim.name = "adamw"
    c.optim.lr = 2e-4
    c.optim.weight_decay = 0.05
    c.optim.schedule = "cosine"
    c.optim.warmup = "10%"
    c.optim.freeze = "full"            # "head_only" for a linear probe; "last_n_blocks" + N

    c.train.batch_size = 64
    c.train.epochs = 5
    c.train.eval_every = "1 epochs"
    c.train.best_metric = "accuracy"
    c.train.early_stopping_patience = 3
    return c
