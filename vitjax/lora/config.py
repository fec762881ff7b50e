"""`config.lora`: every knob of low-rank adaptation, and the checks of their values."""
from __future__ import annotations

import re

import ml_collections

from vitjax.errors import BadValue

BASE_DTYPES = ("float32", "bfloat16")


def default_config() -> ml_collections.ConfigDict:
    """The `config.lora` subtree; LoRA is off while `targets` is empty."""
    c = ml_collections.ConfigDict()
    # Regex over Dense layer paths (a parameter path without its "/kernel"), full match; "" = off.
    # E.g. r"backbone/encoder/layer_\d+/attention/(query|value)" (PEFT's target_modules=["query",
    # "value"]). What else trains, in full, is what optim.freeze leaves trainable: "head_only" =
    # PEFT's modules_to_save=["classifier"].
    c.targets = ""
    c.rank = 16                       # r: the adapters' inner width
    c.alpha = 16.0                    # the adapters' output is scaled by alpha / rank
    c.dropout = 0.0                   # dropout on the adapters' input while training
    c.base_dtype = "float32"          # "bfloat16": frozen base weights held in bfloat16 (half the memory)
    return c


def enabled(lora_cfg) -> bool:
    return bool(lora_cfg.targets)


def validate(config) -> None:
    """Cheap checks of `config.lora` (and of the freeze preset it needs), each naming the key."""
    c = config.lora
    if c.base_dtype not in BASE_DTYPES:
        raise BadValue(f"config.lora.base_dtype={c.base_dtype!r}: use one of {BASE_DTYPES}.")
    if not enabled(c):
        return
    try:
        re.compile(c.targets)
    except re.error as err:
        raise BadValue(f"config.lora.targets={c.targets!r} is not a valid regex ({err}).") from None
    if isinstance(c.rank, bool) or not isinstance(c.rank, int) or c.rank < 1:
        raise BadValue(f"config.lora.rank={c.rank!r} must be a positive integer (e.g. 8 or 16).")
    if not c.alpha > 0:
        raise BadValue(f"config.lora.alpha={c.alpha!r} must be positive (the scale is alpha / rank).")
    if not 0 <= c.dropout < 1:
        raise BadValue(f"config.lora.dropout={c.dropout!r} must be in [0, 1).")
    if config.optim.freeze == "full":
        raise BadValue("config.lora.targets is set but config.optim.freeze='full' trains every base "
                         "weight in full as well; set config.optim.freeze='head_only' (the adapters and "
                         "the head train, as PEFT's modules_to_save=['classifier']), 'last_n_blocks' or "
                         "a regex of the base weights to freeze.")
