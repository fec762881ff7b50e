"""Object detection on your own COCO-format boxes: DINOv2 ViT-S/14 with a dense anchor-free head.

    python -m vitjax.main --config configs/detection.py \
        --config.data.source=coco:/path/to/annotations.json --workdir runs/detection

The annotations are a COCO JSON file (images, annotations with xywh `bbox`, categories), the images
at their `file_name` next to it or in its `images/` folder; a folder holding `annotations.json`, or
split folders `train/`, `validation/`, `test/` holding one each, works too. Missing validation and
test splits are carved out of train (80/10/10, seeded). A Hugging Face dataset with an `objects`
column (e.g. --config.data.source=hf:cppe-5) works as well. Every patch-grid cell predicts the
objects centred in it, so small objects want a finer grid (a larger image_size). The run reports
COCO mAP@[.5:.95] and mAP@.5, keeps the best checkpoint by mAP and exports it to best_vitjax/
(transformers' detection classes have other heads); `--mode predict` writes boxes and drawings.
"""

from vitjax.config import base_config


def get_config():
    c = base_config("detection")
    c.seed = 0

    c.model.checkpoint = "facebook/dinov2-small"
    c.model.image_size = 448           # a 32 x 32 grid of cells (patch 14)
    c.model.dtype = "bfloat16"

    c.data.source = "coco:data/annotations.json"  # set on the command line
    c.data.workers = 8
    # One random resized crop and flip moves the image and its boxes together (boxes cut by the crop
    # are clipped, those left outside dropped); colour jitter touches the image only.
    c.data.augment.crop_scale = (0.5, 1.0)
    c.data.augment.hflip = 0.5
    c.data.augment.color_jitter = 0.2

    c.task.max_boxes = 50              # boxes per image in a batch; an image with more is an error
    c.task.max_detections = 100        # detections kept per image (COCO's maxDets)
    c.task.score_threshold = 0.3       # --mode predict lists and draws detections above this

    c.optim.name = "adamw"
    c.optim.lr = 1e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup = "1 epochs"
    c.optim.freeze = "full"            # the backbone adapts to localisation; the head starts fresh

    c.train.batch_size = 16
    c.train.epochs = 30
    c.train.eval_every = "1 epochs"
    c.train.best_metric = "map"
    c.train.early_stopping_patience = 5
    return c
