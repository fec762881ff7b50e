"""Export vitjax params to a Hugging Face folder that transformers loads unchanged (no torch needed).

Writes `config.json` (architectures, model_type, id2label/label2id, image_size, ...), `model.safetensors`
(via safetensors.numpy, through the same name table as loading) and `preprocessor_config.json`. Files are
written into a temporary sibling folder which then replaces `directory` by rename, so a crash never
leaves a half-written export (an existing `directory` is replaced as a whole).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
from flax.traverse_util import flatten_dict
from safetensors.numpy import save_file

from vitjax.checkpoints import hf_names
from vitjax.checkpoints.hf_load import CONFIG, PREPROCESSOR, WEIGHTS
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.errors import BadValue
from vitjax.models.vit import ViTSpec


def hf_tensors(spec: ViTSpec, params: dict, pooling: str) -> dict[str, np.ndarray]:
    """vitjax params -> HF safetensors dict of a `*ForImageClassification` model."""
    flat = flatten_dict(params, sep="/")
    prefix = hf_names.BACKBONES[spec.family][0]
    rows = [(prefix + hf, "backbone/" + path, kind) for hf, path, kind in hf_names.backbone_rows(spec)]
    rows += [(hf, "head/" + path, kind) for hf, path, kind in hf_names.head_rows(pooling)]
    tensors = {}
    for hf, path, kind in rows:
        if path not in flat:
            raise KeyError(f"params have no {path!r} (exported as {hf!r}); are they from a {spec.family} "
                           f"model with a {pooling!r} head?")
        value = hf_names.KINDS[kind].to_hf(np.asarray(flat[path], dtype=np.float32))
        tensors[hf] = np.ascontiguousarray(value)
    return tensors


def hf_config(spec: ViTSpec, pooling: str, id2label: dict[int, str]) -> dict:
    """The `config.json` dict for the exported classification model."""
    architecture = hf_names.ARCHITECTURES.get((spec.family, pooling))
    if architecture is None:
        raise BadValue(f"no transformers class for a {spec.family} backbone with a {pooling!r} head; "
                       f"exportable: {sorted(hf_names.ARCHITECTURES)}")
    labels = {int(k): str(v) for k, v in id2label.items()}
    return {
        "architectures": [architecture],
        **spec.to_hf_config(),
        "id2label": {str(k): v for k, v in sorted(labels.items())},
        "label2id": {v: k for k, v in sorted(labels.items())},
        "dtype": "float32",
    }


def export_hf(directory: str | os.PathLike, spec: ViTSpec, params: dict, id2label: dict[int, str],
              preprocessing: Preprocessing, pooling: str | None = None) -> str:
    """Write the HF folder atomically; `params` is `{"backbone": ..., "head": ...}`. Returns the path.
    `pooling` defaults to the family's usual head (inferred from the params for DeiT with a teacher head)."""
    if pooling is None:
        has_distillation = "distillation_classifier" in params.get("head", {})
        pooling = "cls_distillation" if has_distillation else hf_names.DEFAULT_POOLING[spec.family]
    tensors = hf_tensors(spec, params, pooling)
    config = hf_config(spec, pooling, id2label)
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.", dir=parent)
    try:
        save_file(tensors, os.path.join(staging, WEIGHTS), metadata={"format": "pt"})
        for name, content in ((CONFIG, config), (PREPROCESSOR, preprocessing.to_hf())):
            with open(os.path.join(staging, name), "w") as f:
                json.dump(content, f, indent=2)
        mask = os.umask(0)
        os.umask(mask)
        for name in os.listdir(staging):  # safetensors writes 0600; the folder is shared like any other
            os.chmod(os.path.join(staging, name), 0o666 & ~mask)
        os.chmod(staging, 0o777 & ~mask)
        old = None
        if os.path.exists(directory):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.old.", dir=parent)
            os.rename(directory, os.path.join(old, "previous"))
        os.rename(staging, directory)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory
