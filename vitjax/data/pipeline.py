"""The grain input pipeline: an endless, sharded, resumable training iterator and padded eval batches.

Training: source -> (decode, or decode+resize+cache) -> per-epoch shuffle -> repeat -> per-record random
augmentation -> batch -> this process's batches -> threads / worker processes. The augmentation of record i
of the endless stream is seeded from (seed, i), so a run is deterministic given the seed, and the
iterator's `get_state()` (a small dict) restores the stream at the very next batch.
With `device_augment`, the host ships images resized once to `train_image_size()` and
`vitjax.data.device_augment` crops/flips them on the accelerator.

`DevicePrefetch` keeps a few batches in flight to the accelerator with an exact `get_state()`.

Evaluation: each of `shard_count` processes gets records shard_index, shard_index + shard_count, ...;
all processes yield the same number of batches, and padding rows (zeros, label 0) have valid=False, so
every record counts exactly once.

Records become examples through a task's `RecordTransforms`: its train and eval transforms from a
record to an example dict of fixed-shape arrays, the padding example of eval batches, and the knobs
the records support (decode cache, device-side augmentation, mixup/cutmix), which the pipeline and
the train step ask for; `image_label_transforms` are those of image + class-label records. The
stream, sharding, batching, seeding and resumption are the same for every task.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import math
from typing import Any, Callable, Iterator

import grain
from absl import flags
import numpy as np
from PIL import Image

from vitjax.data import leftovers, transforms
from vitjax.data.cache import DecodedSource, cache_path
from vitjax.data.config import default_config
from vitjax.errors import BadValue


def cached_size(preprocessing, data_cfg) -> tuple[int, int]:
    """(H, W) training images are resized to once (cache, device path): input size * cache_scale."""
    scale = data_cfg.cache_scale
    return tuple(int(round(s * scale)) for s in preprocessing.input_size)


def train_image_size(preprocessing, data_cfg) -> tuple[int, int]:
    """(H, W) of the training images the host ships: the model input size, or with device_augment
    the cached size the device crops from."""
    if data_cfg.device_augment:
        return cached_size(preprocessing, data_cfg)
    return tuple(preprocessing.input_size)


def _read_options(data_cfg) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=data_cfg.read_threads,
                             prefetch_buffer_size=max(1, data_cfg.prefetch))


def parallel_reader(ds: grain.MapDataset, data_cfg, workers: int) -> grain.IterDataset:
    """Threads in this process (data_cfg.read_threads), plus `workers` worker processes when > 0."""
    it_ds = ds.to_iter_dataset(_read_options(data_cfg))
    if workers > 0:
        if not flags.FLAGS.is_parsed():
            # grain reads its absl flags when starting workers; outside an absl app (notebooks, tests)
            # they are taken with their defaults. vitjax.main parses the command line first.
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=workers, per_worker_buffer_size=max(1, data_cfg.prefetch)),
            worker_init_fn=leftovers.die_with_parent)
    return it_ds


@dataclasses.dataclass(frozen=True)
class RecordTransforms:
    """A task's record -> example transforms and what they support (picklable, for grain's workers).

    `train(record, rng)` and `eval(record)` take a record of the split and return a dict of numpy
    arrays whose shapes do not depend on the record; `padding` is the example used for the padding
    rows of eval batches (`valid` is added to both). The flags declare which knobs these records
    support; a knob set for transforms that do not declare it is an error naming the key.

    - `decode_cache`: the pipeline decodes each record's "image" before the transforms (the other
      fields pass unchanged), resized once and kept by `config.data.cache`. `train` then gets a PIL
      image, or with the cache or `device_augment` a uint8 array [*cached_size, 3]; `eval` gets the
      uint8 array of `Preprocessing.to_uint8` (the checkpoint's resize and crop), which is also how
      prediction (predict, serve, exports) prepares an image. Without it, transforms read the
      record's image themselves and prediction resizes the whole image to the input size (so masks
      and boxes map back onto it).
    - `device_augment`: with `config.data.device_augment`, `train` leaves the image uncropped at
      `train_image_size` and the accelerator crops and flips it (`vitjax.data.device_augment`); the
      example's other fields do not depend on the crop.
    - `mixup`: the example's "label" is an int32 class index, which the train step may mix into
      soft float targets [B, C] (`config.data.augment.mixup_alpha` / `cutmix_alpha`).
    """

    train: Callable[[dict, np.random.Generator], dict]
    eval: Callable[[dict], dict]
    padding: dict[str, np.ndarray]
    decode_cache: bool = False
    device_augment: bool = False
    mixup: bool = False


def _check_transforms(record_transforms: RecordTransforms, data_cfg) -> None:
    """Every knob `data_cfg` turns on is one the records support."""
    augment = data_cfg.augment
    knobs = {  # key: (turned on, the declaration it needs)
        "config.data.cache": (data_cfg.cache != "none", "decode_cache"),
        "config.data.device_augment": (data_cfg.device_augment, "device_augment"),
        "config.data.augment.mixup_alpha": (augment.get("mixup_alpha", 0) > 0, "mixup"),
        "config.data.augment.cutmix_alpha": (augment.get("cutmix_alpha", 0) > 0, "mixup"),
    }
    named = [key for key, (used, flag) in knobs.items() if used and not getattr(record_transforms, flag)]
    if named:
        flags_needed = sorted({knobs[key][1] for key in named})
        raise BadValue(f"{', '.join(named)}: this task's records do not support "
                       f"{'it' if len(named) == 1 else 'them'} (its RecordTransforms do not declare "
                       f"{' or '.join(flags_needed)}); set {'it' if len(named) == 1 else 'them'} back to "
                       "the default.")


@dataclasses.dataclass(frozen=True)
class _TaskTrain(grain.transforms.RandomMap):
    """A task's train transform as a grain random map."""

    transform: Callable[[dict, np.random.Generator], dict]

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        return self.transform(record, rng)


