"""Tests of the classification plugin: losses against numpy/optax references and clu metrics against
scikit-learn, with padded rows, batch merging, multi-label mode, the report files and predictions."""
import functools
import json
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import metrics as skm

from vitjax.metrics import ConfusionMatrix
from vitjax import registry

registry.load_plugins()


def make_task(num_classes=6, **knobs):
    config = registry.task_config("classification")
    config.update(knobs)
    return registry.get_task("classification")(config, [f"class_{i}" for i in range(num_classes)])


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def run_metrics(task, batches):
    """Merges the jitted per-batch metric updates of `batches` [(logits, batch), ...] and computes."""
    collection = task.metrics()

    @jax.jit
    def step(outputs, batch):
        return collection.single_from_model_output(**task.metric_inputs(outputs, batch, task.loss(outputs, batch)[1]))

    merged = collection.empty()
    for logits, batch in batches:
        merged = merged.merge(step(logits, batch))
    return merged.compute()


def padded_batches(logits, labels, batch_size, rng):
    """Splits examples into batches; the last one is padded with garbage rows marked invalid."""
    batches = []
    for start in range(0, len(labels), batch_size):
        chunk_logits, chunk_labels = logits[start:start + batch_size], labels[start:start + batch_size]
        pad = batch_size - len(chunk_labels)
        valid = np.arange(batch_size) < len(chunk_labels)
        chunk_logits = np.concatenate([chunk_logits, 50 * rng.normal(size=(pad, *logits.shape[1:]))])
        garbage = rng.integers(0, 2, size=(pad, *labels.shape[1:])) if labels.ndim > 1 else np.zeros(pad)
        chunk_labels = np.concatenate([chunk_labels, garbage]).astype(labels.dtype)
        batches.append((chunk_logits.astype(np.float32), {"label": chunk_labels, "valid": valid}))
    return batches


def test_loss_matches_numpy_with_smoothing_and_ignores_padding():
    rng = np.random.default_rng(0)
    task = make_task(num_classes=5, label_smoothing=0.1)
    logits = rng.normal(size=(8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=8).astype(np.int32)
    valid = np.array([True] * 6 + [False] * 2)
    logits[6:] = np.nan  # Padded rows must not leak into the loss, even as NaN.
    targets = np.eye(5)[labels] * 0.9 + 0.1 / 5
    expected = -(targets * log_softmax(logits))[:6].sum(axis=-1).mean()
    loss, aux = task.loss(jnp.asarray(logits), {"label": labels, "valid": valid})
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # aux: the per-example loss the metrics reuse (padding rows are the metrics' mask to drop).
    np.testing.assert_allclose(aux["loss"][:6], -(targets * log_softmax(logits))[:6].sum(axis=-1), rtol=1e-5)


def test_soft_targets_match_optax():
    rng = np.random.default_rng(1)
    task = make_task(num_classes=4, label_smoothing=0.2)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    soft = rng.dirichlet(np.ones(4), size=6).astype(np.float32)  # As mixup/cutmix produce.
    expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(soft, 0.2)).mean()
    loss, _ = task.loss(logits, {"label": soft})
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_multilabel_loss_matches_numpy_bce():
    rng = np.random.default_rng(2)
    task = make_task(num_classes=3, multilabel=True, label_smoothing=0.1)
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=(5, 3)).astype(np.float32)
    valid = np.array([True, True, True, False, True])
    targets = labels * 0.9 + 0.05
    probabilities = 1 / (1 + np.exp(-logits))
    bce = -(targets * np.log(probabilities) + (1 - targets) * np.log(1 - probabilities))
    loss, _ = task.loss(logits, {"label": labels, "valid": valid})
    np.testing.assert_allclose(loss, bce[valid].mean(), rtol=1e-5)


def test_multilabel_rejects_int_labels():
    task = make_task(num_classes=3, multilabel=True)
    with pytest.raises(ValueError, match="multi-hot"):
        task.loss(jnp.zeros((2, 3)), {"label": np.array([0, 1], np.int32)})


