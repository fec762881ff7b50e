"""The robustness report's files: report.json, report.md, the corruption heat map and the
reliability diagram under `<workdir>/robustness/`, and a short robustness table in the model card.

Relative drop = (clean - mean corrupted) / clean of the task's metric. Against a baseline run's
report (`--robustness.baseline`), with errors E = 1 - metric: mCE = mean over corruptions of
sum_s E(c, s) / sum_s E_base(c, s), and relative mCE = mean over corruptions of
sum_s (E(c, s) - E_clean) / sum_s (E_base(c, s) - E_base_clean) (Hendrycks & Dietterich, 2019).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from vitjax import storage
from vitjax.errors import BadValue
from vitjax.robustness.calibration import plot_reliability
from vitjax.report import format_table, save_figure
from vitjax.workdir import Workdir

CARD_HEADING = "## Robustness"


def summarize(result: dict, mode: str) -> dict:
    """Headline numbers: clean, mean corrupted, relative drop, worst corruption, strongest attacks."""
    metric = result["metric"]
    clean = result["clean"][metric]
    summary = {"clean": clean}
    table = result["corruptions"]
    if table:
        means = {name: float(np.mean(list(row.values()))) for name, row in table.items()}
        summary["mean_corrupted"] = float(np.mean(list(means.values())))
        summary["relative_drop"] = (clean - summary["mean_corrupted"]) / clean if clean else None
        summary["worst_corruption"] = (min if mode == "max" else max)(means, key=means.get)
    for attack, row in result.get("attacks", {}).items():
        for epsilon, value in row.items():
            summary[f"{attack}_eps{epsilon}"] = value
    for when, values in result.get("calibration", {}).items():
        summary[f"ece_{when}"] = values["ece"]
    return summary


def baseline_report(baseline_workdir: str) -> tuple[str, dict]:
    """(path, content) of the baseline run's report.json; a missing one names the command."""
    path = storage.join(Workdir(baseline_workdir).robustness, "report.json")
    if not storage.isfile(path):
        raise FileNotFoundError(f"--robustness.baseline: {path} does not exist; run "
                                f"`python -m vitjax.main --mode robustness --workdir "
                                f"{baseline_workdir}` first.")
    return path, json.loads(storage.read_text(path))


def against_baseline(result: dict, baseline_workdir: str) -> dict:
    """mCE and relative mCE of this report's corruption errors against the baseline run's."""
    path, base = baseline_report(baseline_workdir)
    metric = result["metric"]
    if base["metric"] != metric or base["split"] != result["split"]:
        raise BadValue(f"the baseline report {path} measures {base['metric']!r} on split "
                       f"{base['split']!r}; this one {metric!r} on {result['split']!r}.")
    ce, relative = {}, {}
    clean_error, base_clean_error = 1 - result["clean"][metric], 1 - base["clean"][metric]
    for name, row in result["corruptions"].items():
        shared = [s for s in row if s in base["corruptions"].get(name, {})]
        if not shared:
            continue
        errors = np.array([1 - row[s] for s in shared])
        base_errors = np.array([1 - base["corruptions"][name][s] for s in shared])
        ce[name] = float(errors.sum() / base_errors.sum()) if base_errors.sum() > 0 else None
        gap = (base_errors - base_clean_error).sum()
        relative[name] = float((errors - clean_error).sum() / gap) if gap > 0 else None
    missing = sorted(set(result["corruptions"]) - set(ce))
    if missing:
        raise BadValue(f"the baseline report {path} lacks the corruptions {missing}.")

    def mean(values):
        values = [v for v in values.values() if v is not None]
        return float(np.mean(values)) if values else None

    return {"workdir": baseline_workdir, "mce": mean(ce), "relative_mce": mean(relative),
            "ce": ce, "relative_ce": relative}


def plot_heatmap(result: dict, path) -> None:
    """Corruption x severity heat map of the task's metric, each cell annotated."""
    table = result["corruptions"]
    names = list(table)
    severities = list(next(iter(table.values())))
    values = np.array([[table[n][s] for s in severities] for n in names])
    fig = Figure(figsize=(2 + 0.8 * len(severities), 1.2 + 0.4 * len(names)), layout="tight")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=max(1.0, float(values.max())),
                      aspect="auto")
    fig.colorbar(image, ax=ax, label=result["metric"])
    ax.set_xticks(range(len(severities)), labels=severities)
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("severity")
    ax.set_ylabel("corruption")
    ax.set_title(f"{result['metric']} under corruption (clean {result['clean'][result['metric']]:.3f})")
    for i in range(len(names)):
        for j in range(len(severities)):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if values[i, j] < 0.5 else "black")
    save_figure(fig, path)


def _rows(table: dict, key: str) -> list[dict]:
    return [{key: name, **row, "mean": float(np.mean(list(row.values())))}
            for name, row in table.items()]


