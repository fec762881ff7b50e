"""Run outputs shared by all tasks: learning-curve and confusion-matrix plots, text/Markdown tables,
and the model card written next to the exported Hugging Face model. Host-side only (numpy,
matplotlib); nothing here touches JAX. Figures are drawn on `matplotlib.figure.Figure` objects, which
render with Agg without pyplot, so importing this module never changes the user's matplotlib backend.
matplotlib is imported by the plotting functions, at the end of a run, not on the way to its first step.
Every figure vitjax writes goes through `save_figure`: labelled axes, or a legend where it shows
classes, is the rule the tests check there.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vitjax.errors import BadValue
from vitjax.files import write_text, writing

# Confusion matrices up to this many classes get a count written in each cell.
_ANNOTATE_MAX_CLASSES = 30
# The examples a dense task's report draws (the first ones of the split: `vitjax.metrics.FirstExamples`).
SAMPLES = 6


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> None:
    """Writes the matplotlib `fig` to `path` (PNG), atomically (`vitjax.files.writing`): the one
    place a vitjax figure becomes a file."""
    with writing(path) as partial:
        fig.savefig(partial, dpi=dpi)


def class_colours(count: int) -> np.ndarray:
    """float [count, 3] RGB colours (0..1) of classes in pictures (mask overlays, drawn boxes):
    matplotlib's tab20, repeated."""
    import matplotlib

    return np.asarray(matplotlib.colormaps["tab20"](np.arange(count) % 20))[:, :3]


def plot_learning_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    metrics: Sequence[str] = ("loss", "accuracy"),
) -> None:
    """Plots one panel per metric with one line per split, against the epoch, into `path` (PNG).

    `history` holds one dict per epoch with an "epoch" key and values keyed "<split>/<metric>",
    e.g. {"epoch": 3, "train/loss": 0.41, "val/loss": 0.52, "val/accuracy": 0.87}. Metrics with no
    value in any epoch get no panel; a history without any of `metrics` is an error.
    """
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for entry in history:
        for key, value in entry.items():
            split, _, metric = key.rpartition("/")
            if split and metric in metrics and value is not None:
                xs, ys = series.setdefault(metric, {}).setdefault(split, ([], []))
                xs.append(entry["epoch"])
                ys.append(float(value))
    if not series:
        raise BadValue(
            f"plot_learning_curves: no '<split>/<metric>' values for metrics {list(metrics)} in the history "
            f"({len(history)} epochs); each entry needs e.g. 'train/loss' and an 'epoch'."
        )
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = [metric for metric in metrics if metric in series]
    fig = Figure(figsize=(5 * len(panels), 4), layout="tight")
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        for split, (xs, ys) in sorted(series[metric].items()):
            ax.plot(xs, ys, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = "Confusion matrix"
) -> None:
    """Plots a [C, C] count matrix (rows: true class, columns: predicted class) into `path` (PNG),
    coloured by the row-normalised rate, with the class names on both axes."""
    matrix = np.asarray(matrix)
    num_classes = len(class_names)
    if matrix.shape != (num_classes, num_classes):
        raise BadValue(
            f"plot_confusion_matrix: matrix has shape {matrix.shape} but there are {num_classes} class names."
        )
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.4 * num_classes, 40)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size + 1, size), layout="tight")
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = np.arange(num_classes)
    fontsize = 10 if num_classes <= _ANNOTATE_MAX_CLASSES else 6
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(ticks, labels=class_names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if num_classes <= _ANNOTATE_MAX_CLASSES:
        for i in range(num_classes):
            for j in range(num_classes):
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=colour, fontsize=8)
    save_figure(fig, path)


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    markdown: bool = False,
    float_format: str = ".4f",
) -> str:
    """Formats dict rows as an aligned console table (or a Markdown table with `markdown=True`).

    `columns` defaults to the keys in order of first appearance; a missing value prints empty and
    floats use `float_format`.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, (float, np.floating)):
            return format(float(value), float_format)
        return str(value)

    body = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(line[i]) for line in body]) for i, column in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        padded = [text.ljust(width) for text, width in zip(cells, widths)]
        return f"| {' | '.join(padded)} |" if markdown else "  ".join(padded).rstrip()

    rule = (
        "|" + "|".join("-" * (width + 2) for width in widths) + "|"
        if markdown
        else "  ".join("-" * width for width in widths)
    )
    return "\n".join([line(list(columns)), rule, *(line(cells) for cells in body)])


def write_evaluation_report(outdir: str | os.PathLike, split: str, summary: Mapping[str, float],
                            rows: Sequence[Mapping[str, Any]], result: Mapping[str, Any]) -> Path:
    """Writes a task's evaluation report under `outdir`: per_class.csv (`rows`), per_class.md (the
    `summary` metrics, then `rows`) and report.json (`result`); returns `outdir`."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with writing(outdir / "per_class.csv") as partial, open(partial, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)
    metric_rows = [{"metric": key, "value": value} for key, value in summary.items()]
    write_text(outdir / "per_class.md", f"# {split} evaluation\n\n{format_table(metric_rows, markdown=True)}\n\n"
                                        f"{format_table(rows, markdown=True)}\n")
    write_text(outdir / "report.json", json.dumps(result, indent=2) + "\n")
    return outdir


