"""The run on one page: `<workdir>/report.html`, written at the end of training and refreshed by
`--mode evaluate` and `--mode robustness`.

One self-contained file (inline CSS, images inlined as base64 data URIs, no script, no network): it
opens from disk anywhere. It shows what the workdir already holds — the summary (base checkpoint,
data, split sizes, recipe, best step, runtime: results.json, config.json, data_split.json), the
learning curves, and per evaluated split (`Workdir.reports`: validation, the test split, evaluate's
eval_<split>/) its metrics, per-class table and confusion matrix from report.json — then the task's
own sections (`Task.report_sections`: classification's gallery of mistakes, most confident first,
and its most-confused pairs; multi-label's images with a wrong label set, true against predicted;
segmentation's sample overlays and detection's sample boxes, each with a legend), whose gallery
thumbnails are read from the split's records (an entry may add an image of its own beside the
thumbnail); then the robustness report's headline numbers, heat map and reliability diagram when
`--mode robustness` ran. Host-side only; process 0 writes it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from vitjax import storage
from vitjax.files import write_text
from vitjax.workdir import Workdir

log = logging.getLogger(__name__)

# At most this many thumbnails per gallery (the section's title still counts them all), and their side.
MAX_GALLERY = 500
THUMBNAIL = 96

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.figure { max-width: 100%; }
.gallery { display: flex; flex-wrap: wrap; gap: .6em; }
.gallery figure { margin: 0; width: 120px; font-size: .75em; }
.gallery img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
               background: #eee; display: block; }
.gallery figure:has(img.extra) { width: 460px; }
.gallery img.extra { width: 352px; height: auto; }
.gallery img.extra { display: inline-block; margin-left: 4px; }
.gallery figure:has(img.extra) img { display: inline-block; }
.gallery figcaption { white-space: pre-line; overflow-wrap: anywhere; }
.file { color: #555; }
"""


def write(workdir: Workdir, task: Any, dataset: Any, test_split: str | None, trained: Any = None) -> str:
    """Writes `<workdir>/report.html` from the workdir's files; `task`: the run's task (its
    `report_sections`), `dataset`: the run's `ImageDataset` (the records the galleries show);
    `test_split`: config.train.test_split; `trained`: the `TrainedModel` evaluated (evaluate,
    robustness), whose maps of what it looks at the galleries then show
    (`vitjax.explain.gallery_overlays`). Returns the page's path."""
    body = [_summary(workdir)]
    if storage.isfile(workdir.learning_curves):
        body.append(f"<h2>Learning curves</h2>\n{_image_file(workdir.learning_curves)}")
    for folder in workdir.reports(test_split):
        body.append(_split_report(folder, task, dataset, trained))
    body.append(_robustness(workdir.robustness))
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>vitjax run: {_text(storage.basename(storage.absolute(workdir.path)))}</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
    write_text(workdir.report_html, page)
    log.info("the run's report page: %s", workdir.report_html)
    return workdir.report_html


# ---- the common parts -----------------------------------------------------------------------------

def _read(path: str) -> dict:
    """A JSON file of the workdir, or {} when it is not there (a part the run has not written)."""
    try:
        return json.loads(storage.read_text(path))
    except (OSError, ValueError):
        return {}


def _summary(workdir: Workdir) -> str:
    results, config, split = _read(workdir.results), _read(workdir.config), _read(workdir.split)
    train, optim = config.get("train", {}), config.get("optim", {})
    sizes = ", ".join(f"{name} {part.get('size')}" for name, part in split.get("splits", {}).items())
    runtime = results.get("runtime_s")
    rows = {
        "task": config.get("task", {}).get("name"),
        "base checkpoint": results.get("base_checkpoint"),
        "data": results.get("data_source") or split.get("source"),
        "classes": len(split["class_names"]) if split.get("class_names") else None,
        "split sizes": sizes or None,
        "recipe": (f"{train.get('epochs')} epochs, batch {train.get('batch_size')}, "
                   f"{optim.get('name')} lr {optim.get('lr')}" if train else None),
        "best step": (f"{results['best_step']} (epoch {results['best_epoch']:.2f})"
                      if "best_step" in results else None),
        "steps": results.get("steps"),
        "runtime": f"{runtime:.1f} s" if runtime is not None else None,
        "devices": results.get("devices"),
    }
    table = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in rows.items()
                    if v is not None)
    title = storage.basename(storage.absolute(workdir.path))
    return f"<h1>vitjax run: {_text(title)}</h1>\n<h2>Summary</h2>\n<table id=\"summary\">{table}</table>"


