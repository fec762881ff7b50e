"""LoRA on ViT-B/16 (ImageNet-21k) for beans: Hugging Face's PEFT image-classification recipe, in JAX.

    python -m vitjax.main --config configs/lora_beans.py --workdir runs/lora_beans

The recipe of PEFT's image-classification guide: rank-16 adapters (alpha 16, dropout 0.1) on every
block's attention query and value projections, the new classifier trained in full, everything
else frozen: 592,131 of 86.4M parameters train (0.68%). Writes best/ (the adapters merged: a plain
ViTForImageClassification) and best_adapter/ (adapter_config.json + adapter_model.safetensors for
`peft.PeftModel.from_pretrained(base, "runs/lora_beans/best_adapter")`). Expected: test accuracy
~0.95-0.98 (the full fine-tune of configs/beans.py reaches ~0.97-0.98).
"""

from vitjax.config import base_config


def get_config():
    c = base_config("classification")
    c.seed = 0

    c.model.checkpoint = "google/vit-base-patch16-224-in21k"
    c.model.dtype = "bfloat16"

    c.data.source = "hf:beans"
    c.data.workers = 8
    c.data.cache = "ram"
    c.data.augment.crop_scale = (0.5, 1.0)
    c.data.augment.hflip = 0.5

    # PEFT's LoraConfig(r=16, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]).
    c.lora.targets = r"backbone/encoder/layer_\d+/attention/(query|value)"
    c.lora.rank = 16
    c.lora.alpha = 16.0
    c.lora.dropout = 0.1
    c.lora.base_dtype = "float32"      # "bfloat16" holds the frozen base in half the memory
    c.optim.freeze = "head_only"       # besides the adapters, the classifier trains (modules_to_save)

    c.optim.name = "adamw"
    c.optim.lr = 5e-3                  # the recipe's rate: adapters take a far larger lr than full fine-tuning
    c.optim.weight_decay = 0.0
    c.optim.schedule = "cosine"
    c.optim.warmup = "10%"

    c.train.batch_size = 64
    c.train.epochs = 5
    c.train.eval_every = "1 epochs"
    c.train.best_metric = "accuracy"
    return c
