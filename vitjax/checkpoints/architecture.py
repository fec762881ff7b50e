"""A model's architecture (`ViTSpec`) and preprocessing (`Preprocessing`) as plain JSON fields and back,
losslessly: every field of both, for every family (a transformers `config.json` or
`preprocessor_config.json` holds only what transformers reads, and drops e.g. SigLIP's MAP pooling or
timm's aspect-keeping resize). vitjax's own files keep them this way: a run's `model.json` (what the
run resolved from its base checkpoint) and `vitjax_model.json` (`native.py`).
"""
from __future__ import annotations

import dataclasses

from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.errors import BadValue
from vitjax.models.vit import ViTSpec


def to_fields(spec: ViTSpec, preprocessing: Preprocessing) -> dict:
    """{"spec": ..., "preprocessing": ...}: JSON-able, read back by `from_fields`."""
    pre = dataclasses.asdict(preprocessing)
    pre["resample"] = int(pre["resample"])
    return {"spec": dataclasses.asdict(spec), "preprocessing": pre}


def from_fields(fields: dict, path: str) -> tuple[ViTSpec, Preprocessing]:
    """The spec and preprocessing of `to_fields`' dict, read from the file `path` (named in errors)."""
    return _build(ViTSpec, fields, "spec", path), _build(Preprocessing, fields, "preprocessing", path)


def _build(cls, fields: dict, key: str, path: str):
    known = {f.name for f in dataclasses.fields(cls)}
    values = fields.get(key)
    if not isinstance(values, dict) or set(values) - known:
        unknown = sorted(set(values) - known) if isinstance(values, dict) else values
        raise BadValue(f"{path}: {key!r} is not a vitjax {cls.__name__} (unexpected: {unknown!r}); the file "
                       f"was written by another vitjax version or edited: write it again with this one.")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except (TypeError, ValueError) as e:
        raise BadValue(f"{path}: {key!r} does not describe a model ({e}); write the file again.") from None
