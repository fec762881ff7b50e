"""The "classification" task plugin: single-label softmax or multi-label sigmoid classification.

Labels come as `batch["label"]`: int [B] class indices, or float [B, C] targets — soft targets from
mixup/cutmix in the single-label case, multi-hot vectors with `multilabel=True` (whose sources and
transforms, `vitjax.data.multilabel`, read label lists: an HF `Sequence(ClassLabel)` column or a
folder's labels.csv). Losses and metrics
count only rows where `batch["valid"]` is True.

Metrics (clu): loss, accuracy (exact-match accuracy for multi-label), top-k accuracy when there are
more than k classes, and, in evaluations, a summed confusion matrix (single-label) or per-label true
positive, false positive and false negative counts plus the collected scores for average precision
(multi-label), from which per-class and macro/weighted (micro) precision, recall and F1 are derived
on the host. The confusion matrix is `vitjax.metrics.ConfusionMatrix`.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import metrics as clu_metrics
from ml_collections import config_dict

from vitjax.data.multilabel import multi_hot_transforms, open_multilabel
from vitjax.data.pipeline import RecordTransforms, image_label_transforms
from vitjax.errors import BadValue
from vitjax.metrics import ConfusionMatrix
from vitjax.models.heads import DEFAULT_POOLING, POOLINGS
from vitjax.registry import MAX_TOP_K, Task, register_task
from vitjax.report import plot_confusion_matrix, write_evaluation_report

# Multi-label predictions: a label is predicted when its sigmoid probability reaches this.
MULTILABEL_THRESHOLD = 0.5
_STATS = ("precision", "recall", "f1")
# The report page's most-confused class pairs, and the example images shown per pair.
CONFUSED_PAIRS, PAIR_EXAMPLES = 3, 6


@flax.struct.dataclass
class TopKAccuracy(clu_metrics.Average):
    """Fraction of examples whose true class is among the k highest logits; `TopKAccuracy.of_k(k)`."""

    k: ClassVar[int] = 5

    @classmethod
    @functools.cache
    def of_k(cls, k: int) -> type[TopKAccuracy]:
        return flax.struct.dataclass(type(f"Top{k}Accuracy", (cls,), {"k": k}))

    @classmethod
    def from_model_output(cls, *, logits, labels, mask=None, **_) -> TopKAccuracy:
        _, top = jax.lax.top_k(logits, cls.k)
        hits = jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)
        return super().from_model_output(hits, mask=mask)


@flax.struct.dataclass
class MultilabelCounts(clu_metrics.Metric):
    """Per-label true positive, false positive and false negative counts [C] at the 0.5 threshold.

    Takes `logits` [B, C], multi-hot `targets` [B, C] and an optional bool `mask` [B]; build the
    class for a number of labels with `MultilabelCounts.of_size(C)`.
    """

    true_positives: jnp.ndarray
    false_positives: jnp.ndarray
    false_negatives: jnp.ndarray
    num_labels: ClassVar[int] = 0

    @classmethod
    @functools.cache
    def of_size(cls, num_labels: int) -> type[MultilabelCounts]:
        subclass = type(f"MultilabelCounts{num_labels}", (cls,), {"num_labels": num_labels})
        return flax.struct.dataclass(subclass)

    @classmethod
    def empty(cls) -> MultilabelCounts:
        zeros = jnp.zeros((cls.num_labels,), jnp.int32)
        return cls(true_positives=zeros, false_positives=zeros, false_negatives=zeros)

    @classmethod
    def from_model_output(cls, *, logits, targets, mask=None, **_) -> MultilabelCounts:
        valid = jnp.ones(logits.shape[:1], bool) if mask is None else mask.astype(bool)
        predicted = (jax.nn.sigmoid(logits) >= MULTILABEL_THRESHOLD) & valid[:, None]
        actual = (targets >= 0.5) & valid[:, None]

        def count(selected):
            return jnp.sum(selected, axis=0, dtype=jnp.int32)

        return cls(
            true_positives=count(predicted & actual),
            false_positives=count(predicted & ~actual),
            false_negatives=count(~predicted & actual),
        )

    def merge(self, other: MultilabelCounts) -> MultilabelCounts:
        return jax.tree_util.tree_map(jnp.add, self, other)

    def compute(self) -> dict[str, jnp.ndarray]:
        return {"true_positives": self.true_positives, "false_positives": self.false_positives,
                "false_negatives": self.false_negatives}


def _exact_match(logits, targets, **_) -> jnp.ndarray:
    """1.0 for each example whose whole predicted label set equals its true label set."""
    predicted = jax.nn.sigmoid(logits) >= MULTILABEL_THRESHOLD
    return jnp.all(predicted == (targets >= 0.5), axis=-1).astype(jnp.float32)


def _nanmean(values: np.ndarray | None) -> float | None:
    """The mean of the non-NaN values; None when there are none."""
    if values is None or np.all(np.isnan(values)):
        return None
    return float(np.nanmean(values))


def precision_recall_f1(true_positives, false_positives, false_negatives) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 from counts; 0 where undefined (sklearn's zero_division=0)."""
    tp, fp, fn = (np.asarray(x, np.float64) for x in (true_positives, false_positives, false_negatives))

    def ratio(numerator, denominator):
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)

    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "support": (tp + fn).astype(np.int64),
    }


