"""Calibration metrics against hand-computed values and scikit-learn's NLL and Brier score."""
import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from vitjax.robustness import calibration


def test_ece_nll_brier_by_hand():
    # Probabilities are softmax(log p): 4 examples, 2 classes.
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    result = calibration.calibration(np.log(p), labels, bins=15)
    # Confidences 0.9, 0.6, 0.7, 0.8 fall in 4 different bins; correct: yes, no, yes, yes.
    # ECE = (|1-0.9| + |0-0.6| + |1-0.7| + |1-0.8|) / 4 = 1.2 / 4.
    assert result["ece"] == pytest.approx(0.3)
    assert result["nll"] == pytest.approx(-(np.log(0.9) + np.log(0.4) + np.log(0.7) + np.log(0.8)) / 4)
    assert result["brier"] == pytest.approx((2 * 0.1**2 + 2 * 0.6**2 + 2 * 0.3**2 + 2 * 0.2**2) / 4)
    assert sum(row["count"] for row in result["bins"]) == 4


def test_against_sklearn_and_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4)) * 3
    labels = rng.integers(0, 4, size=500)
    result = calibration.calibration(logits, labels, temperature=2.0)
    probs = np.exp(logits / 2) / np.exp(logits / 2).sum(-1, keepdims=True)
    assert result["nll"] == pytest.approx(log_loss(labels, probs, labels=range(4)), rel=1e-9)
    assert result["brier"] == pytest.approx(
        brier_score_loss(labels, probs, labels=range(4), scale_by_half=False), rel=1e-9)


def test_temperature_scaling_recovers_the_true_temperature():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 5)) * 4
    probs = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(-1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in probs])  # drawn at temperature 2.5
    t = calibration.fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    assert calibration.calibration(logits, labels, t)["ece"] < calibration.calibration(logits, labels)["ece"]


def test_multilabel_forecasts():
    logits = np.log(np.array([[0.8, 0.3], [0.4, 0.9]]) / (1 - np.array([[0.8, 0.3], [0.4, 0.9]])))
    targets = np.array([[1.0, 0.0], [1.0, 1.0]])
    result = calibration.calibration(logits, targets)
    # Forecasts 0.8->1, 0.3->0, 0.4->1, 0.9->1, each alone in its bin.
    assert result["ece"] == pytest.approx((0.2 + 0.3 + 0.6 + 0.1) / 4)
    assert result["brier"] == pytest.approx((0.04 + 0.09 + 0.36 + 0.01) / 4)
    assert result["nll"] == pytest.approx(
        log_loss(targets.ravel(), np.array([0.8, 0.3, 0.4, 0.9])), rel=1e-9)


def test_reliability_diagram_skips_empty_bins_and_shows_their_counts(tmp_path):
    """The issue's sparse test split: 4 forecasts in 3 of 15 bins. The curve has a point per filled
    bin only (it once dropped to 0 through the empty ones), each marked with its count, and the bars
    below carry the counts; the figure's axes are labelled (`figure_checks`)."""
    from figure_checks import problems, recorded_figures

    p = np.array([[0.9, 0.1], [0.92, 0.08], [0.6, 0.4], [0.3, 0.7]])
    result = calibration.calibration(np.log(p), np.array([0, 1, 1, 1]), bins=15)
    filled = [row for row in result["bins"] if row["count"]]
    assert [row["count"] for row in filled] == [1, 1, 2]
    with recorded_figures() as saved:
        calibration.plot_reliability({"before": result}, tmp_path / "reliability.png")
    figure = saved[str(tmp_path / "reliability.png")]
    assert not problems(figure)
    curve, bars = figure.axes
    line = curve.get_lines()[1]  # [0]: the diagonal
    np.testing.assert_allclose(line.get_xdata(), [row["confidence"] for row in filled])
    np.testing.assert_allclose(line.get_ydata(), [row["accuracy"] for row in filled])
    assert [text.get_text() for text in curve.texts] == ["1", "1", "2"]
    assert [patch.get_height() for patch in bars.patches] == [1, 1, 2]
