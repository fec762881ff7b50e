"""A trained model as one serving function: uint8 images [B, H, W, 3] -> the task's outputs.

`load_servable(model_dir)` reads a Hugging Face folder (`best/`, classification) or a vitjax folder
(`best_vitjax/`, any task) into a `Servable`: the linen model, its float32 params, the checkpoint's
`Preprocessing` and the task plugin. `serving_fn` composes the preprocessing's normalisation, the model
and the task's own output hook (`Task.predict`), so ONNX, StableHLO, int8 and the HTTP service all run
the same function, and a third-party task gets them through its plugin with no change to vitjax.
`deploy_info` is the JSON-able description (task, labels, preprocessing, outputs) every artifact carries.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import vitjax
from vitjax import registry
from vitjax.checkpoints import native
from vitjax.checkpoints.hf_load import CONFIG, load_hf
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.models.model import Model
from vitjax.models.vit import ViT, ViTSpec

# How many ranked entries (top classes, detections) an artifact keeps; requests ask for fewer.
MAX_TOP_K = 100


@dataclasses.dataclass
class Servable:
    model: Model
    params: dict
    preprocessing: Preprocessing
    spec: ViTSpec
    task: registry.Task
    task_config: dict  # config.task as trained: name, plugins and the task's knobs

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.preprocessing.input_size, self.spec.num_channels)

    def apply(self, params, images, top_k: int = MAX_TOP_K) -> dict:
        """uint8 [B, H, W, 3] -> the task's prediction arrays (`Task.predict`)."""
        outputs = self.model.apply({"params": params}, self.preprocessing.normalize(images), train=False)
        return self.task.predict(outputs, top_k)

    def serving_fn(self) -> Callable[[Any], dict]:
        """The weights closed over: uint8 images -> {output name: array}; what the exports trace."""
        return functools.partial(self.apply, self.params)


def make_task(task_config: dict, class_names: list[str]) -> registry.Task:
    """The task plugin instance a model was trained with (its plugins imported first); a task
    without the prediction hooks is refused, naming them."""
    config = registry.task_config(task_config["name"], task_config.get("plugins", ()))
    config.update({k: v for k, v in task_config.items() if k in config})
    task = registry.get_task(config.name)(config, class_names)
    registry.require_prediction_hooks(task)
    return task


def load_servable(model_dir: str) -> Servable:
    """A `best/` (Hugging Face) or `best_vitjax/` (vitjax format) folder as a `Servable`."""
    if os.path.isfile(os.path.join(model_dir, native.MODEL_FILE)):
        info, params = native.load_native(model_dir)
        spec = ViTSpec.from_hf_config(info["backbone_config"])
        preprocessing = Preprocessing.from_hf(info["preprocessor_config"])
        task_config, class_names = info["task_config"], info["class_names"]
    elif os.path.isfile(os.path.join(model_dir, CONFIG)):
        ckpt = load_hf(model_dir)
        with open(os.path.join(model_dir, CONFIG), encoding="utf-8") as f:
            multilabel = json.load(f).get("problem_type") == "multi_label_classification"
        class_names = [ckpt.id2label[i] for i in range(len(ckpt.id2label))]
        task_config = {"name": "classification", "plugins": [], "pooling": ckpt.pooling, "multilabel": multilabel}
        spec, params, preprocessing = ckpt.spec, ckpt.params, ckpt.preprocessing
    else:
        raise FileNotFoundError(
            f"{model_dir} is not a model folder: it holds neither {CONFIG} (a Hugging Face folder such "
            f"as <workdir>/best) nor {native.MODEL_FILE} (vitjax's format, <workdir>/best_vitjax).")
    task = make_task(task_config, class_names)
    model = Model(ViT(spec), task.make_head(spec))
    return Servable(model, jax.tree.map(np.asarray, params), preprocessing, spec, task, task_config)


def deploy_info(servable: Servable) -> dict:
    """What a client and a serving backend need besides the graph: task, labels, preprocessing, and
    the outputs (name, shape with "batch", dtype). `ranked` names the outputs whose axis 1 is ranked
    best first (top classes, detections), which a request's `top_k` may shorten."""
    images = jax.ShapeDtypeStruct((2, *servable.input_shape), jnp.uint8)
    shapes = jax.eval_shape(servable.serving_fn(), images)
    one = jax.eval_shape(functools.partial(servable.apply, top_k=1), servable.params, images)
    task = servable.task
    return {
        "format_version": 1,
        "vitjax_version": vitjax.__version__,
        "task": task.name,
        "task_config": servable.task_config,
        "class_names": task.class_names,
        "input": {"name": "images", "shape": ["batch", *servable.input_shape], "dtype": "uint8"},
        "outputs": {name: {"shape": ["batch", *s.shape[1:]], "dtype": str(s.dtype)}
                    for name, s in shapes.items()},
        "ranked": sorted(name for name in shapes if shapes[name].shape != one[name].shape),
        "max_top_k": MAX_TOP_K,
        "preprocessing": servable.preprocessing.to_hf(),
        "backbone_config": servable.spec.to_hf_config(),
    }
