"""The model a run resolved from its base checkpoint — architecture, preprocessing, which checkpoint —
recorded in the workdir as `model.json` when training starts, so that the modes after training rebuild
it from the workdir alone (export from the orbax checkpoints on a machine without the hub or the base
folder). Training is the only mode that reads the base checkpoint.
"""
from __future__ import annotations

import json

from vitjax import storage
from vitjax.checkpoints import architecture
from vitjax.files import read_json
from vitjax.workdir import MODEL

MODEL_FILE = MODEL


def write(workdir: str, spec, preprocessing, base: str) -> str:
    """Writes `<workdir>/model.json` (atomically: a crash leaves the previous one or none)."""
    path = storage.join(workdir, MODEL_FILE)
    storage.write_text(path, json.dumps({"base_checkpoint": base, **architecture.to_fields(spec, preprocessing)},
                                        indent=2))
    return path


def read(workdir: str):
    """(spec, preprocessing) of `<workdir>/model.json`; None when the workdir has none (a run trained
    before vitjax recorded it)."""
    path = storage.join(workdir, MODEL_FILE)
    if not storage.isfile(path):
        return None
    return architecture.from_fields(read_json(path, "train the run again to rewrite it"), path)
