"""A "regression" task plugin: one number per image (an age, a count, a brightness), squared-error loss.

The worked example of docs/tasks.md: a third-party task in one file, registered
by naming the file in `config.task.plugins` (see `examples/regression_config.py`). Data: "folder:ROOT"
with `ROOT/targets.csv`, columns `image` (a path relative to ROOT) and `target`; validation and test
splits are carved from it. Metrics: loss and mean absolute error ("mae", the best checkpoint's). No
classes (`has_classes = False`), a fresh `head/regressor`, exported in vitjax's own format
(`best_vitjax/`, as `hf_config()` is None); `--mode predict` and the service give {"target": value}
per image.
"""
import csv
import dataclasses
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np
from clu import metrics as clu_metrics

from vitjax.data import splits, transforms
from vitjax.data.pipeline import RecordTransforms
from vitjax.registry import Task, register_task
from vitjax.report import write_evaluation_report


class TargetSource:
    """One split: records {"image", "target", "name"} from ROOT/targets.csv (columns image,target)."""

    def __init__(self, root: str):
        with open(Path(root) / "targets.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        self.paths = [str(Path(root) / row["image"]) for row in rows]
        self.targets = np.array([float(row["target"]) for row in rows], np.float32)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return {"image": self.paths[i], "target": self.targets[i], "name": self.paths[i]}

    def labels(self):  # only the stratification key of carved splits (no classes): one stratum here
        return np.zeros(len(self), np.int64)

    def ids(self):
        return self.paths

    def describe(self, i):
        return self.paths[i]


@dataclasses.dataclass(frozen=True)  # picklable: grain's worker processes receive it
class TargetTransforms:
    preprocessing: object
    augment: object

    def train(self, record, rng):
        image = transforms.load_rgb(record["image"], record["name"])
        size = tuple(self.preprocessing.input_size)
        pixels = transforms.augment(image, rng, self.augment, size, self.preprocessing.resample)
        return {"image": pixels, "target": np.float32(record["target"])}

    def eval(self, record):
        image = transforms.load_rgb(record["image"], record["name"])
        return {"image": self.preprocessing.to_uint8(image), "target": np.float32(record["target"])}


class RegressionHead(nn.Module):
    @nn.compact
    def __call__(self, features):  # the backbone's dict: "cls" [B, D], "patches" [B, gh, gw, D], ...
        return nn.Dense(1, name="regressor")(features["cls"])[:, 0].astype(jnp.float32)


@register_task("regression")
class Regression(Task):
    best_metric = ("mae", "min")
    has_classes = False

    @classmethod
    def default_config(cls):
        config = ml_collections.ConfigDict()
        config.target_scale = 1.0  # targets are divided by this before the loss
        return config

    @classmethod
    def open_source(cls, data_cfg, task_cfg):
        root = data_cfg.source.removeprefix("folder:")
        return splits.resolve_splits(data_cfg.source, {"train": TargetSource(root)}, None, data_cfg)

    def data_transforms(self, preprocessing, data_cfg):
        pair = TargetTransforms(preprocessing, data_cfg.augment)
        padding = {"image": np.zeros((*preprocessing.input_size, 3), np.uint8), "target": np.float32(0)}
        return RecordTransforms(train=pair.train, eval=pair.eval, padding=padding)

    def make_head(self, spec):
        return RegressionHead()

    def _inputs(self, outputs, batch):
        error = outputs * self.config.target_scale - batch["target"]
        valid = batch.get("valid")  # eval batches only; training batches have no padding
        mask = jnp.ones(error.shape, bool) if valid is None else valid
        return {"loss": (error / self.config.target_scale) ** 2, "abs_error": jnp.abs(error), "mask": mask}

    def loss(self, outputs, batch):
        inputs = self._inputs(outputs, batch)  # per-example: the metrics reuse them as aux
        total = jnp.sum(jnp.where(inputs["mask"], inputs["loss"], 0.0))
        return total / jnp.maximum(inputs["mask"].sum(), 1), inputs

    def metrics(self, training=False):
        return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output("loss"),
                                             mae=clu_metrics.Average.from_output("abs_error"))

    def metric_inputs(self, outputs, batch, aux):
        return aux

    def summarize(self, computed):
        return {"loss": float(computed["loss"]), "mae": float(computed["mae"])}

    def report(self, computed, outdir, split):
        summary = self.summarize(computed)
        result = {"split": split, "task": self.name, "metrics": summary}
        write_evaluation_report(outdir, split, summary, [summary], result)
        return result

    # --mode predict, the HTTP service and the ONNX/StableHLO exports: the arrays (jit-able), then a
    # JSON record per image (images, names and outdir serve tasks that write files: masks, drawings).
    def predict(self, outputs, top_k):
        return {"target": outputs * self.config.target_scale}

    def prediction_records(self, predictions, images, names, outdir):
        return [{"target": float(value)} for value in predictions["target"]]
