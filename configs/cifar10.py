"""ViT-B/16 on CIFAR-10 from TensorFlow Datasets, fine-tuned at 224 px.

    pip install 'vitjax[tfds]'
    python -m vitjax.main --config configs/cifar10.py --workdir runs/cifar10

50,000 train / 10,000 test 32x32 images, 10 classes; validation is carved out of train (10%).
Images are upscaled to 224 px; crops, flips and mixup/cutmix run on the device so the host only
moves uint8. Expected: test accuracy ~0.98-0.99 after 3 epochs.
"""

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    c.model.checkpoint = "google/vit-base-patch16-224-in21k"
    c.model.dtype = "bfloat16"

    c.data.source = "tfds:cifar10"
    c.data.split_fractions = (0.9, 0.1, 0.0)  # validation carved out of train; TFDS has test
    c.data.workers = 8
    c.data.cache = "ram"
    c.data.device_augment = True       # crop/flip on the device: the host ships uint8
    c.data.augment.crop_scale = (0.25, 1.0)
    c.data.augment.mixup_alpha = 0.2
    c.data.augment.cutmix_alpha = 1.0

    c.task.label_smoothing = 0.1

    c.optim.name = "adamw"
    c.optim.lr = 1e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup = "5%"
    c.optim.layer_decay = 0.75         # smaller steps for early layers

    c.train.batch_size = 256
    c.train.epochs = 3
    c.train.eval_every = "1 epochs"
    return c
