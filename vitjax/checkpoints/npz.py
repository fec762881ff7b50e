"""big_vision / vision_transformer `.npz` ViT weights (the original Google ViT and AugReg releases), named
`Transformer/encoderblock_N/MultiHeadDotProductAttention_1/query/kernel` etc., optionally under
`opt/target/`. The architecture follows from the shapes (heads from the attention kernels); the tensors
are Flax-layout already, so only the per-head attention axes are merged. timm reads the same files
(`VisionTransformer.load_pretrained`); timm's AugReg `pretrained_cfg` (mean = std = 0.5, bicubic,
crop_pct 0.9) gives the preprocessing a loaded `.npz` gets.
"""
from __future__ import annotations

import zipfile

import numpy as np

from vitjax.checkpoints.catalog import NPZ
from vitjax.checkpoints.convert import Source
from vitjax.checkpoints.hf_names import Kind, Row
from vitjax.checkpoints.timm_names import preprocessing_from_cfg
from vitjax.errors import BadValue
from vitjax.models.vit import ViTSpec


# Per-head attention layouts (read only: vitjax exports these weights in timm's format).
QKV_KERNEL = Kind(lambda k: k.reshape(k.shape[0], -1), None)  # [D, H, hd] -> [D, D]
HEADS_BIAS = Kind(lambda b: b.reshape(-1), None)  # [H, hd] -> [D]
OUT_KERNEL = Kind(lambda k: k.reshape(-1, k.shape[-1]), None)  # [H, hd, D] -> [D, D]
_B = "Transformer/encoderblock_{i}"
_F = "encoder/layer_{i:02d}"
_A = f"{_B}/MultiHeadDotProductAttention_1"


def _norm(name, flax):
    return [Row(f"{name}/scale", f"{flax}/scale"), Row(f"{name}/bias", f"{flax}/bias")]


def _dense(name, flax):
    return [Row(f"{name}/kernel", f"{flax}/kernel"), Row(f"{name}/bias", f"{flax}/bias")]


EMBEDDINGS = [
    Row("cls", "embeddings/cls_token"),
    Row("Transformer/posembed_input/pos_embedding", "embeddings/position_embeddings"),
    *_dense("embedding", "embeddings/patch_embeddings"),
]
LAYER = [
    *_norm(f"{_B}/LayerNorm_0", f"{_F}/layernorm_before"),
    *[row for name in ("query", "key", "value")
      for row in (Row(f"{_A}/{name}/kernel", f"{_F}/attention/{name}/kernel", QKV_KERNEL),
                  Row(f"{_A}/{name}/bias", f"{_F}/attention/{name}/bias", HEADS_BIAS))],
    Row(f"{_A}/out/kernel", f"{_F}/attention/out/kernel", OUT_KERNEL),
    Row(f"{_A}/out/bias", f"{_F}/attention/out/bias"),
    *_norm(f"{_B}/LayerNorm_2", f"{_F}/layernorm_after"),
    *_dense(f"{_B}/MlpBlock_3/Dense_0", f"{_F}/mlp/fc1"),
    *_dense(f"{_B}/MlpBlock_3/Dense_1", f"{_F}/mlp/fc2"),
]
FINAL = _norm("Transformer/encoder_norm", "layernorm")
HEAD = _dense("head", "classifier")
# timm's pretrained_cfg of the AugReg releases (vit_*.augreg_*): the eval transform a loaded .npz gets.
AUGREG_CFG = {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.9, "mean": (0.5, 0.5, 0.5),
              "std": (0.5, 0.5, 0.5)}


def _arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of the `.npz` archive at `path`; object arrays are refused, never unpickled."""
    try:
        loaded = np.load(path)  # allow_pickle=False
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array")
        with loaded as f:
            return {name: np.asarray(f[name]) for name in f.files}
    except (ValueError, EOFError, zipfile.BadZipFile):  # numpy's words would suggest unpickling it
        raise BadValue(f"{path} is not a .npz archive of numeric arrays (vitjax never loads object arrays or "
                       f"pickles); vitjax reads .npz files in the {NPZ}.") from None


def _shape(tensors: dict, name: str, ndim: int, path: str) -> tuple[int, ...]:
    """The shape of tensor `name`, which the architecture is read from."""
    if name not in tensors or np.ndim(tensors[name]) != ndim:
        found = f"has shape {np.shape(tensors[name])}" if name in tensors else "is missing"
        raise BadValue(f"{path}: tensor {name!r} {found}, where vitjax reads a {ndim}-d tensor of the {NPZ}.")
    return np.shape(tensors[name])


def read_npz(path: str) -> Source:
    raw = _arrays(path)
    prefix = next((p for p in ("", "opt/target/") if p + "embedding/kernel" in raw), None)
    if prefix is None:
        raise BadValue(f"{path} has no embedding/kernel; vitjax reads the {NPZ}.")
    tensors = {name[len(prefix):]: value for name, value in raw.items() if name.startswith(prefix)}
    patch, _, channels, hidden = _shape(tensors, "embedding/kernel", 4, path)
    positions = _shape(tensors, "Transformer/posembed_input/pos_embedding", 3, path)[1] - 1
    side = int(round(positions ** 0.5))
    if side * side != positions:
        raise BadValue(f"{path}: {positions} position embeddings are not a square grid.")
    depth = len({name.split("/")[1] for name in tensors if name.startswith("Transformer/encoderblock_")})
    spec = ViTSpec(
        family="timm", image_size=side * patch, patch_size=patch, num_channels=channels, hidden_size=hidden,
        num_layers=depth, num_heads=_shape(tensors, f"{_A.format(i=0)}/query/kernel", 3, path)[1],
        mlp_dim=_shape(tensors, "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel", 2, path)[1],
        layer_norm_eps=1e-6,
        posemb_interpolation="bilinear",  # timm's npz reader resizes bilinearly, without antialiasing
    )
    rows = [r.resolved() for r in EMBEDDINGS]
    for i in range(depth):
        rows += [r.resolved(i=i) for r in LAYER]
    rows += [r.resolved() for r in FINAL]
    has_head = "head/kernel" in tensors and tensors["head/kernel"].shape[-1] > 0
    return Source(
        spec=spec, tensors=tensors, weights=path, backbone_rows=rows,
        head_pooling="pooled" if has_head else None, head_rows=[r.resolved() for r in HEAD] if has_head else [],
        labels=None, default_pooling="pooled",
        preprocessing=preprocessing_from_cfg({**AUGREG_CFG, "input_size": (3, *spec.image_size)}),
        architecture="timm VisionTransformer",
    )
