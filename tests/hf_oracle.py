"""Test helpers: tiny random transformers models saved to disk, torch forwards, relative-error reporting.

Relative error = max|ours - theirs| / max|theirs|. Every parity test prints one line
`PARITY <name> max_rel_err=<value>`; run pytest with `-s` (or `-rP`) to see them.
"""
import numpy as np
import torch
import transformers

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, patch_size=8)


def rel_err(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def report(name: str, **errors: float) -> None:
    print("PARITY", name, " ".join(f"{k}_max_rel_err={v:.2e}" for k, v in errors.items()))


def make(cls_name: str, config_name: str, seed: int = 0, **config):
    """Instantiate e.g. make("ViTForImageClassification", "ViTConfig", **kw) with seeded random weights."""
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(getattr(transformers, config_name)(**config))
    with torch.no_grad():  # make layer norms and biases non-trivial so the table is really exercised
        for name, param in model.named_parameters():
            if name.endswith("bias") or "layernorm" in name or "norm" in name or "lambda" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def pixels(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, height, width)).astype(np.float32)


def torch_forward(model, pixel_values, **kwargs):
    with torch.no_grad():
        return model(torch.from_numpy(pixel_values), **kwargs)
