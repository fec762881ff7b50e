"""Calibration of a classifier's probabilities: expected calibration error, NLL, Brier score, the
reliability diagram, and temperature scaling (Guo et al., 2017).

Single-label: the probabilities are the softmax of logits / T; ECE bins the top-class confidence
into equal-width bins (lower, upper] and averages |accuracy - mean confidence| weighted by bin size;
the Brier score is the mean over examples of the squared error summed over classes (Brier, 1950).
Multi-label: every (example, label) pair is one binary forecast with the sigmoid probability; ECE
bins those probabilities against the observed frequency of the label. Host-side numpy and scipy.
"""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure
from scipy import optimize, special

from vitjax.report import save_figure

BINS = 15


def _forecasts(logits: np.ndarray, labels: np.ndarray, temperature: float):
    """(confidence [N], outcome in {0, 1} [N], per-forecast NLL [N], per-example Brier [M])."""
    scaled = np.asarray(logits, np.float64) / temperature
    if labels.ndim == 2:  # multi-hot
        targets = np.asarray(labels, np.float64)
        p = special.expit(scaled)
        nll = np.logaddexp(0, scaled) - targets * scaled  # sigmoid cross-entropy, stable
        return p.ravel(), targets.ravel(), nll.ravel(), ((p - targets) ** 2).ravel()
    log_p = special.log_softmax(scaled, axis=-1)
    p = np.exp(log_p)
    rows = np.arange(len(labels))
    onehot = np.zeros_like(p)
    onehot[rows, labels] = 1.0
    correct = (p.argmax(axis=-1) == labels).astype(np.float64)
    return p.max(axis=-1), correct, -log_p[rows, labels], ((p - onehot) ** 2).sum(axis=-1)


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray, bins: int = BINS) -> list[dict]:
    """One dict per equal-width bin (lower, upper]: count, mean confidence, observed accuracy."""
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        chosen = index == b
        count = int(chosen.sum())
        rows.append({"lower": b / bins, "upper": (b + 1) / bins, "count": count,
                     "confidence": float(confidence[chosen].mean()) if count else None,
                     "accuracy": float(outcome[chosen].mean()) if count else None})
    return rows


def expected_calibration_error(bins: list[dict]) -> float:
    total = sum(row["count"] for row in bins)
    return float(sum(row["count"] / total * abs(row["accuracy"] - row["confidence"])
                     for row in bins if row["count"]))


def calibration(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                bins: int = BINS) -> dict:
    """{"ece", "nll", "brier", "temperature", "bins"} of logits [N, C] against int labels [N] (or
    multi-hot [N, C]) after dividing the logits by `temperature`."""
    confidence, outcome, nll, brier = _forecasts(logits, labels, temperature)
    table = reliability_bins(confidence, outcome, bins)
    return {"ece": expected_calibration_error(table), "nll": float(nll.mean()),
            "brier": float(brier.mean()), "temperature": float(temperature), "bins": table}


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] minimising the NLL of `labels` (fit on a validation split)."""
    def nll(log_t):
        return _forecasts(logits, labels, float(np.exp(log_t)))[2].mean()

    result = optimize.minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                                      options={"xatol": 1e-6})
    return float(np.exp(result.x))


def plot_reliability(curves: dict[str, dict], path: str | os.PathLike) -> None:
    """Reliability diagram into `path` (PNG): per curve ("before", "after temperature scaling")
    accuracy against mean confidence per bin, the diagonal being perfect calibration, each point
    marked with its bin's count; below, the counts per bin as bars. Empty bins get no point (a line
    drawn through them to 0 would read as a miscalibrated bin), so a sparse test split shows only the
    bins it fills."""
    fig = Figure(figsize=(5, 6.5), layout="tight")
    ax, counts = fig.subplots(2, 1, gridspec_kw={"height_ratios": (3, 1)})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    width = 1.0 / len(next(iter(curves.values()))["bins"]) / (len(curves) + 1)
    for k, (name, result) in enumerate(curves.items()):
        filled = [row for row in result["bins"] if row["count"]]
        line, = ax.plot([row["confidence"] for row in filled], [row["accuracy"] for row in filled],
                        marker="o", label=f"{name} (ECE {result['ece']:.3f})")
        for row in filled:
            ax.annotate(str(row["count"]), (row["confidence"], row["accuracy"]), textcoords="offset points",
                        xytext=(0, 6 if k % 2 == 0 else -12), ha="center", fontsize=7, color=line.get_color())
        counts.bar([row["lower"] + (k + 0.5) * width for row in filled], [row["count"] for row in filled],
                   width=width, align="edge", color=line.get_color(), label=name)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.08, 1.08)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram ({len(next(iter(curves.values()))['bins'])} bins)\n"
                 f"beside each point: the forecasts in its bin", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    counts.set_xlim(-0.02, 1.02)
    counts.set_xlabel("confidence")
    counts.set_ylabel("forecasts")
    counts.grid(alpha=0.3, axis="y")
    save_figure(fig, path)
