"""Metric pieces shared by task plugins: a clu confusion matrix and the IoU / Dice / accuracy it yields.

`ConfusionMatrix` accumulates on device (per image or per pixel); `iou_stats` turns its counts into the
per-class and mean IoU, Dice (= F1) and accuracy, host side.
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
