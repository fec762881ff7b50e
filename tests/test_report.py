"""Tests of the shared run outputs: plots are written, tables line up, the model card is complete."""
import numpy as np
import pytest

from vitjax.report import format_table, plot_confusion_matrix, plot_learning_curves, write_model_card


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_learning_curves_are_written(tmp_path):
    history = [
        {"epoch": epoch, "train/loss": 1.0 / epoch, "val/loss": 1.2 / epoch,
         "train/accuracy": 0.5 + 0.1 * epoch, "val/accuracy": 0.45 + 0.1 * epoch, "lr": 1e-4}
        for epoch in range(1, 4)
    ]
    plot_learning_curves(history, tmp_path / "learning_curves.png")
    assert_png(tmp_path / "learning_curves.png")


def test_learning_curves_need_values(tmp_path):
    with pytest.raises(ValueError, match="train/loss"):
        plot_learning_curves([{"epoch": 1, "lr": 0.1}], tmp_path / "empty.png")


def test_confusion_matrix_plot(tmp_path):
    matrix = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    plot_confusion_matrix(matrix, ["angular_leaf_spot", "bean_rust", "healthy"], tmp_path / "cm.png")
    assert_png(tmp_path / "cm.png")
    many = np.random.default_rng(0).integers(0, 5, size=(40, 40))
    plot_confusion_matrix(many, [f"c{i}" for i in range(40)], tmp_path / "many.png")
    assert_png(tmp_path / "many.png")
    with pytest.raises(ValueError, match="3 class names"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a", "b", "c"], tmp_path / "bad.png")


def test_format_table_console_and_markdown():
    rows = [{"class": "cat", "f1": 0.5, "support": 10}, {"class": "hippopotamus", "f1": 0.25}]
    assert format_table(rows).splitlines() == [
        "class         f1      support",
        "------------  ------  -------",
        "cat           0.5000  10",
        "hippopotamus  0.2500",
    ]
    markdown = format_table(rows, columns=["class", "f1"], markdown=True).splitlines()
    assert markdown == [
        "| class        | f1     |",
        "|--------------|--------|",
        "| cat          | 0.5000 |",
        "| hippopotamus | 0.2500 |",
    ]


def test_model_card(tmp_path):
    path = write_model_card(tmp_path, {
        "base_checkpoint": "google/vit-base-patch16-224-in21k",
        "dataset": "hf:beans",
        "class_names": ["angular_leaf_spot", "bean_rust", "healthy"],
        "metrics": {"val": {"accuracy": 0.97}, "test": {"accuracy": 0.96, "macro_f1": 0.95}},
        "training": {"epochs": 4, "lr": 3e-5},
        "command": "python -m vitjax.main --config configs/beans.py --workdir runs/beans",
    })
    card = path.read_text()
    assert path.name == "README.md"
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: image-classification\n")
    assert "base_model: google/vit-base-patch16-224-in21k" in card
    assert "datasets:\n- beans" in card
    assert "| test  | 0.9600   | 0.9500   |" in card
    assert "| 4      | 3e-05 |" in card
    assert "python -m vitjax.main --config configs/beans.py" in card
    assert "`bean_rust`" in card


def test_model_card_leaves_local_paths_out_of_the_metadata(tmp_path):
    card = write_model_card(tmp_path, {
        "base_checkpoint": str(tmp_path),
        "dataset": "folder:/data/roughness",
        "metrics": {"test": {"accuracy": 0.9}},
    }).read_text()
    assert "base_model:" not in card and "datasets:" not in card