def test_metrics_match_sklearn_with_padded_batches():
    rng = np.random.default_rng(3)
    num_classes, n = 7, 53
    logits = rng.normal(size=(n, num_classes)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=n).astype(np.int32)
    logits[np.arange(n) % 3 == 0, labels[np.arange(n) % 3 == 0]] += 3.0  # Better than chance.
    task = make_task(num_classes)
    computed = run_metrics(task, padded_batches(logits, labels, 16, rng))
    predicted = logits.argmax(axis=-1)

    everything = range(num_classes)
    np.testing.assert_array_equal(
        computed["confusion_matrix"], skm.confusion_matrix(labels, predicted, labels=everything)
    )
    summary = task.summarize(computed)
    assert summary["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert summary["top5_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(labels, logits, k=5, labels=everything)
    )
    expected_loss = -log_softmax(logits)[np.arange(n), labels].mean()
    assert summary["loss"] == pytest.approx(expected_loss, rel=1e-5)
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            labels, predicted, labels=everything, average=average, zero_division=0
        )
        assert summary[f"{average}_precision"] == pytest.approx(precision)
        assert summary[f"{average}_recall"] == pytest.approx(recall)
        assert summary[f"{average}_f1"] == pytest.approx(f1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=everything, zero_division=0
    )
    rows = task.per_class_rows(computed)
    assert [row["class"] for row in rows] == [*task.class_names, "macro avg", "weighted avg"]
    np.testing.assert_allclose([row["precision"] for row in rows[:num_classes]], precision)
    np.testing.assert_allclose([row["recall"] for row in rows[:num_classes]], recall)
    np.testing.assert_allclose([row["f1"] for row in rows[:num_classes]], f1)
    assert [row["support"] for row in rows[:num_classes]] == support.tolist()


def test_merged_batches_equal_one_big_batch_and_device_reduce():
    rng = np.random.default_rng(4)
    task = make_task(num_classes=6)
    logits = rng.normal(size=(20, 6)).astype(np.float32)
    labels = rng.integers(0, 6, size=20).astype(np.int32)
    halves = [(logits[:10], {"label": labels[:10]}), (logits[10:], {"label": labels[10:]})]
    merged = run_metrics(task, halves)
    whole = run_metrics(task, [(logits, {"label": labels})])
    collection = task.metrics()
    per_device = [collection.single_from_model_output(**task.metric_inputs(o, b, task.loss(o, b)[1])) for o, b in halves]
    reduced = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *per_device).reduce().compute()
    for computed in (merged, reduced):
        assert computed.keys() == whole.keys()
        for name in whole:  # the collected per-example predictions too, in the examples' order
            jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6), computed[name], whole[name])


def test_soft_labels_count_as_their_strongest_class():
    task = make_task(num_classes=3)
    logits = np.array([[3.0, 0, 0], [0, 3.0, 0]], np.float32)
    soft = np.array([[0.7, 0.3, 0.0], [0.6, 0.4, 0.0]], np.float32)
    computed = run_metrics(task, [(logits, {"label": soft})])
    assert float(computed["accuracy"]) == 0.5
    np.testing.assert_array_equal(computed["confusion_matrix"], [[1, 1, 0], [0, 0, 0], [0, 0, 0]])


def test_top_k_only_with_more_classes_than_k():
    assert "top5_accuracy" not in make_task(num_classes=5).summarize(
        run_metrics(make_task(num_classes=5), [(np.eye(5, dtype=np.float32), {"label": np.arange(5)})])
    )
    assert "top5_accuracy" not in make_task(num_classes=6, top_k=0).metrics().__annotations__
    assert "top3_accuracy" in make_task(num_classes=6, top_k=3).metrics().__annotations__


def test_multilabel_metrics_match_sklearn():
    rng = np.random.default_rng(5)
    num_labels, n = 5, 37
    targets = rng.integers(0, 2, size=(n, num_labels)).astype(np.float32)
    logits = (rng.normal(size=(n, num_labels)) + 2.5 * (targets - 0.5)).astype(np.float32)
    task = make_task(num_labels, multilabel=True)
    computed = run_metrics(task, padded_batches(logits, targets, 8, rng))
    predicted = (logits >= 0).astype(int)
    summary = task.summarize(computed)
    assert summary["accuracy"] == pytest.approx(skm.accuracy_score(targets, predicted))
    for average in ("micro", "macro"):
        assert summary[f"{average}_f1"] == pytest.approx(
            skm.f1_score(targets, predicted, average=average, zero_division=0)
        )
        assert summary[f"{average}_precision"] == pytest.approx(
            skm.precision_score(targets, predicted, average=average, zero_division=0)
        )
    assert summary["mean_average_precision"] == pytest.approx(
        skm.average_precision_score(targets, logits, average="macro")
    )
    _, recall, _, support = skm.precision_recall_fscore_support(targets, predicted, zero_division=0)
    rows = task.per_class_rows(computed)
    np.testing.assert_allclose([row["recall"] for row in rows[:num_labels]], recall)
    assert [row["support"] for row in rows[:num_labels]] == support.tolist()
    np.testing.assert_allclose(
        [row["average_precision"] for row in rows[:num_labels]],
        skm.average_precision_score(targets, logits, average=None),
    )
    assert task.warnings(computed) == []


