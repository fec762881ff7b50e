"""What a trained model looks at: per image, two maps of the evidence for its top class over the patch
grid, and their overlay PNGs.

* **Attention rollout** (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): per
  block the attention probabilities averaged over heads, plus the identity (the residual path), rows
  normalised to 1, multiplied through the blocks from the first to the last. The row of the token the
  head reads, restricted to the patch tokens, is the map: the CLS row for a CLS head; for heads that
  pool the patch tokens (mean pooling, timm's average, SigLIP's attention pooling, whose probe is not
  part of the rollout) the mean of the patch rows; the average of both rows for a CLS + mean head
  (DINOv2's) and of the CLS and distillation rows for DeiT's two heads. It depends on the image, not
  on the class: it shows where information flows from, not what it says.
* **Integrated gradients** (Sundararajan et al. 2017): the gradient of the top class's logit averaged
  along the straight path from a black image to the image (`IG_STEPS` midpoint steps), times the
  pixels' difference from black, summed over channels and over each patch; the map keeps the
  positive sums (evidence for the class). Class-specific, and complete: the attributions add up to
  the logit's change from the black image (up to the path's discretisation). Grad-CAM on the last
  block's patch tokens (channel weights: the gradient's mean over patches) was tried first and
  dropped: on the known-region check (tests/test_explain.py) its mass in the object's box was below
  chance with the 2-block test model (0.6x the box's area fraction; 3.3x with 4 blocks), where
  integrated gradients reach 12.8x (13.9x).

Rollout runs the model with `mutable=["intermediates"]`: its attention is then spelled out and the
probabilities sown (`vitjax.models.vit.Attention`); the predict and train paths never ask for them
and run the fast attention kernels unchanged. Tasks whose outputs are class logits
(`Task.class_logits`: classification, single- or multi-label) can be explained; the class explained
is the top one (the highest logit, for softmax and sigmoid alike).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from vitjax import registry
from vitjax.errors import BadValue
from vitjax.report import save_figure

METHODS = {"rollout": "attention rollout", "integrated_gradients": "integrated gradients"}  # key -> title
IG_STEPS = 16  # integrated gradients' steps (forward + backward passes per image)
log = logging.getLogger(__name__)

SUFFIX = "_explain.png"  # <image stem>_explain.png: one overlay PNG per image
GALLERY_FOLDER = "explain"  # a report folder's overlays of its gallery entries: explain/<index>_explain.png
GALLERY_EXPLAINED = 24  # the entries explained per gallery of the report page, first first


class Explanation(NamedTuple):
    """One image's explanation: `pixels` uint8 [H, W, 3] (the image as the model sees it: resized and
    cropped by its preprocessing), the class explained (`class_index`, `class_name`: the top
    prediction), `maps`: {"rollout", "integrated_gradients"} -> float [gh, gw] over the grid of
    `patch_size` patches, each summing to 1 (integrated gradients all zeros when no patch holds
    positive evidence), and `file`: its overlay PNG when one was written (`write_overlay`)."""

    pixels: np.ndarray
    class_index: int
    class_name: str
    maps: dict[str, np.ndarray]
    patch_size: int
    file: str | None = None


def require_class_logits(task: registry.Task) -> None:
    """Raises a `BadValue` naming `task` and the tasks that can be explained, unless its outputs are
    class logits (`Task.class_logits`)."""
    if task.class_logits:
        return
    able = [name for name in registry.available_tasks() if registry.get_task(name).class_logits]
    raise BadValue(f"--explain / explain(): task {task.name!r} has no class logits to explain "
                   f"(Task.class_logits is False); the maps explain the top class of tasks that declare "
                   f"them: {', '.join(able)}.")


def readout(spec: Any, head: Any) -> np.ndarray:
    """Weights [T] over the backbone's tokens of the rollout row(s) the map is read from: the tokens
    the head pools (`ClassificationHead.pooling`, `ViTSpec.pool`); for another head, CLS when the
    backbone has one, else the patch tokens' mean. Prefix tokens first ([CLS][distillation][registers])."""
    prefix = spec.num_prefix_tokens
    gh, gw = spec.grid
    cls, distillation, patches = (np.zeros(prefix + gh * gw) for _ in range(3))
    if spec.class_token:
        cls[0] = 1.0
    if spec.distillation_token:
        distillation[1] = 1.0
    patches[prefix:] = 1.0 / (gh * gw)
    pooling = getattr(head, "pooling", None)
    if pooling == "pooled":
        pooling = {"cls": "cls", "avg": "mean", "map": "mean"}[spec.pool]
    if pooling is None:
        pooling = "cls" if spec.class_token else "mean"
    return {"cls": cls, "cls_distillation": (cls + distillation) / 2, "cls_mean": (cls + patches) / 2,
            "mean": patches}[pooling]