@dataclasses.dataclass(frozen=True)
class TrainAugment:
    """Decoded record -> {"image": uint8 [H, W, 3], "label": int32}; crop/flip skipped when `size` is None."""

    augment_cfg: Any
    size: tuple[int, int] | None
    resample: int

    def image(self, record: dict, rng: np.random.Generator) -> np.ndarray:
        """The record's decoded image, augmented."""
        image = record["image"]
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        return transforms.augment(image, rng, self.augment_cfg, self.size, self.resample)

    def __call__(self, record: dict, rng: np.random.Generator) -> dict:
        return {"image": self.image(record, rng), "label": np.int32(record["label"])}


def _image_label(record: dict) -> dict:
    return {"image": record["image"], "label": np.int32(record["label"])}


def image_label_transforms(preprocessing, data_cfg) -> RecordTransforms:
    """The transforms of {"image", "label": class index} records, supporting every knob: host
    augmentation (`vitjax.data.transforms.augment`) for training, the decoded image for evaluation."""
    size = None if data_cfg.device_augment else tuple(preprocessing.input_size)  # None: the device crops
    return RecordTransforms(
        train=TrainAugment(data_cfg.augment, size, preprocessing.resample),
        eval=_image_label,
        padding={"image": np.zeros((*preprocessing.input_size, 3), np.uint8), "label": np.int32(0)},
        decode_cache=True, device_augment=True, mixup=True)


def _check_batch(batch_size: int, shard_index: int, shard_count: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (the per-process batch), got {batch_size}.")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index={shard_index} must be in [0, shard_count={shard_count}).")


def train_iterator(split, preprocessing, data_cfg, *, batch_size: int, seed: int, shard_index: int = 0,
                   shard_count: int = 1, start_state: dict | None = None,
                   record_transforms: RecordTransforms | None = None) -> grain.DatasetIterator:
    """Endless iterator of training batches: `record_transforms.train` examples (by default
    `image_label_transforms`: {"image": uint8 [b, H, W, 3], "label": int32 [b]}).

    b = batch_size is the per-process batch; (H, W) = `train_image_size(preprocessing, data_cfg)`.
    Reshuffled every epoch, deterministic given `seed`; this process reads only every shard_count-th
    batch of the shuffled stream. `get_state()` / `set_state()` (or `start_state`) resume it exactly.
    """
    _check_batch(batch_size, shard_index, shard_count)
    if len(split) == 0:
        raise BadValue("The training split has no images.")
    source, augment = train_examples(split, preprocessing, data_cfg, record_transforms)
    # One seed for the pipeline; grain derives the shuffle's and the augmentation's seeds from it.
    ds = grain.MapDataset.source(source).seed(seed % 2**32).shuffle().repeat(None)
    ds = ds.random_map(augment)
    # Process p takes batches p, p + shard_count, ... of the stream cut into per-process batches, so
    # the global batch (process 0's rows first) is the same records in the same order whatever the
    # process count, and `next_index` (batches drawn) resumes on another process count.
    ds = ds.batch(batch_size, drop_remainder=True)[shard_index::shard_count]
    iterator = iter(parallel_reader(ds, data_cfg, data_cfg.workers))
    if start_state is not None:
        iterator.set_state(start_state)
    return iterator


def train_examples(split, preprocessing, data_cfg, record_transforms: RecordTransforms | None = None
                   ) -> tuple[Any, grain.transforms.RandomMap]:
    """(the source, the random map) that turn `split`'s records into training examples: the records
    decoded (resized and cached) when the transforms declare `decode_cache`, then their `train`."""
    record_transforms = record_transforms or image_label_transforms(preprocessing, data_cfg)
    _check_transforms(record_transforms, data_cfg)
    source = split
    if record_transforms.decode_cache:
        resample = preprocessing.resample
        if data_cfg.device_augment or data_cfg.cache != "none":
            # Decode and resize once (the cache stores this); random crops are then taken from it.
            h, w = cached_size(preprocessing, data_cfg)
            shape = (h, w, 3)
            path = cache_path(data_cfg, split, "train", shape, f"resample={resample},draft={max(h, w)}")
            source = DecodedSource(split, functools.partial(transforms.squash, size=(h, w), resample=resample),
                                   shape, path, draft_size=max(h, w))
        else:
            source = DecodedSource(split)
    return source, _TaskTrain(record_transforms.train)