def test_training_metrics_are_the_cheap_subset():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(12, 6)).astype(np.float32)
    labels = rng.integers(0, 6, size=12).astype(np.int32)
    task = make_task(num_classes=6)
    collection = task.metrics(training=True)
    computed = collection.single_from_model_output(**task.metric_inputs(logits, {"label": labels}, task.loss(logits, {"label": labels})[1])).compute()
    assert set(task.summarize(computed)) == {"loss", "accuracy", "top5_accuracy"}
    assert task.warnings(computed) == []
    multilabel = make_task(num_classes=3, multilabel=True)
    assert set(multilabel.metrics(training=True).__annotations__) == {"loss", "accuracy"}


def test_confusion_matrix_counts_pixels_and_skips_the_ignore_index():
    rng = np.random.default_rng(9)
    num_classes = 4
    logits = rng.normal(size=(3, 5, 5, num_classes)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=(3, 5, 5)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.2] = 255
    valid = np.array([True, False, True])
    metric = ConfusionMatrix.of_size(num_classes)

    @jax.jit
    def count(logits, labels, mask):
        return metric.from_model_output(logits=logits, labels=labels, mask=mask)

    counts = count(logits, labels, valid)
    kept = (labels != 255) & valid[:, None, None]
    expected = skm.confusion_matrix(labels[kept], logits.argmax(-1)[kept], labels=range(num_classes))
    np.testing.assert_array_equal(counts.compute(), expected)


def test_collapse_warning():
    task = make_task(num_classes=4)
    labels = np.arange(20, dtype=np.int32) % 4
    collapsed = np.tile(np.array([0, 0, 5.0, 0], np.float32), (20, 1))
    (warning,) = task.warnings(run_metrics(task, [(collapsed, {"label": labels})]))
    assert "100% of 20 examples are predicted as 'class_2'" in warning
    assert "true share is 25%" in warning
    healthy = np.eye(4, dtype=np.float32)[labels]
    assert task.warnings(run_metrics(task, [(healthy, {"label": labels})])) == []
    quiet = make_task(num_classes=4, collapse_warning=None)
    assert quiet.warnings(run_metrics(quiet, [(collapsed, {"label": labels})])) == []