def _split_report(folder: str, task: Any, dataset: Any, trained: Any = None) -> str:
    report = _read(storage.join(folder, "report.json"))
    name = storage.basename(folder)
    split = report.get("split", name)
    title = f"evaluate: {split}" if name.startswith("eval_") else split
    parts = [f"<section id=\"{_text(name)}\">\n<h2>{_text(title)}</h2>"]
    if report.get("metrics"):
        parts.append("<h3>Metrics</h3>" + _table([{"metric": k, "value": v}
                                                  for k, v in report["metrics"].items()]))
    if report.get("per_class"):
        parts.append("<h3>Per class</h3>" + _table(report["per_class"]))
    for warning in report.get("warnings", []):
        parts.append(f"<p><strong>warning:</strong> {_text(warning)}</p>")
    matrix = storage.join(folder, "confusion_matrix.png")
    if storage.isfile(matrix):
        parts.append(f"<h3>Confusion matrix</h3>{_image_file(matrix)}")
    records = dataset.splits.get(split) if dataset is not None else None
    sections = task.report_sections(report) if report else []
    if trained is not None:
        from vitjax.explain import gallery_overlays
        sections = gallery_overlays(trained, sections, records, folder)
    for section in sections:
        parts.append(_section(section, folder, records))
    return "\n".join(parts) + "\n</section>"


def _robustness(folder: str) -> str:
    """`--mode robustness`'s headline numbers and its plots, when it ran."""
    result = _read(storage.join(folder, "report.json"))
    if not result:
        return ""
    parts = [f"<section id=\"robustness\">\n<h2>Robustness ({_text(result.get('split'))}, "
             f"{_text(result.get('metric'))})</h2>"]
    summary = result.get("summary", {})
    parts.append(_table([{"measure": k, "value": v} for k, v in summary.items()]))
    for plot in ("corruption_heatmap.png", "reliability_diagram.png"):
        if storage.isfile(storage.join(folder, plot)):
            parts.append(_image_file(storage.join(folder, plot)))
    return "\n".join(parts) + "\n</section>"


def _section(section: Mapping[str, Any], folder: str, records: Any) -> str:
    """A task's section: title, text, figures (PNG files of its report folder), gallery."""
    parts = [f"<h3>{_text(section['title'])}</h3>"]
    if section.get("text"):
        parts.append(f"<p>{_text(section['text'])}</p>")
    for figure in section.get("figures", ()):
        parts.append(_image_file(storage.join(folder, figure)))
    gallery = list(section.get("gallery", ()))
    if gallery:
        if len(gallery) > MAX_GALLERY:
            parts.append(f"<p>The first {MAX_GALLERY} of {len(gallery)} are shown.</p>")
        ids = records.ids() if records is not None else None
        figures = [_thumbnail(entry, records, ids, folder) for entry in gallery[:MAX_GALLERY]]
        parts.append(f"<div class=\"gallery\">{''.join(figures)}</div>")
    return "\n".join(parts)


def _thumbnail(entry: Mapping[str, Any], records: Any, ids: Sequence | None, folder: str) -> str:
    """One gallery entry: the record's image (a thumbnail), the entry's extra "image" when it has one
    (a PNG beside report.json, e.g. a map of what the model looked at), its file name and the caption."""
    index = entry["index"]
    name = str(ids[index]) if ids is not None else f"#{index}"
    image = ""
    if records is not None:
        from vitjax.data.transforms import load_rgb
        try:
            picture = load_rgb(records[index]["image"], records.describe(index))
            picture.thumbnail((THUMBNAIL, THUMBNAIL))
            image = f"<img alt=\"{_text(name)}\" src=\"{_png_uri(picture)}\">"
        except (OSError, ValueError) as error:  # the data moved since the run: the caption stays
            log.warning("report page: no thumbnail of %s: %s", name, error)
    if entry.get("image"):
        image += (f"<img class=\"extra\" alt=\"{_text(entry['image'])}\" "
                  f"src=\"{_png_uri_of_file(storage.join(folder, entry['image']))}\">")
    return (f"<figure data-index=\"{int(index)}\">{image}<figcaption><span class=\"file\">{_text(name)}"
            f"</span>\n{_text(entry.get('caption', ''))}</figcaption></figure>")


# ---- html helpers ---------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"<td class=\"num\">{value:.4f}</td>"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"<td class=\"num\">{value}</td>"
    return f"<td>{'' if value is None else _text(value)}</td>"


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{_text(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image_file(path: str) -> str:
    return f"<img class=\"figure\" alt=\"{_text(storage.basename(path))}\" src=\"{_png_uri_of_file(path)}\">"


def _png_uri_of_file(path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(storage.read_bytes(path)).decode("ascii")


def _png_uri(picture) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
