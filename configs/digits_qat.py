"""Quantization-aware fine-tuning of the digits demo, for a full-integer (static int8) export.

    python -m vitjax.main --config configs/digits.py --workdir runs/digits
    python -m vitjax.main --config configs/digits_qat.py --workdir runs/digits_qat
    python -m vitjax.main --mode export --workdir runs/digits_qat --format onnx-int8-static \
        --output runs/digits_qat/int8

The float demo's trained model (runs/digits/best) fine-tuned 5 more epochs with `config.quant` on:
qwix fake-quantizes the weights (int8, one scale per output channel) and the inputs (8-bit, one
scale per tensor) of every matrix product, as `--format onnx-int8-static` quantizes them
(vitjax/quant.py). Validation and test numbers are the quantized model's; the run saves float
weights (best/), which the static export quantizes with ranges calibrated on 256 training images
(`--calibration`). Measured by bench/int8_accuracy.py (docs/deploy.md): the static int8 export
scores the run's test accuracy within a point.
"""

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    c.model.checkpoint = "runs/digits/best"  # configs/digits.py's float model
    c.model.dtype = "float32"

    c.data.source = "demo:digits"      # the same seeded 80/10/10 split as the float run
    c.data.workers = 0
    c.data.cache = "ram"
    c.data.augment.crop_scale = (0.8, 1.0)
    c.data.augment.crop_ratio = (0.9, 1.1)
    c.data.augment.hflip = 0.0

    # Quantization-aware training (vitjax/quant.py): the train and eval steps run the model with
    # qwix's fake int8 (weights per output channel, activations per tensor, every matrix product).
    c.quant.enabled = True

    c.task.label_smoothing = 0.1

    c.optim.name = "adamw"
    c.optim.lr = 2e-4                  # a tenth of the float run's: the model is trained already
    c.optim.weight_decay = 0.05
    c.optim.schedule = "cosine"
    c.optim.warmup = "1 epochs"

    c.train.batch_size = 64
    c.train.epochs = 5
    c.train.eval_every = "1 epochs"
    c.train.best_metric = "accuracy"
    return c
