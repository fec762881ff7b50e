"""Checks of files that come from elsewhere, made when they are opened: each error names the file, the
key and what is allowed.

`check_model_config`
and `check_preprocessor_config` hold a checkpoint's values to the ranges a ViT can be built and fed
with; `labels_of` reads its `id2label`; `read_safetensors` names the weights file that is truncated or corrupt.
"""

from __future__ import annotations

import math

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from vitjax.errors import BadValue

# key: (smallest, largest) for the integers of a transformers ViT/DeiT/DINOv2 config.json.
_INT_RANGES = {
    "num_hidden_layers": (1, 256),
    "hidden_size": (1, 65536),
    "num_attention_heads": (1, 1024),
    "intermediate_size": (1, 1 << 20),
    "patch_size": (1, 1024),
    "num_channels": (1, 16),
}
_IMAGE_SIZE = (1, 16384)
_PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate")


def _int(config: dict, key: str, path: str, low: int, high: int) -> int | None:
    if key not in config:
        return None
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not low <= value <= high:
        raise BadValue(f"{path}: {key}={value!r} is out of range; a whole number in {low}..{high} is "
                       f"allowed. Fix the file or use another checkpoint.")
    return int(value)


def check_model_config(config: dict, path: str) -> None:
    """Every architecture value of a checkpoint's config.json a ViT can be built with."""
    ints = {key: _int(config, key, path, *span) for key, span in _INT_RANGES.items()}
    size = config.get("image_size")
    if size is not None:
        sizes = size if isinstance(size, (list, tuple)) else [size]
        if len(sizes) not in (1, 2):
            raise BadValue(f"{path}: image_size={size!r}; use a number or [height, width].")
        for s in sizes:
            _int({"image_size": s}, "image_size", path, *_IMAGE_SIZE)
        patch = ints["patch_size"] or 16
        if min(int(s) for s in sizes) < patch:
            raise BadValue(f"{path}: patch_size={patch} is larger than image_size={size!r}; the "
                           f"allowed range is 1..{min(int(s) for s in sizes)}.")
    hidden, heads = ints["hidden_size"], ints["num_attention_heads"]
    if hidden is not None and heads is not None and hidden % heads:
        raise BadValue(f"{path}: num_attention_heads={heads} does not divide hidden_size={hidden}; use a "
                       f"divisor of {hidden}.")
    for key in _PROBABILITIES:
        if key in config and not _real(config[key], 0.0, 1.0, high_open=True):
            raise BadValue(f"{path}: {key}={config[key]!r} is out of range; a number in [0, 1) is allowed.")
    if "layer_norm_eps" in config and not _real(config["layer_norm_eps"], 0.0, 1.0, low_open=True):
        raise BadValue(f"{path}: layer_norm_eps={config['layer_norm_eps']!r} is out of range; a number in "
                       f"(0, 1] is allowed.")
    if "mlp_ratio" in config and not _real(config["mlp_ratio"], 0.0, 64.0, low_open=True):
        raise BadValue(f"{path}: mlp_ratio={config['mlp_ratio']!r} is out of range; a number in (0, 64] "
                       f"is allowed.")


def labels_of(config: dict, path: str) -> dict[int, str]:
    """A checkpoint config's `id2label` as {class index: name}; its keys must be the indices 0..N-1."""
    raw = config.get("id2label") or {}
    keys = list(raw) if isinstance(raw, dict) else None
    if keys is None or not all(isinstance(k, (str, int)) and str(k).isdigit() for k in keys) \
            or sorted(int(k) for k in keys) != list(range(len(keys))):
        shown = sorted(map(str, keys))[:5] if keys is not None else type(raw).__name__
        raise BadValue(f"{path}: id2label must map the class indices 0..N-1 (\"0\", \"1\", ...) to names, got "
                       f"{shown}; fix it in the file, or pass id2label= for a new head.")
    return {int(k): str(v) for k, v in raw.items()}


def check_preprocessor_config(config: dict, path: str) -> None:
    """Normalisation values images can be scaled with (no zero std: it would turn them into inf/NaN)."""
    for key, allow_zero in (("image_mean", True), ("image_std", False)):
        if key not in config:
            continue
        value = config[key]
        values = value if isinstance(value, (list, tuple)) else [value]
        low_open = not allow_zero
        if not values or not all(_real(v, -1e6 if allow_zero else 0.0, 1e6, low_open=low_open)
                                 for v in values):
            allowed = "finite numbers" if allow_zero else "positive finite numbers"
            raise BadValue(f"{path}: {key}={value!r} is out of range; {allowed} (one per channel) are "
                           f"allowed.")
    if "rescale_factor" in config and not _real(config["rescale_factor"], 0.0, 1e6, low_open=True):
        raise BadValue(f"{path}: rescale_factor={config['rescale_factor']!r} is out of range; a positive "
                       f"number (1/255 for 8-bit images) is allowed.")


def _real(value, low: float, high: float, low_open: bool = False, high_open: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (value > low if low_open else value >= low) and (value < high if high_open else value <= high)


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy; bfloat16 files, which numpy cannot read, go through JAX."""
    try:
        try:
            return load_file(path)
        except TypeError:
            with safe_open(path, framework="flax") as f:
                return {name: np.asarray(f.get_tensor(name).astype(np.float32)) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise BadValue(f"{path} is truncated or corrupt ({e}); download or save the checkpoint again.") \
            from None