def write_model_card(directory: str | os.PathLike, info: Mapping[str, Any]) -> Path:
    """Writes `directory/README.md`, the Hugging Face model card of an exported model.

    `info` keys (all optional except "metrics"): "base_checkpoint" (hub id or folder), "dataset"
    (the data source string; an "hf:<id>" source is listed as the card's dataset),
    "task" (e.g. "image-classification"), "class_names", "metrics" (split -> {name: value}),
    "training" (hyper-parameters shown as a table), "command" (the command that trained it).
    """
    base = info.get("base_checkpoint")
    dataset = info.get("dataset")
    task = info.get("task", "image-classification")
    metrics: Mapping[str, Mapping[str, float]] = info["metrics"]
    front = ["---", "library_name: transformers", f"pipeline_tag: {task}"]
    front += ["tags:", "- vision", f"- {task}", "- vitjax"]
    if base and _is_hub_id(base):
        front.append(f"base_model: {base}")
    if dataset and dataset.startswith("hf:"):
        front += ["datasets:", f"- {dataset.removeprefix('hf:')}"]
    front.append("---")

    title = f"{base} fine-tuned" if base else "Vision Transformer"
    lines = [*front, "", f"# {title}" + (f" on {dataset}" if dataset else ""), ""]
    lines.append(
        f"{'Fine-tuned' if base else 'Trained from scratch'} with vitjax (JAX/Flax) and exported in Hugging Face "
        "format, so it loads in `transformers`."
    )
    names = info.get("class_names")
    if names:
        lines += ["", f"Classes ({len(names)}): " + ", ".join(f"`{name}`" for name in names)]
    lines += ["", "## Results", ""]
    rows = [{"split": split, **values} for split, values in metrics.items()]
    lines.append(format_table(rows, markdown=True))
    training = info.get("training")
    if training:
        lines += ["", "## Training", "", format_table([dict(training)], markdown=True, float_format="g")]
    if info.get("command"):
        lines += ["", "Reproduce with:", "", "```bash", info["command"], "```"]
    if task == "image-classification":
        lines += [
            "",
            "## Use",
            "",
            "```python",
            "from transformers import pipeline",
            "",
            'classifier = pipeline("image-classification", model="path/to/this/folder")',
            'print(classifier("image.jpg"))',
            "```",
        ]
    path = Path(directory) / "README.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def _is_hub_id(name: str) -> bool:
    """True for a Hugging Face hub id ("owner/name" or "name"), false for a local path."""
    return not os.path.exists(name) and name.count("/") <= 1 and not name.startswith((".", "/", "~"))
