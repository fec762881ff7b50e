"""ViT-B/16 (ImageNet-21k) fine-tuned to regress one number per image, with the example plugin
`examples/regression_task.py` named by file path and two data worker processes.

    python -m vitjax.main --config examples/regression_config.py --workdir runs/regression \
        --config.data.source=folder:/data/brightness
    python -m vitjax.main --mode evaluate --config examples/regression_config.py \
        --workdir runs/regression --config.data.source=folder:/data/brightness --split test
    python -m vitjax.main --mode predict --workdir runs/regression --inputs /data/brightness \
        --output runs/regression/predictions

`/data/brightness/targets.csv` lists `image,target` rows (paths relative to the folder). Tracks the
validation mean absolute error ("mae", lower is better) for the best checkpoint, which is exported to
runs/regression/best_vitjax/; predict writes {"file", "target"} per image to predictions.json.
tests/test_examples.py runs the three commands on 64 generated images whose
target is their mean brightness, from a tiny local checkpoint; this recipe's accuracy on real data has
not been measured.
"""
import os

from vitjax.config import base_config

PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regression_task.py")


def get_config():
    c = base_config("regression", plugins=[PLUGIN])  # the plugin registers the "regression" task
    c.seed = 0

    c.task.target_scale = 100.0        # the head predicts target / 100: targets of order 100

    c.model.checkpoint = "google/vit-base-patch16-224-in21k"
    c.model.image_size = 0             # 0 = the checkpoint's 224 px
    c.model.dtype = "bfloat16"

    c.data.source = "folder:/data/brightness"  # ROOT/targets.csv: image,target
    c.data.workers = 2                 # the plugin's transforms are pickled into 2 worker processes
    c.data.augment.crop_scale = (0.8, 1.0)
    c.data.augment.hflip = 0.5

    c.optim.name = "adamw"
    c.optim.lr = 1e-4
    c.optim.weight_decay = 0.05
    c.optim.schedule = "cosine"
    c.optim.warmup = "10%"

    c.train.batch_size = 32
    c.train.epochs = 10
    c.train.eval_every = "1 epochs"
    c.train.best_metric = "mae"        # the task's best metric ("mae", "min") by default
    c.train.best_mode = "min"
    return c
