"""Export vitjax params to a Hugging Face folder that transformers loads unchanged (no torch needed).

Writes `config.json` (architectures, model_type, id2label/label2id, image_size, ...), `model.safetensors`
(via safetensors.numpy, through the family's name table, as loading) and `preprocessor_config.json`. Files are
written into a temporary sibling folder which then replaces `directory` by rename, so a crash never
leaves a half-written export (an existing `directory` is replaced as a whole).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np
from flax.traverse_util import flatten_dict
from safetensors.numpy import save_file

from vitjax.checkpoints.convert import to_tensors
from vitjax.checkpoints.catalog import HF_FAMILIES
from vitjax.checkpoints.hf_load import CONFIG, PREPROCESSOR, WEIGHTS
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.errors import BadValue
from vitjax.files import write_failed
from vitjax.models.vit import ViTSpec


def hf_architecture(spec: ViTSpec, pooling: str) -> str:
    """The transformers class of a classifier with a `pooling` head over `spec`; an error naming the
    pooling (config.task.pooling) when the family has none: its class pools its own way."""
    family = HF_FAMILIES.get(spec.family)
    if family is None or pooling not in family.architectures:
        held = (", ".join(f"{name} pools {p!r}" for p, name in sorted(family.architectures.items()))
                if family else f"exportable: {sorted((n, p) for n, f in HF_FAMILIES.items() for p in f.architectures)}")
        raise BadValue(f"no transformers class holds a {spec.family} backbone with a {pooling!r} head "
                       f"(config.task.pooling={pooling!r}; {held})")
    return family.architectures[pooling]


def hf_tensors(spec: ViTSpec, params: dict, pooling: str) -> dict[str, np.ndarray]:
    """vitjax params -> HF safetensors dict of the family's classification model."""
    hf_architecture(spec, pooling)
    family = HF_FAMILIES[spec.family]
    flat = flatten_dict(params, sep="/")
    rows = [dataclasses.replace(r, flax="backbone/" + r.flax) for r in family.backbone_rows(spec, family.prefixes[0])]
    rows += [dataclasses.replace(r, flax="head/" + r.flax) for r in family.head_rows(pooling)]
    return to_tensors(rows, flat)


def hf_config(spec: ViTSpec, pooling: str, id2label: dict[int, str]) -> dict:
    """The `config.json` dict for the exported classification model."""
    architecture = hf_architecture(spec, pooling)
    labels = {int(k): str(v) for k, v in id2label.items()}
    return {
        "architectures": [architecture],
        **HF_FAMILIES[spec.family].config_from_spec(spec),
        "id2label": {str(k): v for k, v in sorted(labels.items())},
        "label2id": {v: k for k, v in sorted(labels.items())},
        "dtype": "float32",
    }


def export_hf(directory: str | os.PathLike, spec: ViTSpec, params: dict, id2label: dict[int, str],
              preprocessing: Preprocessing, pooling: str, task_fields: dict | None = None) -> str:
    """Write the HF folder atomically; `params` is `{"backbone": ..., "head": ...}`. Returns the path.
    `task_fields`: the task's `config.json` fields (`Task.hf_config`: problem_type, label2id, ...)."""
    config = hf_config(spec, pooling, id2label)
    config.update({k: v for k, v in (task_fields or {}).items() if k != "id2label"})
    tensors = hf_tensors(spec, params, pooling)
    return write_folder(directory, tensors, {CONFIG: config, PREPROCESSOR: preprocessing.to_hf()})


def write_folder(directory: str | os.PathLike, tensors: dict[str, np.ndarray], json_files: dict[str, dict]) -> str:
    """Write `model.safetensors` and the JSON files into a staging folder that then replaces `directory`."""
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.", dir=parent)
    try:
        save_file(tensors, os.path.join(staging, WEIGHTS), metadata={"format": "pt"})
        for name, content in json_files.items():
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
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError):
            raise write_failed(directory, e) from e
        raise
    return directory
