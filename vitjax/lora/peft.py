"""LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`, both ways.

`peft.PeftModel.from_pretrained(base, directory)` loads what `save_adapter` writes, and
`load_adapter` reads what PEFT saves. The tensors are named by the torch modules of the
transformers classifier, which transformers 5 renamed (`vit.layers.0.attention.q_proj`) from the
names of transformers 4 and of the saved model files (`vit.encoder.layer.0.attention.attention.query`):
adapters are written for the installed transformers (5 when none is), and read in either naming.

    base_model.model.<module>.lora_A.weight  [rank, in]   = lora_a.T
    base_model.model.<module>.lora_B.weight  [out, rank]  = lora_b.T
    base_model.model.<module>.weight / .bias              a module trained in full (modules_to_save)
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict
from safetensors.numpy import load_file, save_file

from vitjax.checkpoints import hf_names
from vitjax.errors import BadKey, BadValue
from vitjax.lora.model import ADAPTERS, LoRASpec, adapted_layers
from vitjax.models.vit import ViTSpec

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
LAYOUTS = ("transformers4", "transformers5")
# transformers 5's renames of the saved (transformers 4) module names, in order; None: no 1:1 module.
_RENAMES = {
    "vit": [("encoder.layer.", "layers."), ("attention.attention.query", "attention.q_proj"),
            ("attention.attention.key", "attention.k_proj"), ("attention.attention.value", "attention.v_proj"),
            ("attention.output.dense", "attention.o_proj"), ("intermediate.dense", "mlp.fc1"),
            ("output.dense", "mlp.fc2")],
    "dinov2": [("attention.attention.query", "attention.q_proj"), ("attention.attention.key", "attention.k_proj"),
               ("attention.attention.value", "attention.v_proj"), ("attention.output.dense", "attention.o_proj"),
               ("mlp.weights_out", "mlp.down_proj"), ("mlp.weights_in", None)],
}
_RENAMES["deit"] = _RENAMES["vit"]
_RENAMES["dinov2_with_registers"] = _RENAMES["dinov2"]
FAMILIES = tuple(_RENAMES)  # the families whose adapters PEFT's format holds here


def installed_layout() -> str:
    """The module naming of the installed transformers (transformers 5's when it is not installed)."""
    try:
        major = int(importlib.metadata.version("transformers").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return "transformers5"
    return "transformers4" if major < 5 else "transformers5"


def _rename(name: str, family: str, layout: str) -> str | None:
    if layout == "transformers4":
        return name
    for old, new in _RENAMES[family]:
        if old in name:
            if new is None:
                return None
            name = name.replace(old, new)
    return name


def parameter_names(spec: ViTSpec, pooling: str, layout: str) -> dict[str, tuple[str, hf_names.Kind]]:
    """vitjax parameter path -> (torch parameter name in the classifier, layout `Kind`), for `layout`;
    tensors split from a fused torch module have no name of their own and are left out."""
    if spec.family not in _RENAMES:
        raise BadValue(f"PEFT adapters of {spec.family} models are not supported; vitjax reads and writes "
                         f"them for {sorted(_RENAMES)} (a {spec.family} LoRA run still exports best/ merged).")
    family = hf_names.FAMILIES[spec.family]
    rows = [(r, "backbone/" + r.flax) for r in family.backbone_rows(spec, family.prefixes[0])]
    rows += [(r, "head/" + r.flax) for r in family.head_rows(pooling)]
    names = {}
    for row, path in rows:
        module, _, leaf = row.hf.rpartition(".")
        renamed = _rename(module, spec.family, layout) if leaf in ("weight", "bias") else module
        if renamed is not None and row.part is None:
            kind = hf_names.KINDS[row.kind] if isinstance(row.kind, str) else row.kind
            names[path] = (f"{renamed}.{leaf}", kind)
    return names


def _module(param_name: str) -> str:
    return param_name.rpartition(".")[0]


def save_adapter(directory: str, spec: ViTSpec, pooling: str, params: dict, lora: LoRASpec,
                 trained_paths, base: str = "", layout: str | None = None) -> str:
    """Writes the adapters of `params` and the base weights in `trained_paths` (whole modules: PEFT's
    modules_to_save) in PEFT's format; returns `directory`."""
    layout = layout or installed_layout()
    names = parameter_names(spec, pooling, layout)
    flat = flatten_dict(params, sep="/")
    tensors, targets = {}, []
    for layer in adapted_layers(params):
        if f"{layer}/kernel" not in names:
            raise BadValue(f"the LoRA layer {layer} has no single torch module in {layout}'s "
                             f"{spec.family} classifier, so PEFT cannot hold its adapter; leave it out "
                             f"of config.lora.targets (the merged best/ export holds it).")
        module = _module(names[f"{layer}/kernel"][0])
        targets.append(module)
        for name, torch_name in zip(ADAPTERS, ("lora_A", "lora_B")):
            tensors[f"{PREFIX}{module}.{torch_name}.weight"] = np.ascontiguousarray(
                np.asarray(flat[f"{layer}/{name}"], np.float32).T)
    full = [p for p in trained_paths if p.rpartition("/")[2] not in ADAPTERS]
    saved = {}
    for path in full:
        if path not in names or _module(names[path][0]) in targets:
            raise BadValue(f"{path} trains in full but PEFT's modules_to_save holds whole torch modules "
                             f"without adapters only; export merged (best/) or freeze it.")
        name, kind = names[path]
        saved.setdefault(_module(name), set()).add(path)
        tensors[PREFIX + name] = np.ascontiguousarray(kind.to_hf(np.asarray(flat[path], np.float32)))
    for module, paths in saved.items():
        whole = {p for p, (n, _) in names.items() if _module(n) == module}
        if whole - paths:
            raise BadValue(f"only part of the torch module {module} trains ({sorted(paths)}); PEFT's "
                             f"modules_to_save holds whole modules: train or freeze all of {sorted(whole)}.")
    config = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": base or None,
        "r": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
        "target_modules": sorted(targets), "modules_to_save": sorted(saved) or None,
        "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
        "init_lora_weights": True, "inference_mode": True, "rank_pattern": {}, "alpha_pattern": {},
    }
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, WEIGHTS), metadata={"format": "pt"})
    with open(os.path.join(directory, CONFIG), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    return directory


def _read_config(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    unsupported = {"peft_type": ("LORA",), "bias": ("none",), "use_dora": (False, None),
                   "use_rslora": (False, None), "fan_in_fan_out": (False, None)}
    for key, allowed in unsupported.items():
        if config.get(key, allowed[0]) not in allowed:
            raise BadValue(f"{path}: {key}={config[key]!r}; vitjax reads plain LoRA adapters "
                             f"({key} in {allowed}).")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise BadValue(f"{path}: {key} is set; vitjax reads adapters of one rank and alpha.")
    return config


def load_adapter(directory: str, spec: ViTSpec, pooling: str, params: dict) -> tuple[LoRASpec, dict]:
    """(the adapters' `LoRASpec`, `params` with the adapters added and the saved modules replaced)."""
    config = _read_config(os.path.join(directory, CONFIG))
    tensors = load_file(os.path.join(directory, WEIGHTS))
    by_name = {}
    for layout in LAYOUTS:
        by_name.update({name: (path, kind) for path, (name, kind) in parameter_names(spec, pooling, layout).items()})
    flat = dict(flatten_dict(params, sep="/"))
    layers = set()
    for key, value in tensors.items():
        name = key.removeprefix(PREFIX).replace(".modules_to_save", "")
        match = re.fullmatch(r"(.+)\.lora_([AB])\.weight", name)
        if match:
            path = by_name.get(match.group(1) + ".weight", (None,))[0]
            if path is None or not path.endswith("/kernel"):
                raise BadKey(f"{directory}/{WEIGHTS}: {key} adapts no Dense layer of a {spec.family} "
                               f"classifier with a {pooling!r} head.")
            layer = path.removesuffix("/kernel")
            layers.add(layer)
            flat[f"{layer}/lora_{match.group(2).lower()}"] = np.asarray(value, np.float32).T
        elif name in by_name:
            path, kind = by_name[name]
            new = kind.to_flax(np.asarray(value, np.float32))
            if new.shape != np.shape(flat[path]):
                raise BadValue(f"{directory}/{WEIGHTS}: {key} has shape {value.shape}, which does not fit "
                                 f"{path} {np.shape(flat[path])}; load the base with the adapter's labels.")
            flat[path] = new
        else:
            raise BadKey(f"{directory}/{WEIGHTS}: {key} is no tensor of a {spec.family} classifier with "
                           f"a {pooling!r} head.")
    lora = LoRASpec("|".join(re.escape(layer) for layer in sorted(layers)), int(config["r"]),
                    float(config["lora_alpha"]), float(config.get("lora_dropout", 0.0)))
    return lora, unflatten_dict(flat, sep="/")



def load_pretrained(base, adapter: str, **base_kwargs):
    """A `vitjax.api.Classifier`: the checkpoint `base` (hub id or folder, loaded by
    `vitjax.load_pretrained(base, **base_kwargs)`: pass `num_labels`/`id2label` for the adapter's head)
    with the PEFT adapter in the folder `adapter` merged into it."""
    from vitjax.api import load_pretrained as load_base
    from vitjax.lora.model import merge

    clf = load_base(base, **base_kwargs)
    lora, params = load_adapter(adapter, clf.spec, clf.pooling, clf.params)
    return clf.replace(params=merge(params, lora))
