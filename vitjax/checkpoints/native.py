"""vitjax's own model format, for tasks without a transformers class (segmentation, detection).

A folder holding `params/` (the float32 parameter tree, an orbax checkpoint) and `vitjax_model.json`:
the task's name and knobs, the class names, the whole architecture and preprocessing (`architecture.py`;
folders written before them carry only the lossy transformers fields `backbone_config` and
`preprocessor_config`, which are read then). `load_native` reads the folder back.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from vitjax.checkpoints import architecture
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.files import read_json, write_text
from vitjax.models.vit import ViTSpec

MODEL_FILE = "vitjax_model.json"
PARAMS_DIR = "params"


def export_native(directory: str, spec, params, preprocessing, task: str, task_config: dict,
                  class_names: list[str], extra: dict[str, Any] | None = None) -> str:
    """Writes `directory/params` and `directory/vitjax_model.json`; returns `directory`."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, PARAMS_DIR),
                      jax.tree.map(lambda x: np.asarray(x, np.float32), jax.device_get(params)), force=True)
    checkpointer.wait_until_finished()
    info = {"format": "vitjax", "task": task, "task_config": task_config, "class_names": list(class_names),
            **architecture.to_fields(spec, preprocessing), "backbone_config": spec.to_hf_config(),
            "preprocessor_config": preprocessing.to_hf(), **(extra or {})}
    write_text(os.path.join(directory, MODEL_FILE), json.dumps(info, indent=2))
    return directory


def load_native(directory: str) -> tuple[dict, dict, ViTSpec, Preprocessing]:
    """(info from vitjax_model.json, the parameter tree as numpy arrays, the spec, the preprocessing)
    of an `export_native` folder."""
    directory = os.path.abspath(directory)
    path = os.path.join(directory, MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory} is not a vitjax model folder: {MODEL_FILE} is missing.")
    info = read_json(path, "export the model again")
    if "spec" in info:
        spec, preprocessing = architecture.from_fields(info, path)
    else:  # written before the whole architecture was kept
        spec = ViTSpec.from_hf_config(info["backbone_config"])
        preprocessing = Preprocessing.from_hf(info["preprocessor_config"])
    params = ocp.StandardCheckpointer().restore(os.path.join(directory, PARAMS_DIR))
    return info, jax.tree.map(np.asarray, params), spec, preprocessing
