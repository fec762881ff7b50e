"""From a checkpoint's tensors to vitjax params, whatever the format: `Source` (what a format reader found)
-> `assemble` -> `Checkpoint` (float32 params `{"backbone": ..., "head": ...}`, labels, preprocessing).

`assemble` decides the head: kept when the checkpoint has one for the requested label set, else freshly
initialised (zeros) for the new label set, with a warning naming those tensors, as transformers does.
The trainer passes `fill_head=False`: it gets only the tensors read from the checkpoint, and its task's
head keeps its own initialisation wherever the task takes no checkpoint tensor
(`Task.head_from_checkpoint`). Another
`image_size` resizes the position embeddings with the family's own interpolation. `to_tensors` is the
inverse of the row conversion, for exports (fused tensors such as timm's qkv are concatenated back).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from vitjax.checkpoints.hf_names import KINDS, Kind, Row
from vitjax.checkpoints.posemb import resize_posemb
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.errors import BadKey, BadValue
from vitjax.models.model import build_model, param_shapes
from vitjax.models.vit import ViTSpec

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Source:
    """A checkpoint as its format reader found it, before the head is decided."""

    spec: ViTSpec
    tensors: dict[str, np.ndarray]
    weights: str  # the weights file, for messages
    backbone_rows: list[Row]
    head_pooling: str | None  # the pooling of the checkpoint's classifier, None if it has none
    head_rows: list[Row]  # that classifier's rows
    labels: dict[int, str] | None  # the checkpoint's id2label (None: generic names)
    default_pooling: str  # the head a new label set gets
    preprocessing: Preprocessing
    architecture: str  # the classification class a new head belongs to, for the warning
    strict: bool = False  # unmapped backbone tensors are an error (timm: an unsupported variant)


@dataclasses.dataclass
class Checkpoint:
    """Everything a loader read: architecture, head pooling, float32 params, labels, preprocessing."""

    spec: ViTSpec
    pooling: str
    params: dict
    id2label: dict[int, str] | None  # None only with fill_head=False: no head and no labels asked
    preprocessing: Preprocessing
    initialised: list[str]  # Flax paths of tensors not taken from the checkpoint


def kind_of(row: Row) -> Kind:
    return KINDS[row.kind] if isinstance(row.kind, str) else row.kind


def part_of(value: np.ndarray, row: Row) -> np.ndarray:
    if row.part is None:
        return value
    index, count = row.part
    return np.split(value, count, axis=0)[index]


def convert(rows: list[Row], source: Source, expected: dict) -> dict[str, np.ndarray]:
    """Checkpoint tensors -> {flax path: float32 array} through the rows, checking names and shapes."""
    params = {}
    spec = source.spec
    for row in rows:
        if row.hf not in source.tensors:
            raise BadKey(f"{source.weights} has no tensor {row.hf!r} (needed for {row.flax}); the file does not "
                         f"match its config ({spec.family}, {spec.num_layers} layers, qkv_bias={spec.qkv_bias}). "
                         "Re-save the checkpoint with its library's own save function.")
        value = kind_of(row).to_flax(part_of(source.tensors[row.hf].astype(np.float32), row))
        if row.flax not in expected or value.shape != expected[row.flax].shape:
            want = tuple(expected[row.flax].shape) if row.flax in expected else "no such parameter"
            raise BadValue(f"{source.weights}: tensor {row.hf!r} has shape {tuple(source.tensors[row.hf].shape)}, "
                           f"which does not fit {row.flax} {want} implied by the config; fix the config "
                           "(hidden_size, patch_size, image_size, ...) or the file.")
        params[row.flax] = np.ascontiguousarray(value)
    return params


def to_tensors(rows: list[Row], flat: dict) -> dict[str, np.ndarray]:
    """{flax path: array} -> checkpoint tensors through the rows (the inverse of `convert`)."""
    parts: dict[str, list] = {}
    for row in rows:
        if row.flax not in flat:
            raise KeyError(f"params have no {row.flax!r} (exported as {row.hf!r}); do they belong to this "
                           "architecture and head?")
        value = kind_of(row).to_hf(np.asarray(flat[row.flax], dtype=np.float32))
        index, count = row.part or (0, 1)
        parts.setdefault(row.hf, [None] * count)[index] = value
    return {name: np.ascontiguousarray(np.concatenate(values, axis=0) if len(values) > 1 else values[0])
            for name, values in parts.items()}


def _target_labels(ckpt_labels: dict[int, str] | None, num_labels: int | None,
                   id2label: dict | None) -> dict[int, str] | None:
    """The label set asked for: id2label if given, else num_labels generic names, else the checkpoint's."""
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)
                                   or num_labels < 1):
        raise BadValue(f"num_labels={num_labels!r}: a classifier needs at least one label; pass a whole "
                       f"number >= 1 (or id2label).")
    if id2label is not None:
        if not id2label:
            raise BadValue("id2label is empty: a classifier needs at least one label.")
        id2label = {int(k): str(v) for k, v in id2label.items()}
        if sorted(id2label) != list(range(len(id2label))):
            raise BadValue(f"id2label keys must be 0..{len(id2label) - 1}, got {sorted(id2label)}")
        if num_labels is not None and num_labels != len(id2label):
            raise BadValue(f"num_labels={num_labels} conflicts with id2label, which has {len(id2label)} "
                           "labels; pass only id2label (num_labels is then its length).")
        return id2label
    if num_labels is not None:
        if ckpt_labels is not None and len(ckpt_labels) == num_labels:
            return ckpt_labels
        return {i: f"LABEL_{i}" for i in range(num_labels)}
    return ckpt_labels