def test_report_writes_tables_json_and_confusion_plot(tmp_path):
    rng = np.random.default_rng(6)
    task = make_task(num_classes=4)
    logits = rng.normal(size=(30, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=30).astype(np.int32)
    computed = run_metrics(task, [(logits, {"label": labels})])
    result = task.report(computed, tmp_path / "test", "test")
    written = json.loads((tmp_path / "test" / "report.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert written["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(labels, logits.argmax(-1)))
    assert np.sum(written["confusion_matrix"]) == 30
    csv_lines = (tmp_path / "test" / "per_class.csv").read_text().splitlines()
    assert csv_lines[0] == "class,precision,recall,f1,support" and len(csv_lines) == 1 + 4 + 2
    assert "| class_3 " in (tmp_path / "test" / "per_class.md").read_text()
    png = (tmp_path / "test" / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_report_lists_the_mistakes_most_confident_first_without_padding(tmp_path):
    rng = np.random.default_rng(11)
    task = make_task(num_classes=4)
    logits = rng.normal(size=(23, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=23).astype(np.int32)
    result = task.report(run_metrics(task, padded_batches(logits, labels, 8, rng)), tmp_path, "test")
    probabilities = np.exp(log_softmax(logits.astype(np.float64)))
    wrong = np.flatnonzero(logits.argmax(-1) != labels)
    expected = sorted(wrong, key=lambda i: -probabilities[i].max())
    assert [m["index"] for m in result["mistakes"]] == expected and len(expected) > 3
    for mistake in result["mistakes"]:
        i = mistake["index"]
        assert (mistake["label"], mistake["predicted"]) == (f"class_{labels[i]}", f"class_{logits[i].argmax()}")
        assert mistake["probability"] == pytest.approx(probabilities[i].max(), rel=1e-5)
    section, *pairs = task.report_sections(result)
    assert section["title"] == f"Mistakes ({len(expected)})"
    assert [entry["index"] for entry in section["gallery"]] == expected
    # The most-confused pairs: the largest off-diagonal cells of the confusion matrix, their images.
    matrix = np.array(result["confusion_matrix"])
    np.fill_diagonal(matrix, 0)
    assert [int(p["title"].rsplit("(", 1)[1][:-1]) for p in pairs] == sorted(matrix.ravel())[::-1][:3]
    for pair in pairs:
        true, predicted = pair["title"].removeprefix("Confused: ").split(" (")[0].split(" taken for ")
        shown = [m for m in result["mistakes"] if (m["label"], m["predicted"]) == (true, predicted)]
        assert [e["index"] for e in pair["gallery"]] == [m["index"] for m in shown][:6]
    assert task.report_sections({"metrics": {}}) == []


def test_multilabel_report_has_average_precision(tmp_path):
    rng = np.random.default_rng(10)
    task = make_task(num_classes=3, multilabel=True)
    targets = rng.integers(0, 2, size=(10, 3)).astype(np.float32)
    targets[:, 2] = 0  # A label without positives has no average precision.
    logits = rng.normal(size=(10, 3)).astype(np.float32)
    result = task.report(run_metrics(task, [(logits, {"label": targets})]), tmp_path, "val")
    assert [row["class"] for row in result["per_class"]] == [*task.class_names, "macro avg", "micro avg"]
    assert result["per_class"][2]["average_precision"] is None
    assert result["metrics"]["mean_average_precision"] == pytest.approx(
        skm.average_precision_score(targets[:, :2], logits[:, :2], average="macro")
    )
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["per_class.csv", "per_class.md", "report.json"]


def test_hf_config():
    config = make_task(num_classes=3).hf_config()
    assert config["id2label"] == {0: "class_0", 1: "class_1", 2: "class_2"}
    assert config["label2id"]["class_2"] == 2
    assert config["problem_type"] == "single_label_classification"
    multilabel = make_task(num_classes=3, multilabel=True).hf_config()
    assert multilabel["problem_type"] == "multi_label_classification"


def test_invalid_knobs_are_rejected():
    with pytest.raises(ValueError, match="at least 2 classes"):
        make_task(num_classes=1)
    with pytest.raises(ValueError, match="config.task.pooling"):
        make_task(pooling="max")
    with pytest.raises(ValueError, match="config.task.label_smoothing"):
        make_task(label_smoothing=1.5)


def test_make_head_maps_backbone_outputs_to_logits():
    pytest.importorskip("vitjax.models.heads")
    rng = np.random.default_rng(7)
    outputs = {
        "tokens": jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32),
        "cls": jnp.asarray(rng.normal(size=(2, 8)), jnp.float32),
        "patches": jnp.asarray(rng.normal(size=(2, 2, 2, 8)), jnp.float32),
    }
    for family in ("vit", "dinov2"):
        head = make_task(num_classes=3).make_head(types.SimpleNamespace(family=family))
        params = head.init(jax.random.key(0), outputs)
        assert head.apply(params, outputs).shape == (2, 3)


def test_make_head_builds_the_classification_head_with_the_family_pooling(monkeypatch):
    built = []

    class StandInHead:
        """Records how the plugin builds vitjax.models.heads.ClassificationHead."""

        def __init__(self, num_labels, pooling):
            built.append((num_labels, pooling))

    stand_in = types.SimpleNamespace(ClassificationHead=StandInHead)
    monkeypatch.setitem(sys.modules, "vitjax.models.heads", stand_in)
    make_task(num_classes=3).make_head(types.SimpleNamespace(family="vit"))
    make_task(num_classes=3).make_head(types.SimpleNamespace(family="dinov2"))
    make_task(num_classes=4, pooling="cls_distillation").make_head(types.SimpleNamespace(family="deit"))
    assert built == [(3, "cls"), (3, "cls_mean"), (4, "cls_distillation")]


def test_a_jitted_loop_over_the_interface_learns():
    """Trains a linear stand-in head on separable features using only the Task interface."""
    rng = np.random.default_rng(11)
    task = make_task(num_classes=3, label_smoothing=0.1)
    centers = rng.normal(size=(3, 8)) * 3
    labels = rng.integers(0, 3, size=96).astype(np.int32)
    features = (centers[labels] + rng.normal(size=(96, 8))).astype(np.float32)
    head = nn.Dense(3)
    params = head.init(jax.random.key(0), features[:1])
    optimizer = optax.adam(0.05)
    state = optimizer.init(params)

    @jax.jit
    def train_step(params, state, batch):
        def loss_fn(params):
            outputs = head.apply(params, batch["features"])
            return task.loss(outputs, batch)[0], outputs

        (_, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, state = optimizer.update(grads, state)
        update = task.metrics(training=True).single_from_model_output(**task.metric_inputs(outputs, batch, task.loss(outputs, batch)[1]))
        return optax.apply_updates(params, updates), state, update

    history = []
    for _ in range(5):
        merged = task.metrics(training=True).empty()
        for start in range(0, 96, 32):
            batch = {"features": features[start:start + 32], "label": labels[start:start + 32]}
            params, state, update = train_step(params, state, batch)
            merged = merged.merge(jax.device_get(update))
        history.append(task.summarize(merged.compute()))
    assert history[-1]["loss"] < history[0]["loss"]
    computed = run_metrics(task, [(head.apply(params, features), {"label": labels})])
    assert task.summarize(computed)["accuracy"] > 0.9
    assert task.warnings(computed) == []
