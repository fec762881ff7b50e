"""What a training run does differently with `config.lora` set: the model, the optimizer rule for the
adapters, the frozen base in bfloat16, and the two exports (merged HF folder + PEFT adapter)."""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from vitjax.errors import BadValue
from vitjax.lora import peft as peft_format
from vitjax.lora.config import enabled
from vitjax.lora.model import ADAPTER_PATH, LoRAModel, LoRASpec, adapted_layers, merge
from vitjax.models.model import Model
from vitjax.optim import groups
from vitjax.workdir import adapter_dir

log = logging.getLogger(__name__)


def build_model(lora_cfg, model: Model) -> Model:
    """`model` itself, or the same backbone and head with adapters when LoRA is on."""
    if not enabled(lora_cfg):
        return model
    spec = LoRASpec(lora_cfg.targets, lora_cfg.rank, float(lora_cfg.alpha), lora_cfg.dropout)
    return LoRAModel(model.backbone, model.head, lora=spec)


def optimizer_rules(lora_cfg) -> list[groups.Rule]:
    """The rule that trains the adapters, placed ahead of the freeze preset (none when LoRA is off)."""
    return [groups.Rule(ADAPTER_PATH, 1.0, name="lora", required=False)] if enabled(lora_cfg) else []


def prepare_params(lora_cfg, params, trainable_mask):
    """Checks that the targets found Dense layers; holds the frozen weights in `lora.base_dtype`."""
    if not enabled(lora_cfg):
        return params
    if not adapted_layers(params):
        dense = sorted({p.removesuffix("/kernel") for p, v in flatten_dict(params, sep="/").items()
                        if p.endswith("/kernel") and np.ndim(v) == 2})
        raise BadValue(f"config.lora.targets={lora_cfg.targets!r} matches no Dense layer; layer paths "
                         f"look like {dense[:6]} (a full match over the path without '/kernel').")
    log.info("LoRA rank %d on %d layers: %s", lora_cfg.rank, len(adapted_layers(params)),
             adapted_layers(params)[:4])
    if lora_cfg.base_dtype == "float32":
        return params
    dtype = jnp.dtype(lora_cfg.base_dtype)
    return jax.tree.map(lambda p, trains: p if trains else np.asarray(p).astype(dtype), params, trainable_mask)


def export_adapter(run, params, directory: str, pooling: str | None) -> dict:
    """With LoRA: writes the PEFT adapter to `<directory>_adapter` and returns the merged params to
    export as a plain model; without it, returns `params` unchanged. `run`: a training run or an
    export (`vitjax.train.setup`), both with their model and training parts; `pooling`: the head's in
    the family's format (`vitjax.trained.export_format`), None when the model is written in vitjax's
    format, where a PEFT adapter over the family's class would pool differently."""
    model = run.model
    if not isinstance(model.module, LoRAModel):
        return params
    if pooling is None or model.spec.family not in peft_format.FAMILIES:
        log.info("LoRA: no PEFT adapter for a %s %s model in this format; the export holds the adapters merged",
                 model.spec.family, model.task.name)
        return merge(params, model.module.lora)
    trained = [p for p, t in zip(jax.tree.leaves(groups.path_tree(params)),
                                 jax.tree.leaves(run.training.optimizer.trainable_mask)) if t]
    path = peft_format.save_adapter(adapter_dir(directory), model.spec, pooling,
                                    params, model.module.lora, trained, base=model.base)
    log.info("exported the LoRA adapter in PEFT format to %s", path)
    return merge(params, model.module.lora)
