"""Metric pieces shared by task plugins: a clu confusion matrix and the IoU / Dice / accuracy it yields,
and the first examples of an evaluation (what a report draws).

`ConfusionMatrix` accumulates on device (per image or per pixel); `iou_stats` turns its counts into the
per-class and mean IoU, Dice (= F1) and accuracy, host side. `FirstExamples` keeps a few rows of chosen
outputs (the images, the predicted and true masks) on the host.
"""
from __future__ import annotations

import functools
from typing import ClassVar

import flax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics


@flax.struct.dataclass
class ConfusionMatrix(clu_metrics.Metric):
    """Sums a [C, C] count matrix over batches and devices: rows are true classes, columns predicted.

    Takes `logits` [B, ..., C], int `labels` [B, ...] and an optional bool `mask` [B] (or [B, ...]);
    labels outside [0, C) (an ignore index such as 255 or -1) are not counted, so per-pixel labels
    work as well as per-image ones. Build the class for C classes with `ConfusionMatrix.of_size(C)`.
    """

    counts: jnp.ndarray
    num_classes: ClassVar[int] = 0

    @classmethod
    @functools.cache
    def of_size(cls, num_classes: int) -> type[ConfusionMatrix]:
        subclass = type(f"ConfusionMatrix{num_classes}", (cls,), {"num_classes": num_classes})
        return flax.struct.dataclass(subclass)

    @classmethod
    def empty(cls) -> ConfusionMatrix:
        return cls(counts=jnp.zeros((cls.num_classes, cls.num_classes), jnp.int32))

    @classmethod
    def from_model_output(cls, *, logits, labels, mask=None, **_) -> ConfusionMatrix:
        counted = (labels >= 0) & (labels < cls.num_classes)
        if mask is not None:
            counted &= mask.astype(bool).reshape(mask.shape + (1,) * (labels.ndim - mask.ndim))
        predicted = jnp.argmax(logits, axis=-1)
        rows = jnp.where(counted, labels, 0).ravel()
        counts = cls.empty().counts.at[rows, predicted.ravel()].add(counted.ravel().astype(jnp.int32))
        return cls(counts=counts)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return type(self)(counts=self.counts + other.counts)

    def compute(self) -> jnp.ndarray:
        return self.counts


@flax.struct.dataclass
class FirstExamples(clu_metrics.CollectingMetric):
    """The outputs `names` of the first `count` valid examples of an evaluation, in the split's order
    (the eval batches come in order): e.g. a few images with their predicted and true masks, which
    a task's report draws. Takes the named outputs [B, ...] and `mask` [B]; each batch hands at most
    `count` rows to the host and merging keeps the first `count` valid ones, so the host holds a few
    examples however long the split. `FirstExamples.of(names, count)` builds the class; `compute()`
    gives {name: array [n <= count, ...]}. Collects nothing when an output it names is not an array
    (an evaluation over the feature cache's features has no pixels to draw); a missing one is a KeyError."""

    names: ClassVar[tuple[str, ...]] = ()
    count: ClassVar[int] = 0

    @classmethod
    @functools.cache
    def of(cls, names: tuple[str, ...], count: int) -> type[FirstExamples]:
        subclass = type(f"FirstExamples{count}", (cls,), {"names": tuple(names), "count": count})
        return flax.struct.dataclass(subclass)

    @classmethod
    def from_model_output(cls, *, mask=None, **outputs) -> FirstExamples:
        if not all(hasattr(outputs[name], "shape") for name in cls.names):
            return cls.empty()
        rows = outputs[cls.names[0]].shape[0]
        valid = jnp.ones((rows,), bool) if mask is None else jnp.asarray(mask, bool)
        kept = {name: outputs[name][:cls.count] for name in cls.names}
        return cls({**{name: (value,) for name, value in kept.items()}, "mask": (valid[:cls.count],)})

    def merge(self, other: FirstExamples) -> FirstExamples:
        merged = super().merge(other)
        return type(self)({name: (value,) for name, value in merged._first().items()})

    def _first(self) -> dict[str, np.ndarray]:
        """The first `count` valid rows, with their mask (all True)."""
        values = {name: np.concatenate([np.asarray(v) for v in parts]) for name, parts in self.values.items()}
        if not values:
            return {}
        chosen = np.flatnonzero(values["mask"])[:self.count]
        return {name: value[chosen] for name, value in values.items()}

    def compute(self) -> dict[str, np.ndarray]:
        first = self._first()
        first.pop("mask", None)
        return first


def iou_stats(matrix: np.ndarray) -> dict[str, np.ndarray | float]:
    """From a [C, C] confusion matrix (rows true, columns predicted): per-class IoU, Dice (F1) and
    accuracy (NaN for a class absent from both labels and predictions / from the labels), mean IoU and
    mean Dice over the classes that have one, pixel accuracy (NaN without labelled pixels)."""
    matrix = np.asarray(matrix, np.float64)
    true_positives = np.diag(matrix)
    labelled, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    union = labelled + predicted - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positives / union, np.nan)
        dice = np.where(union > 0, 2 * true_positives / (labelled + predicted), np.nan)
        accuracy = np.where(labelled > 0, true_positives / labelled, np.nan)
        pixel_accuracy = true_positives.sum() / matrix.sum() if matrix.sum() else np.nan
    return {"iou": iou, "dice": dice, "accuracy": accuracy, "mean_iou": _nanmean(iou),
            "mean_dice": _nanmean(dice), "pixel_accuracy": float(pixel_accuracy)}


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
