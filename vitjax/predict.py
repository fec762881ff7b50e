"""Prediction on image files: folders expanded, batches through the model, a table and JSON."""

from __future__ import annotations

import json
import os

from vitjax.data.folders import IMAGE_EXTENSIONS
from vitjax.errors import BadValue


def expand_inputs(inputs: list[str]) -> list[str]:
    """Image paths from files and folders (folders walked recursively, sorted)."""
    if not inputs:
        raise BadValue("--inputs is empty: pass image files and/or folders, comma-separated.")
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, files in sorted(os.walk(item)):
                paths += [os.path.join(root, f) for f in sorted(files)
                          if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"--inputs: {item!r} is neither a file nor a folder.")
    if not paths:
        raise BadValue(f"--inputs {inputs} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
    return paths


def predict_files(model_dir: str, inputs: list[str], top_k: int, output: str | None) -> list[dict]:
    """Top-k labels with probabilities for every image; prints a table, writes JSON if asked."""
    from vitjax.api import load_pretrained

    classifier = load_pretrained(model_dir)
    paths = expand_inputs(inputs)
    results = [{"file": path, "predictions": [{"label": l, "probability": p} for l, p in preds]}
               for path, preds in zip(paths, classifier.predict(paths, top_k=top_k))]
    width = max(len(r["file"]) for r in results)
    for r in results:
        shown = "  ".join(f"{p['label']} {p['probability']:.3f}" for p in r["predictions"])
        print(f"{r['file']:<{width}}  {shown}")
    if output:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results
