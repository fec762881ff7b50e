"""The feature cache: a run whose backbone (or its lower blocks) stays frozen trains on features
computed once, not on images.

With `config.train.feature_cache="on"` (or "auto") and every parameter below some encoder block
frozen for the whole run (`optim.freeze="head_only"`, `"last_n_blocks"`, or a regex freezing the
lower part), the frozen part (`vitjax.models.split`) runs once over the training split —
`train.feature_cache_views` augmented views of each image — and once over each evaluated split;
the run then trains and evaluates the rest (the head; with frozen lower blocks also the top blocks
and the final norm) over those features: an epoch of a linear probe costs a matmul, not a forward
pass through the backbone.

Everything else is the ordinary run: `cached_run` returns the same `setup.Run` with two parts
swapped, its data (`CachedData`: batches of features) and its `Steps` (the model view, reading the
features as they are), so the jitted train and eval steps are `Run`'s own. The train state holds the
full parameter tree (frozen tensors untouched), so checkpoints, resume, early stopping, reports and
the export to `best/` are the same. Batches keep the trainer's layout, their "image" entry holding
what the trained part reads (a dict of cached arrays) and the task's other fields of the same view
(labels, masks, boxes: any task). Training
batches follow the image pipeline's order (same seed, same shuffle), one of each image's views
drawn at random. The frozen part runs in inference mode: no dropout or stochastic depth in it.

Features live in RAM, or with `data.cache="disk"` in `data.cache_dir` next to the decode cache, reused
by later runs with the same records, frozen weights, preprocessing, augmentation and views.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import time

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from vitjax import parallel
from vitjax.config import to_dict
from vitjax.data import pipeline
from vitjax.data.cache import disk_cache_dir, fingerprint
from vitjax.data.feature_store import filled_arrays
from vitjax.data.records import record_classes
from vitjax.errors import BadValue
from vitjax.models.model import Model
from vitjax.models.split import split_backbone
from vitjax.optim.groups import layer_index
from vitjax.train import setup

log = logging.getLogger(__name__)

MODES = ("off", "on", "auto")
RAM_SHARE = 0.5  # "auto" keeps features in RAM only while they take at most this share of free memory


def cached_run(run: setup.Run) -> setup.Run:
    """`run` over cached features when `config.train.feature_cache` asks for it and the run allows
    it (see the module docstring); otherwise `run` itself. "on" on a run that cannot is an error."""
    cfg = run.config.train
    if cfg.feature_cache not in MODES:
        raise BadValue(f"config.train.feature_cache={cfg.feature_cache!r}; use one of {MODES}.")
    if cfg.feature_cache == "off":
        return run
    if isinstance(cfg.feature_cache_views, bool) or not isinstance(cfg.feature_cache_views, int) \
            or cfg.feature_cache_views < 1:
        raise BadValue(f"config.train.feature_cache_views={cfg.feature_cache_views!r} must be a "
                       f"positive integer (augmented views of each training image).")
    cut = frozen_blocks(run.training.optimizer, run.model.spec.num_layers)
    obstacles = _obstacles(run, cut)
    if cfg.feature_cache == "on" and obstacles:
        raise BadValue(f"config.train.feature_cache='on' but {'; '.join(obstacles)}. Set "
                       f"config.train.feature_cache='off' (or 'auto').")
    if obstacles:
        log.info("feature cache off: %s", "; ".join(obstacles))
        return run
    cache = FeatureCache(run, cut)
    if cfg.feature_cache == "auto":
        if augments(run.config.data.augment):
            log.info("feature cache off: the training images are augmented (config.data.augment), and "
                     "'auto' never trades augmentation for speed; set 'on' with feature_cache_views")
            return run
        if cfg.epochs <= cfg.feature_cache_views:
            log.info("feature cache off: %s views cost as much as the %s epochs", cfg.feature_cache_views,
                     cfg.epochs)
            return run
        if cache.directory is None and cache.nbytes() > RAM_SHARE * _free_memory():
            log.info("feature cache off: %.1f GB of features would not fit in RAM; set "
                     "config.data.cache='disk' to keep them on disk", cache.nbytes() / 1e9)
            return run
    log.info("feature cache: training %s over cached outputs of the frozen %s (%.2f GB, %s)",
             "the head" if cut is None else f"blocks {cut}.. and the head",
             "backbone" if cut is None else f"blocks 0..{cut - 1}", cache.nbytes() / 1e9,
             cache.directory or "in RAM")
    data = CachedData(**{f.name: getattr(run.data, f.name) for f in dataclasses.fields(run.data)},
                      cache=cache)
    return dataclasses.replace(run, data=data, steps=setup.Steps(module=cache.model, normalize=_as_is))


def frozen_blocks(optimizer, num_layers: int) -> int | None:
    """How many encoder blocks, counted from the embeddings, are frozen for the whole run together
    with the embeddings: None when the whole backbone is frozen (the cut is after its final norm),
    -1 when the embeddings train (nothing to cache)."""
    if optimizer.backbone_frozen:
        return None
    trained = [layer_index(path, num_layers) - 1
               for path, trains in traverse_util.flatten_dict(optimizer.trainable_mask, sep="/").items()
               if trains and path.startswith("backbone/")]
    return min(trained)


def _obstacles(run, cut: int | None) -> list[str]:
    """Why `run` cannot train over cached features (nothing: it can)."""
    data = run.config.data
    found = []
    if cut == -1:
        found.append(f"config.optim.freeze={run.config.optim.freeze!r} trains the embeddings, so no "
                     f"lower part stays frozen (use 'head_only' or 'last_n_blocks')")
    if run.config.lora.targets:
        found.append("config.lora.targets is set (the cached run's top blocks carry no adapters)")
    if run.config.quant.enabled:
        found.append("config.quant.enabled=True (the cached frozen part would run unquantized)")
    if data.device_augment:
        found.append("config.data.device_augment=True (cached views are augmented on the host; set it "
                     "to False)")
    if data.augment.mixup_alpha > 0 or data.augment.cutmix_alpha > 0:
        found.append("config.data.augment.mixup_alpha/cutmix_alpha mix images, not features (set them "
                     "to 0)")
    if jax.process_count() > 1:
        found.append("the run has several processes (the cache is built by one)")
    return found


def augments(augment_cfg) -> bool:
    """Whether the training transform is random (a crop, flip, policy, jitter or erasing)."""
    a = augment_cfg
    return (tuple(a.crop_scale) != (1.0, 1.0) or tuple(a.crop_ratio) != (1.0, 1.0) or a.hflip > 0
            or a.policy != "none" or a.color_jitter > 0 or a.random_erasing > 0)


def _free_memory() -> int:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class FeatureCache:
    """The frozen part of a run's model, the model view that trains over its outputs, and those
    outputs per split: the training views `[views, N, ...]`, the evaluation batches `[rows, ...]`."""

    def __init__(self, run: setup.Run, cut: int | None):
        self.run, self.cut = run, cut
        self.views = run.config.train.feature_cache_views
        grid = tuple(s // run.model.spec.patch_size for s in run.model.preprocessing.input_size)
        self.bottom, top = split_backbone(run.model.module.backbone, cut, grid)
        self.model = Model(top, run.model.module.head)
        data = run.config.data
        self.directory = disk_cache_dir(data) if data.cache == "disk" else None
        self._eval: dict[str, pipeline.EvalBatches] = {}
        image = jnp.zeros((1, *run.model.preprocessing.input_size, run.model.spec.num_channels), jnp.uint8)
        self._row = jax.eval_shape(self._outputs, run.model.params, image)  # name -> [1, ...]

    # ---- the frozen part ---------------------------------------------------------------------
    def _bottom_outputs(self, params, images):
        return self.bottom.apply({"params": params["backbone"]}, self.run.model.normalize(images), train=False)

    def _outputs(self, params, images) -> dict:
        """What the model view reads of the frozen part's outputs on uint8 `images`."""
        out = self._bottom_outputs(params, images)
        return {name: out[name] for name in self._read_by_top(out)}

    def _read_by_top(self, outputs: dict) -> list[str]:
        """The entries of the frozen part's output dict that the model view reads (the head of a
        linear probe reads "cls" alone, not the [T, D] tokens)."""
        read = _Reads(outputs)
        self.model.init(jax.random.key(0), read, train=False)
        return sorted(read.names)

    @functools.cached_property
    def _extract(self):
        params = jax.device_put(self.run.model.params, parallel.replicated(self.run.mesh))
        outputs = jax.jit(self._outputs, out_shardings=parallel.replicated(self.run.mesh))
        return lambda images: jax.device_get(
            outputs(params, parallel.global_batch({"image": images}, self.run.mesh)["image"]))

    def nbytes(self) -> int:
        """The bytes the features take: every view of the training split and every evaluated split."""
        row = sum(np.prod(s.shape[1:]) * s.dtype.itemsize for s in self._row.values())
        splits = self.run.data.dataset.splits
        rows = self.views * len(splits["train"]) + sum(len(v) for k, v in splits.items() if k != "train")
        return int(row * rows)

    # ---- where the features live -------------------------------------------------------------
    def _path(self, split: str, kind: str, *extra) -> str | None:
        """The file prefix of a split's features in `data.cache_dir` (None: RAM), named by a
        fingerprint of the records and of everything the features depend on."""
        if self.directory is None:
            return None
        run = self.run
        h = hashlib.sha256()
        h.update(repr((self.cut, sorted(self._row), run.model.spec, run.model.module.backbone.dtype,
                       run.model.module.backbone.attention_impl, run.model.module.backbone.patch_embed,
                       repr(run.model.preprocessing), *extra)).encode())
        h.update(self._weights_digest)
        records = run.data.dataset.splits[split]
        h.update(fingerprint(records, kind, run.model.preprocessing.input_size, "").encode())
        # The stored targets follow the records' classes where `labels()` do not hold them all.
        h.update(repr([c.tolist() for c in record_classes(records) or ()]).encode())
        return os.path.join(self.directory, f"vitjax-features-{split}-{h.hexdigest()[:20]}")

    @functools.cached_property
    def _weights_digest(self) -> bytes:
        """A digest of the backbone's weights (the frozen part's among them)."""
        h = hashlib.sha256()
        frozen = traverse_util.flatten_dict(self.run.model.params["backbone"], sep="/")
        for name in sorted(frozen):
            h.update(name.encode())
            h.update(np.ascontiguousarray(frozen[name]).tobytes())
        return h.digest()

    def _layout(self, lead: tuple[int, ...]) -> dict:
        """The features' arrays and the examples' other fields (the task's targets, their shapes
        those of its padding example), each with `lead` axes."""
        fields = {FIELD + name: ((*lead, *np.shape(value)), np.asarray(value).dtype)
                  for name, value in self.run.data.record_transforms.padding.items() if name != "image"}
        return {**{name: ((*lead, *s.shape[1:]), s.dtype) for name, s in self._row.items()}, **fields}

    # ---- training views ----------------------------------------------------------------------
    @functools.cached_property
    def train_features(self) -> dict[str, np.ndarray]:
        """Name -> [views, N, ...]: the frozen part's outputs on each view of every training image."""
        run, data = self.run, self.run.config.data
        split = run.data.dataset.splits["train"]
        path = self._path("train", "train-views", self.views, run.config.seed, to_dict(data.augment),
                          data.cache_scale)
        source, augment = pipeline.train_examples(split, run.model.preprocessing, data, run.data.record_transforms)
        batch = run.data.per_process_eval_batch

        def fill(arrays):
            start = time.time()
            for view in range(self.views):
                ds = grain.MapDataset.source(source).seed((run.config.seed + 7919 * (view + 1)) % 2**32)
                ds = ds.random_map(augment).batch(batch)
                offset = 0
                for examples in pipeline.parallel_reader(ds, data, data.workers):
                    n = len(examples["image"])
                    values = {**self._extract(_padded(examples["image"], batch)), **_fields(examples)}
                    for name, value in values.items():
                        arrays[name][view, offset:offset + n] = value[:n]
                    offset += n
            log.info("feature cache: %d training images x %d views through the frozen part in %.1f s",
                     len(split), self.views, time.time() - start)

        return filled_arrays(path, self._layout((self.views, len(split))), fill)

    def train_iterator(self, batch_size: int, seed: int, data_cfg):
        """Endless batches {"image": {name: [b, ...]}, <the task's fields>} in the image pipeline's
        order."""
        size = len(self.run.data.dataset.splits["train"])
        ds = grain.MapDataset.range(size).seed(seed % 2**32).shuffle().repeat(None)
        ds = ds.random_map(_PickView(self.train_features, self.views))
        return iter(pipeline.parallel_reader(ds.batch(batch_size, drop_remainder=True), data_cfg, workers=0))

    # ---- evaluation splits -------------------------------------------------------------------
    def eval_batches(self, split: str) -> pipeline.EvalBatches:
        """The run's evaluation batches of `split` with the images replaced by their features."""
        if split not in self._eval:
            images = self.run.eval_batches(split)
            batch = self.run.data.per_process_eval_batch
            rows = len(images) * batch
            layout = {**self._layout((rows,)), FIELD + "valid": ((rows,), np.bool_)}

            def fill(arrays):
                for i, examples in enumerate(images):
                    values = {**self._extract(examples["image"]), **_fields(examples)}
                    for name, value in values.items():
                        arrays[name][i * batch:(i + 1) * batch] = value

            arrays = filled_arrays(self._path(split, "eval", batch), layout, fill)
            batches = [_batch(arrays, slice(i, i + batch)) for i in range(0, rows, batch)]
            self._eval[split] = pipeline.EvalBatches(batches, len(batches), images.num_examples)
        return self._eval[split]