def _choose_head(source: Source, num_labels, id2label, name,
                 need_labels: bool = True) -> tuple[str, dict[int, str] | None, bool]:
    """(pooling, id2label, keep_head): keep the checkpoint's head for the requested label set.
    Without `need_labels`, a checkpoint without a head and no labels asked for gives id2label None."""
    ckpt_labels = None
    if source.head_pooling is not None:
        bias = next(r for r in source.head_rows if r.flax == "classifier/bias")
        head_size = part_of(source.tensors[bias.hf], bias).shape[0]
        ckpt_labels = source.labels or {}
        if ckpt_labels and len(ckpt_labels) != head_size and num_labels is None and id2label is None:
            raise BadValue(f"{name}: its config.json names {len(ckpt_labels)} classes but the classifier head in "
                           f"{source.weights} has {head_size} outputs; fix the class names there (id2label, timm's "
                           "label_names), or pass id2label= (or num_labels=) for the classes you want.")
        if len(ckpt_labels) != head_size:
            ckpt_labels = {i: f"LABEL_{i}" for i in range(head_size)}
    labels = _target_labels(ckpt_labels, num_labels, id2label)
    if labels is None and need_labels:
        raise BadValue(f"{name} has no classification head (its weights hold only the backbone); pass "
                       "num_labels=... or id2label={0: 'cat', ...} to add a new head.")
    # Keep the checkpoint's head for the same label set; a head of the right size whose classes
    # have other names (e.g. digits 0-4 -> 5-9) knows nothing of the new classes: start afresh.
    same_size = source.head_pooling is not None and labels is not None and len(labels) == len(ckpt_labels)
    generic = ckpt_labels is not None and all(v == f"LABEL_{k}" for k, v in ckpt_labels.items())
    keep_head = same_size and (id2label is None or generic or labels == ckpt_labels)
    if keep_head and labels != ckpt_labels and need_labels:  # else the caller's task decides on the head
        log.warning("%s: keeping the checkpoint's trained head of %d classes, its generic labels %s "
                    "renamed to %s; pass id2label of another size (or train) for a fresh head.",
                    name, len(labels), list(ckpt_labels.values())[:3], list(labels.values())[:3])
    pooling = source.head_pooling if keep_head else source.default_pooling
    return pooling, labels, keep_head


def assemble(source: Source, name, num_labels: int | None = None, id2label: dict | None = None,
             image_size: int | tuple[int, int] | None = None, fill_head: bool = True) -> Checkpoint:
    """The `Checkpoint` for the requested label set and image size; see the module docstring.
    `fill_head=False`: `params` hold only the tensors read from the checkpoint (no new head, no
    warning; `initialised` still lists what a classifier would lack) and no label set is required."""
    spec = source.spec
    pooling, labels, keep_head = _choose_head(source, num_labels, id2label, name, need_labels=fill_head)
    rows = [dataclasses.replace(r, flax="backbone/" + r.flax) for r in source.backbone_rows]
    if keep_head:
        rows += [dataclasses.replace(r, flax="head/" + r.flax) for r in source.head_rows]
    used = {r.hf for r in rows} | {r.hf for r in source.head_rows}
    ignored = sorted(set(source.tensors) - used)
    if ignored and source.strict:
        raise BadValue(f"{source.weights} holds tensors vitjax cannot map ({ignored[:8]}{' ...' if len(ignored) > 8 else ''}): "
                       f"an unsupported {spec.family} variant (qk-norm, SwiGLU, RMSNorm, ...).")
    if ignored:
        log.info("ignored %d tensors of %s not used by vitjax: %s", len(ignored), source.weights, ignored)

    model = build_model(spec, len(labels or [None]), pooling)
    expected = flatten_dict(param_shapes(model, spec), sep="/")
    params = convert(rows, source, expected)

    initialised = sorted(path for path in expected if path not in params)
    missing = [path for path in initialised if not path.startswith("head/")]
    if missing:
        raise BadValue(f"{source.weights} lacks the backbone parameters {missing}; the checkpoint does not "
                       f"match its config ({spec.family}).")
    if fill_head:
        for path in initialised:  # a new head starts at zero (as big_vision); HF draws N(0, 0.02)
            params[path] = np.zeros(expected[path].shape, np.float32)
    if initialised and fill_head:
        log.warning("Some weights of %s were not initialized from the checkpoint at %s and are newly "
                    "initialized for %d labels: %s. Train this model on a down-stream task before using it "
                    "for predictions.", source.architecture, name, len(labels), initialised)

    preprocessing = source.preprocessing
    if image_size is not None:
        new_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if new_size != spec.image_size:
            new_spec = spec.replace(image_size=new_size)
            key = "backbone/embeddings/position_embeddings"
            params[key] = resize_posemb(params[key], spec.num_posemb_prefix, spec.grid, new_spec.grid,
                                        spec.posemb_interpolation)
            spec = new_spec
        preprocessing = preprocessing.with_input_size(new_size)
    return Checkpoint(spec, pooling, unflatten_dict(params, sep="/"), labels, preprocessing, initialised)
