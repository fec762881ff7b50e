"""A finished run's exported model folder read back, whatever its format: `best_vitjax/` (vitjax's own,
`native.py`) or `best/` in its family's format (transformers, or timm's for timm and `.npz` bases;
`families.load_checkpoint` reads both). `read_model_folder` gives what `vitjax.trained.load_trained`
builds the one `TrainedModel` on (evaluate, predict, robustness, deploy artifacts, the HTTP service).
"""
from __future__ import annotations

import dataclasses
import os

from vitjax import storage
from vitjax.checkpoints import native
from vitjax.checkpoints.families import load_checkpoint
from vitjax.checkpoints.hf_load import CONFIG
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.files import read_json
from vitjax.models.vit import ViTSpec


@dataclasses.dataclass
class ModelFolder:
    spec: ViTSpec
    params: dict  # float32 numpy arrays: {"backbone": ..., "head": ...}
    preprocessing: Preprocessing
    task_config: dict  # config.task as trained (best_vitjax/), or the classification task best/ describes
    class_names: list[str]


def read_model_folder(directory: str | os.PathLike) -> ModelFolder:
    """The model in `directory` (a folder on object storage is read from its local copy,
    `storage.cached_copy`); an error naming the folder when it is no exported model."""
    directory = os.fspath(directory)
    local = storage.cached_copy(directory)
    if os.path.isfile(os.path.join(local, native.MODEL_FILE)):
        info, params, spec, preprocessing = native.load_native(local)
        return ModelFolder(spec, params, preprocessing, info["task_config"], info["class_names"])
    if os.path.isfile(os.path.join(local, CONFIG)):
        checkpoint = load_checkpoint(local)
        problem_type = read_json(os.path.join(local, CONFIG)).get("problem_type")
        task_config = {"name": "classification", "plugins": [], "pooling": checkpoint.pooling,
                       "multilabel": problem_type == "multi_label_classification"}
        return ModelFolder(checkpoint.spec, checkpoint.params, checkpoint.preprocessing, task_config,
                           [checkpoint.id2label[i] for i in sorted(checkpoint.id2label)])
    raise FileNotFoundError(
        f"{directory} is not a model folder: it holds neither {CONFIG} (the best model in its family's "
        f"format, <workdir>/best) nor {native.MODEL_FILE} (vitjax's format, <workdir>/best_vitjax). "
        f"Pass the export folder of a finished run.")