@dataclasses.dataclass(frozen=True)
class _TaskEvalRecord(grain.transforms.Map):
    """Position j of this shard -> a task's eval example, or its padding example. Each global batch
    holds consecutive records, process 0's rows first: the rows of the global batches, in order,
    are the split's records in order (a task collecting per-example outputs finds record i at
    row i)."""

    source: Any
    shard_index: int
    shard_count: int
    batch_size: int
    transforms: RecordTransforms

    def map(self, j) -> dict:
        batch, row = divmod(int(j), self.batch_size)
        index = (batch * self.shard_count + self.shard_index) * self.batch_size + row
        if index >= len(self.source):
            return {**self.transforms.padding, "valid": np.bool_(False)}
        return {**self.transforms.eval(self.source[index]), "valid": np.bool_(True)}


def eval_source(split, preprocessing, data_cfg, record_transforms: RecordTransforms):
    """The records `record_transforms.eval` reads: with `decode_cache`, decoded and prepared by
    `Preprocessing.to_uint8` (kept by `config.data.cache`); else `split` itself."""
    if not record_transforms.decode_cache:
        return split
    shape = (*preprocessing.input_size, 3)
    return DecodedSource(split, preprocessing.to_uint8, shape,
                         cache_path(data_cfg, split, "eval", shape, repr(preprocessing)))


class EvalBatches:
    """Re-iterable evaluation batches (the examples' fields and "valid"); `len()` is the number of batches."""

    def __init__(self, dataset: grain.IterDataset, num_batches: int, num_examples: int):
        self.dataset, self.num_batches, self.num_examples = dataset, num_batches, num_examples

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.dataset)


def eval_batches(split, preprocessing, *, batch_size: int, shard_index: int = 0, shard_count: int = 1,
                 data_cfg=None, record_transforms: RecordTransforms | None = None) -> EvalBatches:
    """Evaluation batches of `split`; padding rows have valid=False.

    Every process yields ceil(ceil(N / shard_count) / batch_size) batches, so hosts stay in step and
    each of the N records is valid in exactly one row across all shards; the global batches (process
    0's rows first) hold the records in the split's order. `data_cfg` (optional) supplies
    read_threads/prefetch and the decode cache (None: `vitjax.data.config.default_config()`'s). Evaluation decodes in
    threads of this process (PIL releases the GIL), not worker processes, which would be started
    anew on every pass. Rows are `record_transforms.eval(record)` (by default
    `image_label_transforms`'), padding rows its `padding`.
    """
    _check_batch(batch_size, shard_index, shard_count)
    data_cfg = data_cfg if data_cfg is not None else default_config()
    record_transforms = record_transforms or image_label_transforms(preprocessing, data_cfg)
    _check_transforms(record_transforms, data_cfg)
    n = len(split)
    if n == 0:
        raise BadValue("The evaluation split has no images.")
    num_batches = math.ceil(math.ceil(n / shard_count) / batch_size)
    source = eval_source(split, preprocessing, data_cfg, record_transforms)
    ds = grain.MapDataset.range(num_batches * batch_size).map(
        _TaskEvalRecord(source, shard_index, shard_count, batch_size, record_transforms)).batch(batch_size)
    return EvalBatches(parallel_reader(ds, data_cfg, workers=0), num_batches, n)


class DevicePrefetch:
    """Keeps `size` batches of a checkpointable iterator on their way to the device.

    `put` moves a host batch (e.g. `lambda b: jax.device_put(b, sharding)`; asynchronous in JAX), so the
    next batch's transfer overlaps the current step. `get_state()` is the wrapped iterator's state before
    the first batch not yet returned, so a checkpoint resumes with the very next batch the step would see.
    """

    def __init__(self, iterator, put: Callable[[dict], Any], size: int = 2):
        if size < 1:
            raise ValueError(f"DevicePrefetch size must be >= 1, got {size}.")
        self._iterator, self._put, self._size = iterator, put, size
        self._queue: collections.deque = collections.deque()

    def __iter__(self):
        return self

    def _fill(self) -> None:
        while len(self._queue) < self._size:
            state = copy.deepcopy(self._iterator.get_state())
            self._queue.append((state, self._put(next(self._iterator))))

    def __next__(self):
        self._fill()
        _, batch = self._queue.popleft()
        self._fill()
        return batch

    def get_state(self) -> dict:
        return copy.deepcopy(self._queue[0][0] if self._queue else self._iterator.get_state())

    def set_state(self, state: dict) -> None:
        self._queue.clear()
        self._iterator.set_state(state)

    def close(self) -> None:
        self._queue.clear()
        if hasattr(self._iterator, "close"):
            self._iterator.close()
