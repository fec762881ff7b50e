"""Load transformers checkpoints (hub id or local `save_pretrained` folder) without torch.

`read_hf` reads `config.json`, `model.safetensors` (or the shards listed in `model.safetensors.index.json`)
and `preprocessor_config.json`, picks the family by `model_type` (`catalog.HF_FAMILIES`: ViT, DeiT, DINOv2 and
DINOv2 with registers in `hf_names.py`, SigLIP in `siglip.py`, CLIP in `clip.py`) and returns a `Source`;
`load_hf` then builds the params and decides the head with `convert.assemble`. A folder may be on object
storage (`s3://bucket/vit`, `gs://...`).
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from vitjax import storage
from vitjax.checkpoints import validate
from vitjax.checkpoints.catalog import MODEL_TYPES, supported
from vitjax.checkpoints.convert import Checkpoint, Source, assemble
from vitjax.checkpoints.hf_names import HFFamily
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.errors import BadValue
from vitjax.files import read_json
from vitjax.models.heads import DEFAULT_POOLING
from vitjax.models.vit import ViTSpec

log = logging.getLogger(__name__)

CONFIG, WEIGHTS, PREPROCESSOR = "config.json", "model.safetensors", "preprocessor_config.json"
INDEX = "model.safetensors.index.json"  # sharded checkpoints: {"weight_map": {tensor: shard file}}



def resolve_files(name_or_dir: str | os.PathLike) -> dict:
    """Local paths of config, weights and preprocessor for a folder or a hub id (downloaded via
    huggingface_hub). WEIGHTS maps to the list of safetensors files (one, or the shards of the index);
    the preprocessor config is optional (None when absent); the others raise FileNotFoundError. A folder
    on object storage (`s3://`, `gs://`) is read from its local copy (`storage.cached_copy`)."""
    name = storage.cached_copy(name_or_dir)
    if os.path.isdir(name):
        files = {f: os.path.join(name, f) for f in (CONFIG, PREPROCESSOR)}
        if not os.path.isfile(files[CONFIG]):
            raise FileNotFoundError(f"{files[CONFIG]} not found: {name} is not a complete Hugging Face "
                                    "save_pretrained folder.")
        single, index = os.path.join(name, WEIGHTS), os.path.join(name, INDEX)
        if os.path.isfile(single):
            files[WEIGHTS] = [single]
        elif os.path.isfile(index):
            files[WEIGHTS] = [os.path.join(name, shard) for shard in _shards(index)]
        else:
            raise FileNotFoundError(f"{single} not found: {name} is not a complete Hugging Face save_pretrained "
                                    f"folder (nor a sharded one with {INDEX}); a PyTorch .bin checkpoint must be "
                                    "re-saved with `model.save_pretrained(dir, safe_serialization=True)`.")
        if not os.path.isfile(files[PREPROCESSOR]):
            files[PREPROCESSOR] = None
        return files
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"checkpoint folder {name} does not exist; give an existing save_pretrained "
                                "folder or a hub id like google/vit-base-patch16-224")
    return _download(name)


def _shards(index_path: str) -> list[str]:
    """The shard files an index lists, in first-use order."""
    with open(index_path) as f:
        weight_map = json.load(f).get("weight_map")
    if not weight_map:
        raise BadValue(f"{index_path} has no weight_map; re-save the checkpoint with save_pretrained.")
    return list(dict.fromkeys(weight_map.values()))


def _download(repo_id: str) -> dict:
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
                                        "and model.safetensors (or its shards)") from None
            return None
        except HfHubHTTPError as e:
            raise FileNotFoundError(f"cannot fetch {filename} of hub repo {repo_id!r} ({e}); check the id "
                                    "(e.g. google/vit-base-patch16-224), or log in for private repos") from e

    config = fetch(CONFIG, True)
    weights = fetch(WEIGHTS, False)
    if weights is not None:
        weights = [weights]
    else:
        index = fetch(INDEX, False)
        if index is None:
            fetch(WEIGHTS, True)  # raises the error that names the missing file
        weights = [fetch(shard, True) for shard in _shards(index)]
    return {CONFIG: config, WEIGHTS: weights, PREPROCESSOR: fetch(PREPROCESSOR, False)}


def read_tensors(paths: list[str]) -> dict[str, np.ndarray]:
    """All tensors of safetensors files as numpy; bfloat16 files, which numpy cannot read, go through JAX."""
    tensors = {}
    for path in paths:
        tensors.update(validate.read_safetensors(path))  # a truncated or corrupt file is named
    return tensors


def family_of(config: dict, path: str) -> HFFamily:
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        hint = (" SigLIP 2 NaFlex (variable resolution) towers are not supported; the fixed-resolution SigLIP 2 "
                "repos (model_type siglip) are." if model_type == "siglip2" else "")
        raise BadValue(f"{path}: model_type={model_type!r} is not supported; vitjax loads {supported()}.{hint}")
    return MODEL_TYPES[model_type]


def _read_preprocessing(path: str | None, spec: ViTSpec, source) -> Preprocessing:
    if path is None:
        log.warning("%s has no %s; using ViTImageProcessor defaults at %s", source, PREPROCESSOR, spec.image_size)
        return Preprocessing.default(spec.image_size)
    config = read_json(path, "download or save the checkpoint again")
    validate.check_preprocessor_config(config, path)
    return Preprocessing.from_hf(config)


def read_config(path: str) -> dict:
    return read_json(path, "download or save the checkpoint again")


def read_hf(files: dict, name_or_dir) -> Source:
    """The `Source` of a transformers checkpoint (any family of `HF_FAMILIES`) from its `resolve_files`."""
    config = read_config(files[CONFIG])
    family = family_of(config, files[CONFIG])
    vision = config.get(family.vision_config_key, config) if family.vision_config_key else config
    validate.check_model_config(vision, files[CONFIG])
    spec = family.spec_from_config(vision)
    tensors = read_tensors(files[WEIGHTS])
    anchor = family.backbone_rows(spec)[0].hf
    prefix = next((p for p in family.prefixes if p + anchor in tensors), family.prefixes[0])
    head_pooling = next((pooling for pooling in family.heads
                         if all(r.hf in tensors for r in family.head_rows(pooling))), None)
    labels = validate.labels_of(config, files[CONFIG]) if head_pooling else None
    return Source(
        spec=spec, tensors=tensors, weights=", ".join(files[WEIGHTS]),
        backbone_rows=family.backbone_rows(spec, prefix),
        head_pooling=head_pooling,
        head_rows=family.head_rows(head_pooling) if head_pooling else [],
        labels=labels,
        default_pooling=DEFAULT_POOLING[family.name],
        preprocessing=_read_preprocessing(files[PREPROCESSOR], spec, name_or_dir),
        architecture=family.architectures[DEFAULT_POOLING[family.name]],
    )


def load_hf(name_or_dir, num_labels: int | None = None, id2label: dict | None = None,
            image_size: int | tuple[int, int] | None = None) -> Checkpoint:
    """Read a transformers checkpoint into vitjax params; see `convert.assemble` for the head."""
    return assemble(read_hf(resolve_files(name_or_dir), name_or_dir), name_or_dir, num_labels, id2label, image_size)
