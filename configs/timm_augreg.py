"""Your own images on a timm hub ViT: AugReg ViT-B/16 (ImageNet-21k pretrained, ImageNet-1k fine-tuned).

    python -m vitjax.main --config configs/timm_augreg.py \
        --config.data.source=folder:/path/to/data --workdir runs/timm_augreg

`timm/vit_base_patch16_224.augreg2_in21k_ft_in1k` is a timm repo (config.json with `architecture`,
timm-named safetensors); any timm `vit_*` / `deit*` repo works the same way, as does a
vision_transformer/big_vision AugReg `.npz` path. Preprocessing is timm's eval transform from the repo's
`pretrained_cfg` (resize to 248 bicubic, center crop 224, mean = std = 0.5); the 1000-class head is
replaced by one for your classes, and `runs/timm_augreg/best/` is written in timm's format
(`timm.create_model(architecture, pretrained=True, pretrained_cfg_overlay=dict(file=...), **model_args)`).
Expected: not measured here (no network on the test machine); tests/test_families_configs.py runs this
config on a tiny local timm checkpoint.
"""

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    c.model.checkpoint = "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
    c.model.dtype = "bfloat16"
    c.model.drop_path_rate = 0.1       # AugReg models were trained with stochastic depth

    c.data.source = "folder:data"      # set on the command line: --config.data.source=folder:PATH
    c.data.split_fractions = (0.8, 0.1, 0.1)
    c.data.workers = 8
    c.data.augment.crop_scale = (0.35, 1.0)
    c.data.augment.hflip = 0.5
    c.data.augment.policy = "randaugment"

    c.task.pooling = "pooled"          # timm's head: on the backbone's pooled token (CLS for AugReg)
    c.task.label_smoothing = 0.1

    c.optim.name = "adamw"
    c.optim.lr = 3e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup = "1 epochs"
    c.optim.freeze = "last_n_blocks"
    c.optim.last_n_blocks = 4

    c.train.batch_size = 32
    c.train.epochs = 10
    c.train.best_metric = "macro_f1"
    c.train.early_stopping_patience = 4
    return c
