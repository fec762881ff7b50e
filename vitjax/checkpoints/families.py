"""The one entry point for pretrained weights: `load_checkpoint` detects a checkpoint's family and hands
it to that family's reader; `supported()` lists what loads (the message for anything else).

  * a `.npz` file: big_vision / vision_transformer (AugReg) weights (`npz.py`);
  * a folder or hub id whose `config.json` has `architecture`: timm (`timm_names.py`);
  * a folder or hub id whose `config.json` has `model_type`: transformers (`hf_load.py`), including
    sharded safetensors (`model.safetensors.index.json`).
"""
from __future__ import annotations

import os

from vitjax.checkpoints import hf_load, npz, timm_names
from vitjax.checkpoints.convert import Checkpoint, assemble


def supported() -> str:
    """A one-paragraph list of the loadable formats, for error messages."""
    return (f"transformers checkpoints with model_type in {sorted(hf_load.MODEL_TYPES)}; timm checkpoints "
            f"(config.json with `architecture`) of {timm_names.SUPPORTED}; and big_vision/vision_transformer "
            f"`.npz` files ({npz.SUPPORTED})")


def load_checkpoint(name_or_path, num_labels: int | None = None, id2label: dict | None = None,
                    image_size: int | tuple[int, int] | None = None) -> Checkpoint:
    """Any supported checkpoint -> vitjax params, labels and preprocessing (`convert.assemble`)."""
    name = os.fspath(name_or_path)
    if name.endswith(".npz"):
        if not os.path.isfile(name):
            raise FileNotFoundError(f"{name} does not exist; give the path of a big_vision/vision_transformer .npz")
        source = npz.read_npz(name)
    else:
        files = hf_load.resolve_files(name)
        config = hf_load.read_config(files[hf_load.CONFIG])
        if "architecture" in config:
            source = timm_names.read_timm(files, config, name)
        elif "model_type" in config:
            source = hf_load.read_hf(files, name)
        else:
            raise ValueError(f"{files[hf_load.CONFIG]} has neither `model_type` (transformers) nor `architecture` "
                             f"(timm); vitjax loads {supported()}.")
    return assemble(source, name, num_labels, id2label, image_size)
