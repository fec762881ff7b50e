"""Evaluation batches for the robustness report, built on the run's own pipeline.

A split becomes a source of *examples* — what the evaluation pipeline would batch: `{"image": uint8
[H, W, 3] at the model's input resolution, <the task's label fields>}`, from the run's decode cache
for image + class-label records or from the task's `RecordTransforms.eval` — and
`CorruptedExamples` corrupts each example's image as grain reads it (in its read threads), so masks
and boxes keep their places. `vitjax.data.pipeline.eval_batches` batches, pads and shards them as in
any evaluation. `RelabeledSource` maps another source's labels onto the model's classes by name.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from vitjax.data import pipeline
from vitjax.data.cache import DecodedSource, cache_path
from vitjax.data.config import default_config
from vitjax.errors import BadValue
from vitjax.robustness import corruptions


class ClassificationExamples:
    """Image + class-label records, decoded and resized as the evaluation does (sharing its cache)."""

    def __init__(self, split, preprocessing, data_cfg):
        shape = (*preprocessing.input_size, 3)
        path = cache_path(data_cfg, split, "eval", shape, repr(preprocessing))
        self.decoded = DecodedSource(split, preprocessing.to_uint8, shape, path)

    def __len__(self) -> int:
        return len(self.decoded)

    def __getitem__(self, index: int) -> dict:
        record = self.decoded[index]
        return {"image": record["image"], "label": np.int32(record["label"])}


class TaskExamples:
    """A task's records through its own eval transform (`RecordTransforms.eval`)."""

    def __init__(self, split, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict:
        return self.transform(self.split[index])


class CorruptedExamples:
    """`examples` with each image corrupted by `name` at `severity`, seeded per example."""

    def __init__(self, examples, name: str, severity: int, seed: int):
        self.examples, self.name, self.severity, self.seed = examples, name, severity, seed

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = dict(self.examples[index])
        key = [self.seed, corruptions.CORRUPTIONS.index(self.name), self.severity, int(index)]
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        example["image"] = corruptions.corrupt(example["image"], self.name, self.severity, seed)
        return example


@dataclasses.dataclass(frozen=True)
class _AsIs:
    """The identity transform (picklable): the examples are already what the batches hold."""

    def __call__(self, example, rng=None):
        return example


def examples_of(run, split) -> tuple[object, dict]:
    """(examples of the record source `split`, the padding example) for `run`'s task."""
    if run.data.record_transforms is None:
        padding = {"image": np.zeros((*run.model.preprocessing.input_size, 3), np.uint8),
                   "label": np.int32(0)}
        return ClassificationExamples(split, run.model.preprocessing, run.config.data), padding
    return TaskExamples(split, run.data.record_transforms.eval), run.data.record_transforms.padding


def batches(run, examples, padding: dict) -> pipeline.EvalBatches:
    """This process's padded evaluation batches of `examples` (rows of `valid=False` pad)."""
    data_cfg = default_config()  # no decode cache or augmentation: the examples are ready
    data_cfg.read_threads, data_cfg.prefetch = run.config.data.read_threads, run.config.data.prefetch
    return pipeline.eval_batches(
        examples, run.model.preprocessing, batch_size=run.data.per_process_eval_batch,
        shard_index=jax.process_index(), shard_count=jax.process_count(), data_cfg=data_cfg,
        record_transforms=pipeline.RecordTransforms(train=_AsIs(), eval=_AsIs(), padding=padding))


class RelabeledSource:
    """The records of `parents` (several splits, one after another) with their labels mapped onto
    the model's classes by `mapping` (source class index -> model class index, -1 when unknown).
    Single-label records ("label") of unknown classes are dropped; multi-label records ("labels")
    all stay, with their known labels."""

    def __init__(self, parents, mapping: np.ndarray, multilabel: bool):
        self.parents, self.mapping, self.multilabel = list(parents), np.asarray(mapping), multilabel
        self.rows = [(p, i) for p, parent in enumerate(self.parents)
                     for i, label in enumerate(parent.labels())
                     if multilabel or self.mapping[label] >= 0]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        p, i = self.rows[index]
        record = dict(self.parents[p][i])
        if self.multilabel:
            record["labels"] = [int(self.mapping[c]) for c in record["labels"] if self.mapping[c] >= 0]
        else:
            record["label"] = int(self.mapping[record["label"]])
        return record

    def labels(self) -> np.ndarray:
        return np.asarray([max(self.mapping[self.parents[p].labels()[i]], 0) for p, i in self.rows],
                          np.int64)

    def ids(self) -> list:
        return [self.parents[p].ids()[i] for p, i in self.rows]

    def describe(self, index: int) -> str:
        p, i = self.rows[index]
        return self.parents[p].describe(i)


def match_classes(model_classes, source_classes) -> tuple[np.ndarray, dict]:
    """(source index -> model index or -1, {"missing_in_source": [...], "unknown_to_model": [...]})."""
    where = {name: i for i, name in enumerate(model_classes)}
    mapping = np.array([where.get(name, -1) for name in source_classes], np.int64)
    if not (mapping >= 0).any():
        raise BadValue(f"the cross-domain source shares no class name with the model: it has "
                       f"{list(source_classes)[:10]}, the model {list(model_classes)[:10]}. Class "
                       f"names must match exactly (folder names, the dataset's label names).")
    known = set(source_classes)
    return mapping, {"missing_in_source": [n for n in model_classes if n not in known],
                     "unknown_to_model": [n for n in source_classes if n not in where]}
