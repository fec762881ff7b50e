"""Load Hugging Face ViT/DeiT/DINOv2 checkpoints (hub id or local `save_pretrained` folder) without torch.

`load_hf` reads `config.json`, `model.safetensors` and `preprocessor_config.json`, converts the tensors
through the name table (`hf_names.py`) into a float32 param tree `{"backbone": ..., "head": ...}` and
decides the head: kept when the checkpoint has one of the requested size, else freshly initialised for
the new label set (with a warning naming those tensors, as transformers does). Another `image_size`
resizes the position embeddings (bicubic, CLS/distillation kept).
"""
from __future__ import annotations

import dataclasses
import logging
import os

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict
from vitjax.checkpoints import hf_names, validate
from vitjax.checkpoints.posemb import resize_posemb
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.errors import BadKey, BadValue
from vitjax.files import read_json
from vitjax.models.model import build_model
from vitjax.models.vit import FAMILIES, ViTSpec

log = logging.getLogger(__name__)

CONFIG, WEIGHTS, PREPROCESSOR = "config.json", "model.safetensors", "preprocessor_config.json"


@dataclasses.dataclass
class HFCheckpoint:
    """Everything `load_hf` read: architecture, head pooling, float32 params, labels, preprocessing."""

    spec: ViTSpec
    pooling: str
    params: dict
    id2label: dict[int, str]
    preprocessing: Preprocessing
    initialised: list[str]  # Flax paths of tensors not taken from the checkpoint


def resolve_files(name_or_dir: str | os.PathLike) -> dict[str, str | None]:
    """Local paths of config/weights/preprocessor for a folder or a hub id (downloaded via huggingface_hub).
    The preprocessor config is optional (None when absent); the others raise FileNotFoundError."""
    name = os.fspath(name_or_dir)
    if os.path.isdir(name):
        files = {f: os.path.join(name, f) for f in (CONFIG, WEIGHTS, PREPROCESSOR)}
        for required in (CONFIG, WEIGHTS):
            if not os.path.isfile(files[required]):
                hint = (" (a sharded or PyTorch .bin checkpoint: re-save it with "
                        "`model.save_pretrained(dir, safe_serialization=True)` as one file)"
                        if required == WEIGHTS else "")
                raise FileNotFoundError(f"{files[required]} not found: {name} is not a complete Hugging Face "
                                        f"save_pretrained folder{hint}.")
        if not os.path.isfile(files[PREPROCESSOR]):
            files[PREPROCESSOR] = None
        return files
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"checkpoint folder {name} does not exist; give an existing save_pretrained "
                                "folder or a hub id like google/vit-base-patch16-224")
    return _download(name)


def _download(repo_id: str) -> dict[str, str | None]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    def fetch(filename, required):
        try:
            return hf_hub_download(repo_id, filename)
        # LocalEntryNotFoundError subclasses EntryNotFoundError: catch it first.
        except LocalEntryNotFoundError as e:
            if not required:
                return None
            raise FileNotFoundError(f"{repo_id}/{filename} is not in the local Hugging Face cache and the hub "
                                    "cannot be reached (offline?). Download it once with network access, or "
                                    "pass a local save_pretrained folder.") from e
        except EntryNotFoundError:
            if required:
                raise FileNotFoundError(f"the hub repo {repo_id} has no {filename}; vitjax needs config.json "
                                        "and model.safetensors") from None
            return None
        except HfHubHTTPError as e:
            raise FileNotFoundError(f"cannot fetch {filename} of hub repo {repo_id!r} ({e}); check the id "
                                    "(e.g. google/vit-base-patch16-224), or log in for private repos") from e

    return {CONFIG: fetch(CONFIG, True), WEIGHTS: fetch(WEIGHTS, True), PREPROCESSOR: fetch(PREPROCESSOR, False)}


def _read_config(path: str) -> dict:
    config = read_json(path, "download or save the checkpoint again")
    if config.get("model_type") not in FAMILIES:
        raise BadValue(f"{path}: model_type={config.get('model_type')!r} is not supported; vitjax loads "
                       f"model_type in {list(FAMILIES)} (ViT, DeiT, DINOv2 checkpoints).")
    validate.check_model_config(config, path)
    return config


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


def _choose_head(spec: ViTSpec, tensors: dict, config: dict, num_labels, id2label, source) -> tuple:
    """(pooling, id2label, keep_head): keep the checkpoint's head for the requested label set."""
    ckpt_pooling = hf_names.checkpoint_pooling(spec.family, tensors)
    ckpt_labels = None
    if ckpt_pooling is not None:
        ckpt_labels = {int(k): v for k, v in config.get("id2label", {}).items()}
        head_size = tensors[hf_names.head_rows(ckpt_pooling)[0][0]].shape[0]
        if len(ckpt_labels) != head_size:
            ckpt_labels = {i: f"LABEL_{i}" for i in range(head_size)}
    labels = _target_labels(ckpt_labels, num_labels, id2label)
    if labels is None:
        raise BadValue(f"{source} has no classification head (its model.safetensors holds only the "
                       "backbone); pass num_labels=... or id2label={0: 'cat', ...} to add a new head.")
    # Keep the checkpoint's head for the same label set; a head of the right size whose classes
    # have other names (e.g. digits 0-4 -> 5-9) knows nothing of the new classes: start afresh.
    same_size = ckpt_pooling is not None and len(labels) == len(ckpt_labels)
    generic = ckpt_labels is not None and all(v == f"LABEL_{k}" for k, v in ckpt_labels.items())
    keep_head = same_size and (id2label is None or generic or labels == ckpt_labels)
    if keep_head and labels != ckpt_labels:
        log.warning("%s: keeping the checkpoint's trained head of %d classes, its generic labels %s "
                    "renamed to %s; pass id2label of another size (or train) for a fresh head.",
                    source, len(labels), list(ckpt_labels.values())[:3], list(labels.values())[:3])
    pooling = ckpt_pooling if keep_head else hf_names.DEFAULT_POOLING[spec.family]
    return pooling, labels, keep_head