def _number(value, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(result: dict) -> str:
    metric, summary = result["metric"], result["summary"]
    lines = [f"# Robustness report: {result['split']} split of {result['data_source']} "
             f"({result['images']} images)", "", f"Model: `{result['model']}`; task "
             f"{result['task']}; metric: {metric}.", "",
             f"Clean {metric}: {summary['clean']:.4f}"]
    if result["corruptions"]:
        lines += [f"Mean {metric} over {len(result['corruptions'])} corruptions x severities: "
                  f"{summary['mean_corrupted']:.4f} (relative drop "
                  f"{_number(summary['relative_drop'], '.1%')}; worst: {summary['worst_corruption']})",
                  "",
                  "## Common corruptions (ImageNet-C, at the model's input resolution)", "",
                  *([f"ImageNet-C's constants assume ~224 px images; at "
                     f"{'x'.join(map(str, result['input_size']))} px the blurs, frost and fog weigh "
                     f"more.", ""] if min(result["input_size"]) < 160 else []),
                  format_table(_rows(result["corruptions"], "corruption"), markdown=True)]
    if "baseline" in result:
        b = result["baseline"]
        lines += ["", f"Against the baseline `{b['workdir']}`: mCE {_number(b['mce'])}, relative "
                  f"mCE {_number(b['relative_mce'])}"]
    if "attacks" in result:
        eps = list(result["attacks"]["fgsm"])
        rows = [{"epsilon (/255)": e, "FGSM": result["attacks"]["fgsm"][e],
                 f"PGD-{result['options']['pgd_steps']}": result["attacks"]["pgd"][e]} for e in eps]
        lines += ["", f"## Adversarial {metric} (pixel space, clean {summary['clean']:.4f})", "",
                  format_table(rows, markdown=True)]
    if "calibration" in result:
        rows = [{"": "before" if when == "before" else "after temperature scaling (fit on validation)",
                 "ECE": v["ece"], "NLL": v["nll"], "Brier": v["brier"], "temperature": v["temperature"]}
                for when, v in result["calibration"].items()]
        bins = result["options"]["calibration_bins"]
        lines += ["", f"## Calibration ({bins}-bin ECE)", "", format_table(rows, markdown=True)]
    if "cross_domain" in result:
        c = result["cross_domain"]
        lines += ["", f"## Cross-domain: {c['source']} ({c['images']} images)", "",
                  f"Model classes missing from the source: {c['missing_in_source'] or 'none'}; "
                  f"source classes unknown to the model (dropped): {c['unknown_to_model'] or 'none'}",
                  "", format_table([c["metrics"]], markdown=True)]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in result["timings_s"].items())
    lines += ["", f"Wall time of the report: {result['wall_time_s']:.1f} s ({parts})"]
    return "\n".join(lines) + "\n"


def write(result: dict, outdir: str) -> None:
    """report.json, report.md, corruption_heatmap.png and reliability_diagram.png under `outdir`."""
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    Path(outdir, "report.md").write_text(markdown(result), encoding="utf-8")
    if result["corruptions"]:
        plot_heatmap(result, os.path.join(outdir, "corruption_heatmap.png"))
    if "calibration" in result:
        plot_reliability({"before" if k == "before" else "after temperature scaling": v
                          for k, v in result["calibration"].items()},
                         os.path.join(outdir, "reliability_diagram.png"))


def add_to_model_card(result: dict, model_dir: str) -> None:
    """Adds (or replaces) a short robustness table at the end of `model_dir/README.md`."""
    path = storage.join(model_dir, "README.md")
    card = storage.read_text(path)
    card = card.split(f"\n{CARD_HEADING}\n")[0].rstrip("\n")
    summary, metric = result["summary"], result["metric"]
    rows = [{"measure": f"clean {metric}", "value": summary["clean"]}]
    if "mean_corrupted" in summary:
        severities = len(next(iter(result["corruptions"].values())))
        rows.append({"measure": f"mean {metric}, {len(result['corruptions'])} corruptions x "
                                f"{severities} severities", "value": summary["mean_corrupted"]})
    for attack in ("fgsm", "pgd"):
        row = result.get("attacks", {}).get(attack)
        if row:
            epsilon = list(row)[-1]
            rows.append({"measure": f"{attack.upper()} {metric}, eps {epsilon}/255", "value": row[epsilon]})
    for when, values in result.get("calibration", {}).items():
        rows.append({"measure": f"ECE ({when} temperature scaling)", "value": values["ece"]})
    text = (f"\n\n{CARD_HEADING}\n\nOn the {result['split']} split ({result['images']} images); the "
            f"full report is `robustness/report.md` in the run directory.\n\n"
            f"{format_table(rows, markdown=True)}\n")
    storage.write_text(path, card + text)
