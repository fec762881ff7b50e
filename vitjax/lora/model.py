"""Low-rank adapters on a vitjax `Model` without forking the model code.

`LoRAModel` is the usual `Model` (backbone + head, the same parameter paths) whose `init` and
`apply` run under a flax method interceptor (`nn.intercept_methods`): every `nn.Dense` whose path
(`backbone/encoder/layer_07/attention/query`) fully matches `LoRASpec.targets` gets two extra
parameters beside its `kernel` and `bias`,

    lora_a [in, rank]   initialised as PEFT does (uniform ±1/sqrt(in), torch's kaiming_uniform(a=√5))
    lora_b [rank, out]  zeros, so a fresh adapter leaves the function unchanged

and returns `dense(x) + (alpha / rank) · dropout(x) @ lora_a @ lora_b` (PEFT's LoRA, `bias="none"`).
The adapters are ordinary leaves, so parameter groups, layer decay, sharding rules and checkpoints
see them by path like any other parameter; `merge` folds them into the kernels.
"""
from __future__ import annotations

import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from vitjax.models.model import Model

ADAPTERS = ("lora_a", "lora_b")
# Parameter paths of adapters (the rule that trains them, the test that finds them).
ADAPTER_PATH = r"(.*/)?lora_[ab]"
_A_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")  # bound 1/sqrt(fan_in)


@dataclasses.dataclass(frozen=True)
class LoRASpec:
    """Which Dense layers get adapters (a regex over layer paths) and their rank, alpha and dropout."""

    targets: str
    rank: int
    alpha: float
    dropout: float = 0.0

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRAModel(Model):
    """`Model` with LoRA adapters on the Dense layers `lora.targets` names (see the module docstring).

    The interceptor is installed around `init_with_output` (and so `init`) and `apply`, whatever
    method they run (the whole model, or the backbone alone as the trainer's init does); dropout
    on the adapters' input runs in `apply(..., train=True)` with a 'dropout' rng."""

    lora: LoRASpec = None

    @nn.nowrap
    def init_with_output(self, rngs, *args, **kwargs):
        with nn.intercept_methods(_adapter(self.lora, train=False)):
            return super().init_with_output(rngs, *args, **kwargs)

    @nn.nowrap
    def apply(self, variables, *args, **kwargs):
        with nn.intercept_methods(_adapter(self.lora, train=bool(kwargs.get("train", False)))):
            return super().apply(variables, *args, **kwargs)


def _adapter(spec: LoRASpec, train: bool):
    """The method interceptor: a targeted Dense layer's output plus its low-rank update."""
    targets = re.compile(spec.targets)

    def adapter(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        layer = context.module
        if (context.method_name != "__call__" or not isinstance(layer, nn.Dense)
                or not targets.fullmatch("/".join(layer.path))):
            return out
        x = args[0]
        a = layer.param("lora_a", _A_INIT, (x.shape[-1], spec.rank), jnp.float32)
        b = layer.param("lora_b", nn.initializers.zeros, (spec.rank, layer.features), jnp.float32)
        if spec.dropout > 0 and train and layer.has_rng("dropout"):
            keep = jax.random.bernoulli(layer.make_rng("dropout"), 1.0 - spec.dropout, x.shape)
            x = jnp.where(keep, x / (1.0 - spec.dropout), 0).astype(x.dtype)
        low = (x @ a.astype(out.dtype)) @ b.astype(out.dtype)
        return out + (spec.scale * low).astype(out.dtype)

    return adapter


def adapted_layers(params) -> list[str]:
    """Paths of the layers holding adapters (`backbone/encoder/layer_00/attention/query`, ...)."""
    return sorted(path.removesuffix("/lora_a") for path in flatten_dict(params, sep="/")
                  if path.endswith("/lora_a"))


def merge(params, spec: LoRASpec) -> dict:
    """`params` with every adapter folded into its kernel (kernel + scale · a @ b, float32) and the
    adapter leaves dropped: the plain model's parameters, as the merged export writes them."""
    flat = dict(flatten_dict(params, sep="/"))
    for layer in adapted_layers(params):
        a, b = (np.asarray(flat.pop(f"{layer}/{name}"), np.float32) for name in ADAPTERS)
        kernel = np.asarray(flat[f"{layer}/kernel"], np.float32)
        flat[f"{layer}/kernel"] = kernel + spec.scale * (a @ b)
    return unflatten_dict(flat, sep="/")
