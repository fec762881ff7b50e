"""The one entry point for pretrained weights: `load_checkpoint` detects a checkpoint's family and hands
it to that family's reader (`catalog.supported()` lists what loads: the message for anything else);
`export_pretrained` writes a model back in its family's own format (timm's for timm and `.npz` weights,
transformers' for the others).

Each may be a path or a URL on object storage (`s3://`, `gs://`: read from a local copy,
`vitjax.storage.cached_copy`).

  * a `.npz` file: big_vision / vision_transformer (AugReg) weights (`npz.py`);
  * a folder or hub id whose `config.json` has `architecture`: timm (`timm_names.py`);
  * a folder or hub id whose `config.json` has `model_type`: transformers (`hf_load.py`), including
    sharded safetensors (`model.safetensors.index.json`).
"""
from __future__ import annotations

import os

from vitjax import storage
from vitjax.checkpoints import hf_load, npz, timm_names
from vitjax.checkpoints.catalog import supported
from vitjax.checkpoints.convert import Checkpoint, assemble
from vitjax.checkpoints.hf_export import export_hf, hf_architecture
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.checkpoints.timm_export import export_timm, timm_architecture
from vitjax.errors import BadValue
from vitjax.models.heads import DEFAULT_POOLING
from vitjax.models.vit import ViTSpec


def load_checkpoint(name_or_path, num_labels: int | None = None, id2label: dict | None = None,
                    image_size: int | tuple[int, int] | None = None, fill_head: bool = True) -> Checkpoint:
    """Any supported checkpoint -> vitjax params, labels and preprocessing (`convert.assemble`;
    `fill_head=False` for the trainer, whose task initialises the head tensors it does not reuse)."""
    name = os.fspath(name_or_path)
    if name.endswith(".npz"):
        local = storage.cached_copy(name)  # a file on object storage: its local copy
        if not os.path.isfile(local):
            raise FileNotFoundError(f"{name} does not exist; give the path of a big_vision/vision_transformer .npz")
        source = npz.read_npz(local)
    else:
        files = hf_load.resolve_files(name)
        config = hf_load.read_config(files[hf_load.CONFIG])
        if "architecture" in config:
            source = timm_names.read_timm(files, config, name)
        elif "model_type" in config:
            source = hf_load.read_hf(files, name)
        else:
            raise BadValue(f"{files[hf_load.CONFIG]} has neither `model_type` (transformers) nor `architecture` "
                           f"(timm); vitjax loads {supported()}.")
    return assemble(source, name, num_labels, id2label, image_size, fill_head)


def export_pretrained(directory, spec: ViTSpec, params: dict, id2label: dict[int, str],
                      preprocessing: Preprocessing, pooling: str | None = None,
                      task_fields: dict | None = None) -> str:
    """Write the model in its family's format; `pooling` defaults to the family's usual head (or DeiT's
    teacher head when the params have one)."""
    if pooling is None:
        has_distillation = "distillation_classifier" in params.get("head", {})
        pooling = "cls_distillation" if has_distillation else DEFAULT_POOLING[spec.family]
    if spec.family == "timm":
        return export_timm(directory, spec, params, id2label, preprocessing, pooling)
    return export_hf(directory, spec, params, id2label, preprocessing, pooling, task_fields)


def family_class_problem(spec: ViTSpec, pooling: str) -> str | None:
    """Why a classifier with a `pooling` head over `spec` has no class in its family's format (the one
    `export_pretrained` writes), naming config.task.pooling; None when it has one."""
    try:
        (timm_architecture if spec.family == "timm" else hf_architecture)(spec, pooling)
    except BadValue as error:
        return str(error)
    return None
