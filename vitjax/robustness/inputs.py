"""Evaluation batches for the robustness report, built on the run's own pipeline.

A split becomes a source of *examples* — what the evaluation pipeline would batch: `{"image": uint8
[H, W, 3] at the model's input resolution, <the task's label fields>}`, the task's
`RecordTransforms.eval` of the records as the evaluation reads them (`pipeline.eval_source`: through
the decode cache where the transforms declare it) — and
`CorruptedExamples` corrupts each example's image as grain reads it (in its read threads), so masks
and boxes keep their places. `vitjax.data.pipeline.eval_batches` batches, pads and shards them as in
any evaluation. `RelabeledSource` maps another source's labels onto the model's classes by name.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from vitjax.data import pipeline
from vitjax.data.config import default_config
from vitjax.data.records import record_classes
from vitjax.errors import BadValue
from vitjax.robustness import corruptions


class TaskExamples:
    """Records through a task's eval transform (`RecordTransforms.eval`)."""

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
    transforms = run.data.record_transforms
    source = pipeline.eval_source(split, run.model.preprocessing, run.config.data, transforms)
    return TaskExamples(source, transforms.eval), transforms.padding


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
    Records whose `labels()` are their classes ("label") are dropped when the model does not know
    their class; the records of sources with `classes()` (multi-label "labels") all stay, with
    their known labels."""

    def __init__(self, parents, mapping: np.ndarray):
        self.parents, self.mapping = list(parents), np.asarray(mapping)
        self.rows = []
        for p, parent in enumerate(self.parents):
            labels = parent.labels()
            kept = np.ones(len(labels), bool) if record_classes(parent) is not None else self.mapping[labels] >= 0
            self.rows += [(p, int(i)) for i in np.flatnonzero(kept)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        p, i = self.rows[index]
        record = dict(self.parents[p][i])
        if "labels" in record:
            record["labels"] = [int(self.mapping[c]) for c in record["labels"] if self.mapping[c] >= 0]
        if "label" in record:
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