@register_task("classification")
class Classification(Task):
    """Image classification over the backbone's pooled tokens with vitjax's `ClassificationHead`."""

    best_metric = ("accuracy", "max")
    class_logits = True

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = ml_collections.ConfigDict()
        # Head pooling: "cls", "cls_distillation" (DeiT), "cls_mean" (CLS concatenated with the mean
        # patch token), "mean" (patch tokens) or "pooled" (the backbone's pooling: timm, SigLIP's MAP).
        # None picks what the family's own classifier does (`vitjax.models.heads.DEFAULT_POOLING`).
        config.pooling = config_dict.placeholder(str)
        # Label smoothing epsilon: targets become (1 - eps) * y + eps / C (eps / 2 per label in multi-label).
        config.label_smoothing = 0.0
        # Multi-label: sigmoid binary cross-entropy on float multi-hot labels [B, C] instead of softmax.
        config.multilabel = False
        # k of the top-k accuracy metric, reported as "top{k}_accuracy" when there are more than k
        # classes (single-label only), and the labels a prediction lists per image when none is asked
        # (--mode predict, the service, the API: `default_top_k`); 0 turns the metric off (a
        # prediction then lists every label, at most 100).
        config.top_k = 5
        # Warn when one class receives at least this fraction of an evaluation's predictions (a sign
        # of a too-high learning rate); None turns the warning off. Single-label only.
        config.collapse_warning = config_dict.placeholder(float)
        config.collapse_warning = 0.9
        return config

    def __init__(self, config: ml_collections.ConfigDict, class_names: Sequence[str]):
        super().__init__(config, class_names)
        if not self.config.multilabel and self.num_classes < 2:
            raise BadValue(
                f"Single-label classification needs at least 2 classes; got {self.class_names}. "
                f"Check the dataset's labels, or set config.task.multilabel=True."
            )
        if self.config.pooling not in (None, *POOLINGS):
            raise BadValue(
                f"config.task.pooling must be one of {POOLINGS} or None; got {self.config.pooling!r}."
            )
        if not 0.0 <= self.config.label_smoothing < 1.0:
            raise BadValue(
                f"config.task.label_smoothing must be in [0, 1); got {self.config.label_smoothing}."
            )
        self._metrics = {training: self._collection(training) for training in (False, True)}

    @classmethod
    def open_source(cls, data_cfg, task_cfg):
        """Multi-label: records with label lists (`vitjax.data.multilabel`); else the default."""
        if task_cfg.get("multilabel"):
            return open_multilabel(data_cfg)
        return super().open_source(data_cfg, task_cfg)

    def data_transforms(self, preprocessing, data_cfg) -> RecordTransforms:
        """Images with an int class "label" (every data knob), or with multi-label a multi-hot float
        "label" [C] (decode cache and device augmentation; no mixup)."""
        if self.config.multilabel:
            return multi_hot_transforms(preprocessing, data_cfg, self.num_classes)
        return image_label_transforms(preprocessing, data_cfg)

    @property
    def default_top_k(self) -> int:
        """The labels a prediction lists: `top_k`, or when 0 every label (at most `MAX_TOP_K`)."""
        return min(self.config.top_k or MAX_TOP_K, MAX_TOP_K)

    @property
    def _top_k(self) -> int:
        """k of the top-k accuracy metric, 0 when it is not computed."""
        k = self.config.top_k
        return k if (not self.config.multilabel and 0 < k < self.num_classes) else 0

    def make_head(self, spec: Any):
        from vitjax.models.heads import ClassificationHead  # The core room's head; HF export maps it.

        pooling = self.config.pooling or DEFAULT_POOLING[spec.family]
        return ClassificationHead(num_labels=self.num_classes, pooling=pooling)

    def head_from_checkpoint(self) -> tuple[str, ...]:
        """The classifier: the checkpoint loader (`vitjax.checkpoints.hf_load`) provides the
        checkpoint's classifier only when it was trained on this label set (same names, or generic
        LABEL_i names of the same count); other label sets start from zeros."""
        return (r"head/(distillation_)?classifier/.*",)

    def _targets(self, labels) -> jnp.ndarray:
        """Float [B, C] targets from int [B] labels or float [B, C] (soft or multi-hot) labels."""
        if labels.ndim == 1 and jnp.issubdtype(labels.dtype, jnp.integer):
            if self.config.multilabel:
                raise BadValue(
                    f"config.task.multilabel=True needs float multi-hot batch['label'] "
                    f"[B, {self.num_classes}]; got int labels of shape {labels.shape}."
                )
            return jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)
        if labels.shape[-1:] != (self.num_classes,):
            raise BadValue(
                f"batch['label'] has shape {labels.shape}; expected int [B] or float [B, {self.num_classes}]."
            )
        return labels.astype(jnp.float32)

    def _per_example_loss(self, logits, labels) -> jnp.ndarray:
        logits = logits.astype(jnp.float32)
        targets = self._targets(labels)
        eps = self.config.label_smoothing
        if self.config.multilabel:
            targets = targets * (1.0 - eps) + eps / 2.0
            return optax.sigmoid_binary_cross_entropy(logits, targets).mean(axis=-1)
        targets = targets * (1.0 - eps) + eps / self.num_classes
        return optax.softmax_cross_entropy(logits, targets)

    @staticmethod
    def _mask(batch: dict, batch_size: int) -> jnp.ndarray:
        valid = batch.get("valid")
        return jnp.ones((batch_size,), bool) if valid is None else jnp.asarray(valid, bool)

    def loss(self, outputs, batch: dict) -> tuple[jnp.ndarray, dict]:
        """Mean loss over valid rows (0 for a batch without any); aux: the per-example loss."""
        per_example = self._per_example_loss(outputs, batch["label"])
        valid = self._mask(batch, per_example.shape[0])
        total = jnp.sum(jnp.where(valid, per_example, 0.0))
        return total / jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32), {"loss": per_example}

    def metrics(self, training: bool = False) -> type[clu_metrics.Collection]:
        """Evaluation: loss, accuracy, top-k, confusion matrix (single-label) or per-label counts and
        the collected scores for average precision (multi-label). Training: loss, accuracy, top-k."""
        return self._metrics[training]

    def _collection(self, training: bool) -> type[clu_metrics.Collection]:
        fields: dict[str, type[clu_metrics.Metric]] = {"loss": clu_metrics.Average.from_output("loss")}
        if self.config.multilabel:
            fields["accuracy"] = clu_metrics.Average.from_fun(_exact_match)
            if not training:
                fields["label_counts"] = MultilabelCounts.of_size(self.num_classes)
                fields["scores"] = clu_metrics.CollectingMetric.from_outputs(("logits", "targets", "mask"))
        else:
            fields["accuracy"] = clu_metrics.Accuracy
            if self._top_k:
                fields[f"top{self._top_k}_accuracy"] = TopKAccuracy.of_k(self._top_k)
            if not training:
                fields["confusion_matrix"] = ConfusionMatrix.of_size(self.num_classes)
                # Per example (in the split's order): what the report's gallery of mistakes lists.
                fields["predictions"] = clu_metrics.CollectingMetric.from_outputs(
                    ("labels", "predicted", "probability", "mask"))
        return clu_metrics.Collection.create(**fields)

    def metric_inputs(self, outputs, batch: dict, aux: dict) -> dict[str, jnp.ndarray]:
        logits = outputs.astype(jnp.float32)
        labels = batch["label"]
        inputs = {
            "loss": aux["loss"],
            "logits": logits,
            "mask": self._mask(batch, logits.shape[0]),
        }
        if self.config.multilabel:
            inputs["targets"] = self._targets(labels)
        else:
            if labels.ndim == 1:
                inputs["labels"] = labels.astype(jnp.int32)
            else:  # Soft (mixup/cutmix) targets count as their strongest class.
                inputs["labels"] = jnp.argmax(labels, axis=-1).astype(jnp.int32)
            probabilities = jax.nn.softmax(logits, axis=-1)
            inputs["predicted"] = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            inputs["probability"] = jnp.max(probabilities, axis=-1)
        return inputs

    def _counts(self, computed: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-class (true positives, false positives, false negatives) of an evaluation."""
        if self.config.multilabel:
            counts = computed["label_counts"]
            keys = ("true_positives", "false_positives", "false_negatives")
            return tuple(np.asarray(counts[key]) for key in keys)
        matrix = np.asarray(computed["confusion_matrix"])
        true_positives = np.diag(matrix)
        return true_positives, matrix.sum(axis=0) - true_positives, matrix.sum(axis=1) - true_positives

    def _averages(self, per_class: dict[str, np.ndarray], counts: tuple) -> dict[str, dict[str, float]]:
        """Macro and weighted (single-label) or macro and micro (multi-label) precision, recall, F1."""
        macro = {stat: per_class[stat].mean() for stat in _STATS}
        if self.config.multilabel:
            return {"macro": macro, "micro": precision_recall_f1(*(np.sum(count) for count in counts))}
        support = per_class["support"]
        weights = support if support.sum() else None
        weighted = {stat: np.average(per_class[stat], weights=weights) for stat in _STATS}
        return {"macro": macro, "weighted": weighted}

    @staticmethod
    def _average_precision(computed: dict) -> np.ndarray | None:
        """Per-label average precision (NaN for labels without positives), None without scores."""
        scores = computed.get("scores")
        if not scores:
            return None
        valid = scores["mask"].astype(bool)
        targets = scores["targets"][valid] >= 0.5
        logits = scores["logits"][valid]
        from sklearn import metrics as sklearn_metrics  # ~1 s to import: not on the way to a first step

        return np.array([
            sklearn_metrics.average_precision_score(column, logits[:, i]) if column.any() else np.nan
            for i, column in enumerate(targets.T)
        ])

    def summarize(self, computed: dict) -> dict[str, float]:
        """loss, accuracy, top{k}_accuracy and, from an evaluation, macro_/weighted_ precision, recall
        and F1. Multi-label: loss, accuracy (exact match) and, from an evaluation, macro_/micro_
        precision, recall and F1 and mean_average_precision (over labels with positives)."""
        names = ["loss", "accuracy"] + ([f"top{self._top_k}_accuracy"] if self._top_k else [])
        summary = {name: float(computed[name]) for name in names}
        if "confusion_matrix" in computed or "label_counts" in computed:
            counts = self._counts(computed)
            for average, stats in self._averages(precision_recall_f1(*counts), counts).items():
                summary.update({f"{average}_{stat}": float(stats[stat]) for stat in _STATS})
        mean_average_precision = _nanmean(self._average_precision(computed))
        if mean_average_precision is not None:
            summary["mean_average_precision"] = mean_average_precision
        return summary

    def warnings(self, computed: dict) -> list[str]:
        """A collapse warning when one class takes at least `collapse_warning` of the predictions."""
        threshold = self.config.collapse_warning
        if threshold is None or "confusion_matrix" not in computed:
            return []
        matrix = np.asarray(computed["confusion_matrix"])
        total = matrix.sum()
        if total == 0:
            return []
        predicted = matrix.sum(axis=0)
        top = int(np.argmax(predicted))
        share = predicted[top] / total
        if share < threshold:
            return []
        true_share = matrix[top].sum() / total
        return [
            f"Predictions collapsed: {share:.0%} of {total} examples are predicted as "
            f"{self.class_names[top]!r} (its true share is {true_share:.0%}). The learning rate may be too "
            f"high (config.optim.lr), or the head is not training; set config.task.collapse_warning=None "
            f"to silence this."
        ]

    def per_class_rows(self, computed: dict) -> list[dict]:
        """The per-class table: one row per class, then the macro and weighted (or micro) averages."""
        counts = self._counts(computed)
        per_class = precision_recall_f1(*counts)
        rows = [
            {"class": name, **{stat: per_class[stat][i].item() for stat in (*_STATS, "support")}}
            for i, name in enumerate(self.class_names)
        ]
        average_precision = self._average_precision(computed)
        if average_precision is not None:
            for row, value in zip(rows, average_precision):
                row["average_precision"] = None if np.isnan(value) else float(value)
        total = int(per_class["support"].sum())
        mean_average_precision = _nanmean(average_precision)
        for average, stats in self._averages(per_class, counts).items():
            averaged = {stat: float(stats[stat]) for stat in _STATS}
            row = {"class": f"{average} avg", **averaged, "support": total}
            if average == "macro" and mean_average_precision is not None:
                row["average_precision"] = mean_average_precision
            rows.append(row)
        return rows

    @staticmethod
    def _mistakes(computed: dict, class_names: Sequence[str]) -> list[dict]:
        """The misclassified examples, most confident first: {"index" (the record's index in the
        split), "label", "predicted", "probability" (of the predicted class)}."""
        collected = computed["predictions"]
        valid = np.asarray(collected["mask"], bool)
        index = np.flatnonzero(valid & (collected["labels"] != collected["predicted"]))
        index = index[np.argsort(-collected["probability"][index], kind="stable")]
        return [{"index": int(i), "label": class_names[collected["labels"][i]],
                 "predicted": class_names[collected["predicted"][i]],
                 "probability": float(collected["probability"][i])} for i in index]

    def _multilabel_mistakes(self, computed: dict) -> list[dict]:
        """The examples whose predicted label set (probability >= 0.5) is not their true set, worst
        first (most wrong labels, then the largest summed |probability - target|): {"index", "labels"
        (true, in class order), "predicted" ([{"label", "probability"}], most probable first),
        "wrong" (labels wrong)}."""
        scores = computed["scores"]
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(scores["logits"], np.float64)))
        truth = np.asarray(scores["targets"]) >= 0.5
        predicted = probabilities >= MULTILABEL_THRESHOLD
        wrong = (predicted != truth).sum(axis=1)
        distance = np.abs(probabilities - truth).sum(axis=1)
        index = np.flatnonzero(np.asarray(scores["mask"], bool) & (wrong > 0))
        index = index[np.lexsort((-distance[index], -wrong[index]))]
        names = self.class_names
        return [{"index": int(i), "labels": [names[c] for c in np.flatnonzero(truth[i])],
                 "predicted": [{"label": names[c], "probability": float(probabilities[i, c])}
                               for c in np.flatnonzero(predicted[i])[np.argsort(-probabilities[i, predicted[i]],
                                                                                   kind="stable")]],
                 "wrong": int(wrong[i])} for i in index]

    def report(self, computed: dict, outdir: str | os.PathLike, split: str) -> dict:
        """Writes per_class.csv, per_class.md, report.json and (single-label) confusion_matrix.png
        under `outdir`; returns the report.json content, which lists the "mistakes" (`_mistakes`, or
        in multi-label mode `_multilabel_mistakes`; `report_sections` shows them)."""
        rows = self.per_class_rows(computed)
        summary = self.summarize(computed)
        result = {
            "split": split,
            "task": self.name,
            "metrics": summary,
            "per_class": rows,
            "class_names": self.class_names,
            "warnings": self.warnings(computed),
        }
        if self.config.multilabel:
            result["mistakes"] = self._multilabel_mistakes(computed)
        else:
            matrix = np.asarray(computed["confusion_matrix"])
            result["confusion_matrix"] = matrix.tolist()
            result["mistakes"] = self._mistakes(computed, self.class_names)
            Path(outdir).mkdir(parents=True, exist_ok=True)
            plot_confusion_matrix(matrix, self.class_names, Path(outdir) / "confusion_matrix.png",
                                  title=f"Confusion matrix ({split})")
        write_evaluation_report(outdir, split, summary, rows, result)
        return result

    def report_sections(self, report: dict) -> list[dict]:
        """The gallery of the split's mistakes, most confident first, then the most-confused class
        pairs (up to `CONFUSED_PAIRS`) with up to `PAIR_EXAMPLES` of their images each; multi-label:
        the gallery of the images whose predicted label set is wrong, true against predicted set,
        worst first (the per-class precision, recall, F1 and AP are in the common per-class table)."""
        if "mistakes" not in report:
            return []
        mistakes = report["mistakes"]
        if self.config.multilabel:
            def caption(m):
                predicted = [f"{p['label']} ({p['probability']:.0%})" for p in m["predicted"]]
                return (f"true: {', '.join(m['labels']) or '(none)'}\npredicted: "
                        f"{', '.join(predicted) or '(none)'}\nwrong labels: {m['wrong']}")

            return [{"title": f"Mistakes ({len(mistakes)})",
                     "text": "The images whose predicted label set (probability at least "
                             f"{MULTILABEL_THRESHOLD}) is not their true set, the most wrong labels first.",
                     "gallery": [{"index": m["index"], "caption": caption(m)} for m in mistakes]}]

        def entry(m):
            return {"index": m["index"],
                    "caption": f"true: {m['label']}\npredicted: {m['predicted']} ({m['probability']:.1%})"}

        sections = [{"title": f"Mistakes ({len(mistakes)})",
                     "text": "The images the model gets wrong, most confident first.",
                     "gallery": [entry(m) for m in mistakes]}]
        pairs: dict[tuple[str, str], list[dict]] = {}
        for m in mistakes:
            pairs.setdefault((m["label"], m["predicted"]), []).append(m)
        ranked = sorted(pairs.items(), key=lambda item: -len(item[1]))[:CONFUSED_PAIRS]
        for (true, predicted), examples in ranked:
            sections.append({"title": f"Confused: {true} taken for {predicted} ({len(examples)})",
                             "gallery": [entry(m) for m in examples[:PAIR_EXAMPLES]]})
        return sections

    def predict(self, outputs, top_k: int) -> dict[str, jnp.ndarray]:
        """The `top_k` most probable classes per image: {"indices": int [B, k], "probabilities": [B, k]}
        (softmax probabilities, or per-label sigmoid probabilities in multi-label mode)."""
        logits = outputs.astype(jnp.float32)
        probabilities = jax.nn.sigmoid(logits) if self.config.multilabel else jax.nn.softmax(logits, axis=-1)
        values, indices = jax.lax.top_k(probabilities, min(top_k, self.num_classes))
        return {"indices": indices, "probabilities": values}

    def prediction_records(self, predictions: dict, images, names, outdir) -> list[dict]:
        """{"label", "probability" (the best class), "top_k": [{"label", "probability"}, ...]} per
        image, best first; in multi-label mode "labels" (those of the top k at or above 0.5, best
        first) replaces "label" and "probability". Writes no files."""
        records = []
        for indices, values in zip(predictions["indices"], predictions["probabilities"]):
            top = [{"label": self.class_names[i], "probability": float(p)} for i, p in zip(indices, values)]
            if self.config.multilabel:
                chosen = [entry["label"] for entry in top if entry["probability"] >= MULTILABEL_THRESHOLD]
                records.append({"labels": chosen, "top_k": top})
            else:
                records.append({**top[0], "top_k": top})
        return records

    def hf_config(self) -> dict:
        """id2label/label2id and the problem type for transformers' *ForImageClassification config
        (the head's pooling picks the family's classifier class: `vitjax.trained.export_format`)."""
        return {
            "id2label": dict(enumerate(self.class_names)),
            "label2id": {name: i for i, name in enumerate(self.class_names)},
            "problem_type": f"{'multi' if self.config.multilabel else 'single'}_label_classification",
        }