class _Reads(dict):
    """A dict that records which entries are read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.names = set()

    def __getitem__(self, name):
        self.names.add(name)
        return super().__getitem__(name)


def _padded(images: np.ndarray, batch: int) -> np.ndarray:
    """`images` with zero rows appended up to `batch` rows (one compiled shape for the last batch)."""
    missing = batch - len(images)
    return images if missing == 0 else np.concatenate([images, np.zeros((missing, *images.shape[1:]),
                                                                         images.dtype)])


# Arrays of the examples' fields other than the image are stored under this prefix, beside the features.
FIELD = "field."


def _fields(examples: dict) -> dict:
    """An example batch's fields other than the image, under their stored names."""
    return {FIELD + name: value for name, value in examples.items() if name != "image"}


def _batch(arrays: dict, rows) -> dict:
    """{"image": {feature name: rows}, field: rows, ...} of stored arrays."""
    batch = {"image": {}}
    for name, values in arrays.items():
        if name.startswith(FIELD):
            batch[name.removeprefix(FIELD)] = np.asarray(values[rows])
        else:
            batch["image"][name] = np.asarray(values[rows])
    return batch


@dataclasses.dataclass(frozen=True)
class _PickView(grain.transforms.RandomMap):
    """Training record index -> one of its cached views (at random): {"image": features, fields}."""

    arrays: dict
    views: int

    def random_map(self, index, rng: np.random.Generator) -> dict:
        view = int(rng.integers(self.views)) if self.views > 1 else 0
        return _batch(self.arrays, (view, index))


def _as_is(inputs):
    return inputs


@dataclasses.dataclass
class CachedData(setup.DataPart):
    """The run's data with the images replaced by the frozen part's outputs: what the model view
    (`Steps` of `cached_run`) reads."""

    cache: FeatureCache

    def train_iterator(self) -> pipeline.DevicePrefetch:
        host = self.cache.train_iterator(self.per_process_batch, self.config.seed, self.config.data)
        return pipeline.DevicePrefetch(host, lambda batch: parallel.global_batch(batch, self.mesh))

    def eval_batches(self, split: str) -> pipeline.EvalBatches:
        return self.cache.eval_batches(split)