def attention_rollout(probabilities: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """Attention rollout [B, T, T] of the blocks' attention probabilities (each [B, heads, T, T], first
    block first): per block the heads' mean plus the identity, rows normalised, multiplied through."""
    eye = jnp.eye(probabilities[0].shape[-1], dtype=jnp.float32)
    rollout = jnp.broadcast_to(eye, probabilities[0].shape[:1] + eye.shape)
    for probs in probabilities:
        mixed = probs.astype(jnp.float32).mean(axis=1) + eye
        rollout = (mixed / mixed.sum(axis=-1, keepdims=True)) @ rollout
    return rollout


def _normalised(maps: jnp.ndarray) -> jnp.ndarray:
    total = maps.sum(axis=-1, keepdims=True)
    return jnp.where(total > 0, maps / jnp.where(total > 0, total, 1.0), 0.0)


def _per_patch(pixels: jnp.ndarray, patch_size: int) -> jnp.ndarray:
    """[B, H, W] -> [B, gh * gw]: sums over whole patches (edge pixels beyond them dropped, as the model does)."""
    batch, height, width = pixels.shape
    gh, gw = height // patch_size, width // patch_size
    pixels = pixels[:, :gh * patch_size, :gw * patch_size].reshape(batch, gh, patch_size, gw, patch_size)
    return pixels.sum(axis=(2, 4)).reshape(batch, gh * gw)


def integrated_gradients(logit_of: Any, images: jnp.ndarray, baseline: jnp.ndarray,
                         steps: int) -> jnp.ndarray:
    """Integrated gradients [B, H, W, C] of `logit_of(images) -> [B]` (each image's own score), from
    `baseline` to `images` with `steps` midpoint-rule steps."""
    score = lambda x: logit_of(x).sum()
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps
    gradients = jax.lax.map(lambda a: jax.grad(score)(baseline + a * (images - baseline)), alphas)
    return (images - baseline) * gradients.mean(axis=0)


def maps(model: Any, spec: Any, params: dict, images: jnp.ndarray, baseline: jnp.ndarray) -> dict:
    """Normalised float images [B, H, W, C] through `model` (a `Model`: ViT backbone + a head of class
    logits) -> {"class": the top class [B], "rollout", "integrated_gradients": maps [B, gh, gw]
    summing to 1}; `baseline`: the normalised black image (integrated gradients' start).
    Jit-able (`model` and `spec` static)."""
    grid = (images.shape[1] // spec.patch_size, images.shape[2] // spec.patch_size)
    logits, state = model.apply({"params": params}, images, train=False, mutable=["intermediates"])
    top = jnp.argmax(logits, axis=-1)
    sown = traverse_util.flatten_dict(state["intermediates"])
    probabilities = [sown[path][0] for path in sorted(p for p in sown if p[-1] == "probabilities")]
    rows = jnp.asarray(readout(spec.replace(image_size=(grid[0] * spec.patch_size, grid[1] * spec.patch_size)),
                               model.head), jnp.float32)
    rollout = jnp.einsum("t,bts->bs", rows, attention_rollout(probabilities))[:, spec.num_prefix_tokens:]
    logit_of = lambda x: jnp.take_along_axis(model.apply({"params": params}, x, train=False), top[:, None],
                                             axis=-1)[:, 0]
    attributions = integrated_gradients(logit_of, images, jnp.broadcast_to(baseline, images.shape), IG_STEPS)
    evidence = jax.nn.relu(_per_patch(attributions.sum(axis=-1), spec.patch_size))
    shape = (images.shape[0], *grid)
    return {"class": top, "rollout": _normalised(rollout).reshape(shape),
            "integrated_gradients": _normalised(evidence).reshape(shape)}


def write_overlay(explanation: Explanation, path: str, compact: bool = False) -> Explanation:
    """Writes `path` (PNG): the image as the model sees it, then each map over it in a colormap with
    its colorbar, titled with the method and the class explained; `compact` (a gallery's, beside a
    thumbnail of the image): the maps alone, small, one colorbar. Returns `explanation` naming it."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    scale = ScalarMappable(Normalize(0.0, 1.0), "inferno")  # the colorbar, opaque (the overlay is not)
    panels = len(METHODS) + (not compact)
    fig = Figure(figsize=(2.2 * panels, 2.2) if compact else (4 * panels, 4.5), layout="constrained")
    axes = list(fig.subplots(1, panels))
    if not compact:
        axes[0].imshow(explanation.pixels)
        axes[0].set_title("input (as the model sees it)")
    height, width = explanation.pixels.shape[:2]
    for ax, (key, method) in zip(axes[panels - len(METHODS):], METHODS.items()):
        heat = explanation.maps[key]
        gh, gw = heat.shape
        ax.imshow(explanation.pixels)
        ax.imshow(heat / heat.max() if heat.max() > 0 else heat, cmap=scale.cmap, norm=scale.norm, alpha=0.55,
                  interpolation="bilinear", extent=(0, gw * explanation.patch_size, gh * explanation.patch_size, 0))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_title(method if compact else f"{method}: {explanation.class_name}", fontsize=9 if compact else None)
        if not compact:
            fig.colorbar(scale, ax=ax, fraction=0.046, pad=0.02, label="evidence (1 = the image's most)")
    if compact:
        fig.colorbar(scale, ax=axes, fraction=0.05, pad=0.02).set_label("evidence", fontsize=8)
    for ax in axes:
        ax.set_xlabel("x (pixels)", fontsize=8 if compact else None)
        ax.set_ylabel("y (pixels)", fontsize=8 if compact else None)
        if compact:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"predicted: {explanation.class_name}" + ("" if compact else " (what the model looks at)"),
                 fontsize=9 if compact else None)
    save_figure(fig, path, dpi=80)
    return explanation._replace(file=path)


def gallery_overlays(trained: Any, sections: Sequence[dict], records: Any, folder: str,
                     limit: int = GALLERY_EXPLAINED) -> list[dict]:
    """The report page's task sections (`Task.report_sections`) with the first `limit` entries of each
    gallery given an "image": the compact overlay PNG (`write_overlay`) of what `trained` (a
    `vitjax.trained.TrainedModel`) looks at in the entry's record (`records`: the split's record source), written once per record
    to `<folder>/explain/<index>_explain.png` (the name relative to `folder`). Unchanged when the task
    has no class logits, without records, or for an entry that already has an image or whose record
    cannot be read (logged)."""
    if not trained.task.class_logits or records is None:
        return list(sections)
    from vitjax.data.transforms import load_rgb

    wanted = list(dict.fromkeys(entry["index"] for section in sections
                                for entry in list(section.get("gallery", ()))[:limit] if not entry.get("image")))
    images = {}
    for index in wanted:
        try:
            images[index] = load_rgb(records[index]["image"], records.describe(index))
        except (OSError, ValueError) as error:  # the data moved since the run: no map for it
            log.warning("report page: no explanation of %s: %s", records.describe(index), error)
    if not images:
        return list(sections)
    os.makedirs(os.path.join(folder, GALLERY_FOLDER), exist_ok=True)
    files = {}
    for index, explanation in zip(images, trained.explain(list(images.values()))):
        files[index] = os.path.join(GALLERY_FOLDER, f"{index}{SUFFIX}")
        write_overlay(explanation, os.path.join(folder, files[index]), compact=True)

    def with_image(entry, position):
        if position >= limit or entry.get("image") or entry["index"] not in files:
            return entry
        return {**entry, "image": files[entry["index"]]}

    return [{**section, "gallery": [with_image(entry, i) for i, entry in enumerate(section["gallery"])]}
            if section.get("gallery") else section for section in sections]
