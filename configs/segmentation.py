"""Semantic segmentation of your own images and masks: DINOv2 ViT-S/14 with an upsampling decoder.

    python -m vitjax.main --config configs/segmentation.py \
        --config.data.source=folder:/path/to/data --workdir runs/segmentation

The folder holds `images/` and `masks/` with the same file stems (a mask: a single-channel PNG whose
pixel values are class indices, 255 = unlabelled) and `classes.txt` (one class name per line, line i
naming mask value i); split folders `train/`, `validation/`, `test/` (each with images/ and masks/)
are used when present, else validation and test are carved out of train (80/10/10, seeded). ADE20K
from the hub: --config.data.source=hf:scene_parse_150 --config.task.reduce_labels=True, with its 150
names in config.task.class_names. The run reports mean IoU, mean Dice and per-class IoU, keeps the
best checkpoint by mean IoU and exports it to best_vitjax/ (transformers has no segmentation class
over a plain ViT); `--mode predict` writes one mask PNG per image.
"""

from vitjax.config import base_config


def get_config():
    c = base_config("segmentation")
    c.seed = 0

    c.model.checkpoint = "facebook/dinov2-small"  # DINOv2's patch features suit dense tasks
    c.model.image_size = 224           # a 16 x 16 patch grid (patch 14)
    c.model.dtype = "bfloat16"

    c.data.source = "folder:data"      # set on the command line: --config.data.source=folder:PATH
    c.data.workers = 8
    # One random resized crop and flip moves the image and its mask together; colour jitter touches
    # the image only. Policies that move pixels (randaugment) would need the mask moved too: refused.
    c.data.augment.crop_scale = (0.5, 1.0)
    c.data.augment.hflip = 0.5
    c.data.augment.color_jitter = 0.2

    c.task.class_names = None          # None: read classes.txt in the data folder
    c.task.ignore_index = 255          # mask value of unlabelled pixels (not counted)
    c.task.upsample_steps = 2          # conv + 2x upsampling twice: logits on a 64 x 64 grid

    c.optim.name = "adamw"
    c.optim.lr = 1e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup = "1 epochs"
    c.optim.freeze = "last_n_blocks"   # the top blocks and the decoder train; "full" on large data
    c.optim.last_n_blocks = 4

    c.train.batch_size = 16
    c.train.epochs = 20
    c.train.eval_every = "1 epochs"
    c.train.best_metric = "mean_iou"
    c.train.early_stopping_patience = 5
    return c
