"""The grain input pipeline: an endless, sharded, resumable training iterator and padded eval batches.

Training: source -> (decode, or decode+resize+cache) -> per-epoch shuffle -> repeat -> per-record random
augmentation -> batch -> this process's batches -> threads / worker processes. The augmentation of record i
of the endless stream is seeded from (seed, i), so a run is deterministic given the seed, and the
iterator's `get_state()` (a small dict) restores the stream at the very next batch.
With `device_augment`, the host ships images resized once to `train_image_size()` and
`vitjax.data.device_augment` crops/flips them on the accelerator.

Evaluation: each of `shard_count` processes gets records shard_index, shard_index + shard_count, ...;
all processes yield the same number of batches, and padding rows (zeros, label 0) have valid=False, so
every record counts exactly once.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Iterator

import grain
from absl import flags
import numpy as np
from PIL import Image

from vitjax.data import transforms
from vitjax.data.cache import DecodedSource, cache_path


def cached_size(preprocessing, data_cfg) -> tuple[int, int]:
    """(H, W) training images are resized to once (cache, device path): input size * cache_scale."""
    scale = data_cfg.get("cache_scale", 1.15)
    return tuple(int(round(s * scale)) for s in preprocessing.input_size)


def train_image_size(preprocessing, data_cfg) -> tuple[int, int]:
    """(H, W) of the training images the host ships: the model input size, or with device_augment
    the cached size the device crops from."""
    if data_cfg.get("device_augment", False):
        return cached_size(preprocessing, data_cfg)
    return tuple(preprocessing.input_size)


def _read_options(data_cfg) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=data_cfg.get("read_threads", 4),
                             prefetch_buffer_size=max(1, data_cfg.get("prefetch", 4)))


def _parallel(ds: grain.MapDataset, data_cfg) -> grain.IterDataset:
    """Threads in this process, plus `data_cfg.workers` worker processes when > 0."""
    it_ds = ds.to_iter_dataset(_read_options(data_cfg))
    workers = data_cfg.get("workers", 0)
    if workers > 0:
        if not flags.FLAGS.is_parsed():
            # grain reads its absl flags when starting workers; outside an absl app (notebooks, tests)
            # they are taken with their defaults. vitjax.main parses the command line first.
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=workers, per_worker_buffer_size=max(1, data_cfg.get("prefetch", 4))))
    return it_ds


@dataclasses.dataclass(frozen=True)
class TrainAugment(grain.transforms.RandomMap):
    """Decoded record -> {"image": uint8 [H, W, 3], "label": int32}; crop/flip skipped when `size` is None."""

    augment_cfg: Any
    size: tuple[int, int] | None
    resample: int

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        image = record["image"]
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        x = transforms.augment(image, rng, self.augment_cfg, self.size, self.resample)
        return {"image": x, "label": np.int32(record["label"])}


def _check_batch(batch_size: int, shard_index: int, shard_count: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (the per-process batch), got {batch_size}.")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index={shard_index} must be in [0, shard_count={shard_count}).")


def train_iterator(split, preprocessing, data_cfg, *, batch_size: int, seed: int, shard_index: int = 0,
                   shard_count: int = 1, start_state: dict | None = None) -> grain.DatasetIterator:
    """Endless iterator of training batches {"image": uint8 [b, H, W, 3], "label": int32 [b]}.

    b = batch_size is the per-process batch; (H, W) = `train_image_size(preprocessing, data_cfg)`.
    Reshuffled every epoch, deterministic given `seed`; this process reads only every shard_count-th
    batch of the shuffled stream. `get_state()` / `set_state()` (or `start_state`) resume it exactly.
    """
    _check_batch(batch_size, shard_index, shard_count)
    if len(split) == 0:
        raise ValueError("The training split has no images.")
    device_side = data_cfg.get("device_augment", False)
    cached = data_cfg.get("cache", "none") != "none"
    resample = preprocessing.resample
    if device_side or cached:
        # Decode and resize once (the cache stores this); random crops are then taken from it.
        h, w = cached_size(preprocessing, data_cfg)
        shape = (h, w, 3)
        path = cache_path(data_cfg, split, "train", shape, f"resample={resample}")
        source = DecodedSource(split, functools.partial(transforms.squash, size=(h, w), resample=resample),
                               shape, path)
    else:
        source = DecodedSource(split)
    ds = grain.MapDataset.source(source).shuffle(seed % 2**32).repeat(None)
    size = None if device_side else tuple(preprocessing.input_size)
    ds = ds.random_map(TrainAugment(data_cfg.augment, size, resample), seed=seed % 2**32)
    # Process p takes batches p, p + shard_count, ... of the stream cut into per-process batches, so
    # the global batch (process 0's rows first) is the same records in the same order whatever the
    # process count, and `next_index` (batches drawn) resumes on another process count.
    ds = ds.batch(batch_size, drop_remainder=True)[shard_index::shard_count]
    iterator = iter(_parallel(ds, data_cfg))
    if start_state is not None:
        iterator.set_state(start_state)
    return iterator


@dataclasses.dataclass(frozen=True)
class _EvalRecord(grain.transforms.Map):
    """Position j of this shard -> the record shard_index + j * shard_count, or a padding row."""

    source: DecodedSource
    shard_index: int
    shard_count: int
    shape: tuple[int, int, int]

    def map(self, j) -> dict:
        index = self.shard_index + int(j) * self.shard_count
        if index >= len(self.source):
            return {"image": np.zeros(self.shape, np.uint8), "label": np.int32(0), "valid": np.bool_(False)}
        record = self.source[index]
        return {"image": record["image"], "label": np.int32(record["label"]), "valid": np.bool_(True)}


class EvalBatches:
    """Re-iterable evaluation batches {"image", "label", "valid"}; `len()` is the number of batches."""

    def __init__(self, dataset: grain.IterDataset, num_batches: int, num_examples: int):
        self.dataset, self.num_batches, self.num_examples = dataset, num_batches, num_examples

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.dataset)


def eval_batches(split, preprocessing, *, batch_size: int, shard_index: int = 0, shard_count: int = 1,
                 data_cfg=None) -> EvalBatches:
    """Evaluation batches of `Preprocessing.to_uint8` images; padding rows have valid=False.

    Every process yields ceil(ceil(N / shard_count) / batch_size) batches, so hosts stay in step and
    each of the N records is valid in exactly one row across all shards. `data_cfg` (optional) supplies
    workers/read_threads/prefetch and the decode cache; None = in-process threads, no cache.
    """
    _check_batch(batch_size, shard_index, shard_count)
    data_cfg = data_cfg if data_cfg is not None else {"workers": 0, "cache": "none"}
    n = len(split)
    if n == 0:
        raise ValueError("The evaluation split has no images.")
    shape = (*preprocessing.input_size, 3)
    path = cache_path(data_cfg, split, "eval", shape, repr(preprocessing))
    source = DecodedSource(split, preprocessing.to_uint8, shape, path)
    num_batches = math.ceil(math.ceil(n / shard_count) / batch_size)
    ds = grain.MapDataset.range(num_batches * batch_size).map(
        _EvalRecord(source, shard_index, shard_count, shape)).batch(batch_size)
    return EvalBatches(_parallel(ds, data_cfg), num_batches, n)