def _convert(rows, tensors: dict, expected: dict, weights: str, spec: ViTSpec) -> dict[str, np.ndarray]:
    """HF tensors -> {flax path: float32 array} through the table rows, checking names and shapes."""
    params = {}
    for hf, path, kind in rows:
        if hf not in tensors:
            raise BadKey(f"{weights} has no tensor {hf!r} (needed for {path}); the file does not match its "
                         f"config.json ({spec.family}, {spec.num_layers} layers, qkv_bias={spec.qkv_bias}). "
                         "Re-save the checkpoint with transformers' save_pretrained.")
        value = hf_names.KINDS[kind].to_flax(tensors[hf].astype(np.float32))
        if value.shape != expected[path].shape:
            raise BadValue(f"{weights}: tensor {hf!r} has shape {tuple(tensors[hf].shape)}, which does not "
                           f"fit {path} {tuple(expected[path].shape)} implied by config.json; fix config.json "
                           "(hidden_size, patch_size, image_size, ...) or the file.")
        params[path] = np.ascontiguousarray(value)
    ignored = sorted(set(tensors) - {hf for hf, _, _ in rows})
    if ignored:
        log.info("ignored %d tensors of %s not used by vitjax: %s", len(ignored), weights, ignored)
    return params


def _read_preprocessing(path: str | None, spec: ViTSpec, source) -> Preprocessing:
    if path is None:
        log.warning("%s has no %s; using ViTImageProcessor defaults at %s", source, PREPROCESSOR, spec.image_size)
        return Preprocessing.default(spec.image_size)
    config = read_json(path, "download or save the checkpoint again")
    validate.check_preprocessor_config(config, path)
    return Preprocessing.from_hf(config)


def load_hf(name_or_dir, num_labels: int | None = None, id2label: dict | None = None,
            image_size: int | tuple[int, int] | None = None) -> HFCheckpoint:
    """Read a checkpoint into vitjax params; see the module docstring for how the head is chosen."""
    files = resolve_files(name_or_dir)
    config = _read_config(files[CONFIG])
    spec = ViTSpec.from_hf_config(config)
    tensors = validate.read_safetensors(files[WEIGHTS])
    pooling, labels, keep_head = _choose_head(spec, tensors, config, num_labels, id2label, name_or_dir)
    preprocessing = _read_preprocessing(files[PREPROCESSOR], spec, name_or_dir)

    prefix = hf_names.BACKBONES[spec.family][0]
    if not any(name.startswith(prefix) for name in tensors):
        prefix = ""  # a base-model checkpoint (ViTModel, DeiTModel, Dinov2Model)
    rows = [(hf, "backbone/" + path, kind) for hf, path, kind in hf_names.backbone_rows(spec, prefix)]
    if keep_head:
        rows += [(hf, "head/" + path, kind) for hf, path, kind in hf_names.head_rows(pooling)]

    model = build_model(spec, len(labels), pooling)
    dummy = np.zeros((1, *spec.image_size, spec.num_channels), np.float32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy, train=False))["params"]
    expected = flatten_dict(shapes, sep="/")
    params = _convert(rows, tensors, expected, files[WEIGHTS], spec)

    initialised = sorted(path for path in expected if path not in params)
    assert all(path.startswith("head/") for path in initialised), f"name table misses {initialised}"
    for path in initialised:  # a new head starts at zero (as big_vision); HF draws N(0, 0.02)
        params[path] = np.zeros(expected[path].shape, np.float32)
    if initialised:
        log.warning("Some weights of %s were not initialized from the checkpoint at %s and are newly "
                    "initialized for %d labels: %s. Train this model on a down-stream task before using it "
                    "for predictions.", hf_names.ARCHITECTURES[(spec.family, pooling)], name_or_dir,
                    len(labels), initialised)

    if image_size is not None:
        new_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if new_size != spec.image_size:
            new_spec = spec.replace(image_size=new_size)
            key = "backbone/embeddings/position_embeddings"
            params[key] = resize_posemb(params[key], spec.num_prefix_tokens, spec.grid, new_spec.grid)
            spec = new_spec
        preprocessing = preprocessing.with_input_size(new_size)
    return HFCheckpoint(spec, pooling, unflatten_dict(params, sep="/"), labels, preprocessing, initialised)
