"""The grain pipeline: shapes, determinism, per-epoch reshuffle, resume, shards, eval padding, caches."""
import os

import numpy as np
import pytest

from test_data_fakes import FakePreprocessing, data_config, make_folder
from vitjax.data import pipeline
from vitjax.data.records import ArraySource
from vitjax.data.sources import open_source

PRE = FakePreprocessing((16, 16))


def _split(n=24, size=20):
    rng = np.random.default_rng(0)
    return ArraySource("toy", rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 3)


def _take(iterator, k):
    return [next(iterator) for _ in range(k)]


def _same(a, b):
    return all(np.array_equal(x["image"], y["image"]) and np.array_equal(x["label"], y["label"])
               for x, y in zip(a, b))


def test_train_batches_shapes_dtypes_determinism_and_epochs():
    cfg = data_config()
    it = pipeline.train_iterator(_split(), PRE, cfg, batch_size=8, seed=1)
    batches = _take(it, 6)  # 2 epochs of 3 batches.
    assert batches[0]["image"].shape == (8, 16, 16, 3) and batches[0]["image"].dtype == np.uint8
    assert batches[0]["label"].shape == (8,) and batches[0]["label"].dtype == np.int32
    again = _take(pipeline.train_iterator(_split(), PRE, cfg, batch_size=8, seed=1), 6)
    assert _same(batches, again)
    other = _take(pipeline.train_iterator(_split(), PRE, cfg, batch_size=8, seed=2), 1)
    assert not _same(batches[:1], other)
    epoch = lambda bs: np.concatenate([b["label"] for b in bs])
    assert sorted(epoch(batches[:3])) == sorted(epoch(batches[3:])) == sorted(np.arange(24) % 3)
    assert not np.array_equal(epoch(batches[:3]), epoch(batches[3:]))  # reshuffled
    assert not np.array_equal(batches[0]["image"], batches[3]["image"])  # new augmentation


def test_resume_continues_with_the_next_batch():
    cfg = data_config(augment__policy="trivialaugment")
    it = pipeline.train_iterator(_split(), PRE, cfg, batch_size=5, seed=0)
    _take(it, 4)
    state = it.get_state()
    expected = _take(it, 4)
    resumed = pipeline.train_iterator(_split(), PRE, cfg, batch_size=5, seed=0, start_state=state)
    assert _same(expected, _take(resumed, 4))
    fresh = pipeline.train_iterator(_split(), PRE, cfg, batch_size=5, seed=0)
    fresh.set_state(state)
    assert _same(expected, _take(fresh, 4))


def test_shards_read_disjoint_records_of_the_same_stream():
    split = ArraySource("ids", np.zeros((12, 4, 4, 3), np.uint8), np.arange(12))
    cfg = data_config(augment__crop_scale=(1.0, 1.0), augment__crop_ratio=(1.0, 1.0))
    pre = FakePreprocessing((4, 4))
    shards = [next(pipeline.train_iterator(split, pre, cfg, batch_size=6, seed=0, shard_index=i, shard_count=2))
              for i in range(2)]
    labels = np.concatenate([s["label"] for s in shards])
    assert sorted(labels.tolist()) == list(range(12))


@pytest.mark.parametrize("shard_count", [1, 3])
def test_eval_pads_and_masks_every_example_once(shard_count):
    split = ArraySource("ids", np.zeros((10, 8, 8, 3), np.uint8), np.arange(10))
    shards = []
    for shard in range(shard_count):
        batches = pipeline.eval_batches(split, PRE, batch_size=4, shard_index=shard, shard_count=shard_count)
        out = list(batches)
        assert len(out) == len(batches) == (3 if shard_count == 1 else 1)
        for b in out:
            assert b["image"].shape == (4, 16, 16, 3) and b["valid"].dtype == np.bool_
            assert not b["image"][~b["valid"]].any()
        shards.append(out)
    # The global batches (each process's rows in turn, as `parallel.global_batch` assembles them)
    # hold every record once, in the split's order: per-example outputs line up with the records.
    rows = [b for batches in zip(*shards) for b in batches]
    seen = np.concatenate([b["label"][b["valid"]] for b in rows])
    assert seen.tolist() == list(range(10))


@pytest.mark.parametrize("cache", ["ram", "disk"])
def test_decode_cache_matches_and_is_filled_once(tmp_path, cache):
    root = make_folder(str(tmp_path / "imgs"), {"": {"a": 3, "b": 3}})
    split = open_source(data_config(source=root, split_fractions=(1, 0, 0), validation_split="train",
                                    test_split="train")).splits["train"]
    cfg = data_config(cache=cache, cache_dir=str(tmp_path / "cache"))
    plain = list(pipeline.eval_batches(split, PRE, batch_size=4))
    cached = pipeline.eval_batches(split, PRE, batch_size=4, data_cfg=cfg)
    assert _same(plain, list(cached)) and _same(plain, list(cached))
    train = _take(pipeline.train_iterator(split, PRE, cfg, batch_size=3, seed=0), 4)  # 2 epochs
    assert train[0]["image"].shape == (3, 16, 16, 3)
    for name in os.listdir(os.path.join(root, "a")):
        os.remove(os.path.join(root, "a", name))  # From now on only the caches can serve the images.
    assert _same(plain, list(cached))
    assert _same(train, _take(pipeline.train_iterator(split, PRE, cfg, batch_size=3, seed=0), 4))


def test_device_augment_ships_the_cached_size():
    cfg = data_config(device_augment=True, cache_scale=1.25)
    assert pipeline.train_image_size(PRE, cfg) == (20, 20)
    batch = next(pipeline.train_iterator(_split(size=40), PRE, cfg, batch_size=4, seed=0))
    assert batch["image"].shape == (4, 20, 20, 3) and batch["image"].dtype == np.uint8


def test_corrupt_file_in_pipeline_names_it(tmp_path):
    root = make_folder(str(tmp_path / "imgs"), {"": {"a": 2, "b": 2}})
    open(os.path.join(root, "b", "img_000.jpg"), "wb").write(b"\xff\xd8 broken")
    with pytest.raises(ValueError, match=r"cannot be decoded .*b/img_000.jpg"):  # the folder scan, before any batch
        open_source(data_config(source=root, split_fractions=(1, 0, 0), validation_split="train",
                                test_split="train"))


def test_worker_processes_give_the_same_batches_and_resume():
    expected = _take(pipeline.train_iterator(_split(), PRE, data_config(), batch_size=4, seed=0), 5)
    cfg = data_config(workers=2)
    it = pipeline.train_iterator(_split(), PRE, cfg, batch_size=4, seed=0)
    try:
        assert _same(expected[:3], _take(it, 3))
        state = it.get_state()
    finally:
        it.close()
    resumed = pipeline.train_iterator(_split(), PRE, cfg, batch_size=4, seed=0, start_state=state)
    try:
        assert _same(expected[3:], _take(resumed, 2))
    finally:
        resumed.close()


def test_device_prefetch_state_is_the_next_unseen_batch():
    cfg = data_config()
    puts = []
    wrapped = pipeline.DevicePrefetch(pipeline.train_iterator(_split(), PRE, cfg, batch_size=4, seed=0),
                                      put=lambda b: puts.append(1) or b, size=2)
    _take(wrapped, 3)
    assert len(puts) == 5  # two batches ahead of the step
    state = wrapped.get_state()
    expected = _take(wrapped, 3)
    resumed = pipeline.train_iterator(_split(), PRE, cfg, batch_size=4, seed=0, start_state=state)
    assert _same(expected, _take(resumed, 3))
    wrapped.set_state(state)
    assert _same(expected, _take(wrapped, 3))


def test_multilabel_records_take_the_decode_cache_and_device_augment_but_refuse_mixup(tmp_path):
    """Multi-label transforms declare the decode cache and device-side augmentation (the labels do not
    depend on the crop), not mixup: a knob the records do not support is named."""
    from vitjax.data.multilabel import MultiLabelSource, multi_hot_transforms

    images = np.random.default_rng(0).integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)
    split = MultiLabelSource("toy", list(images), [[0], [1, 2], [], [2], [0, 1], [1]])
    cfg = data_config(cache="ram", device_augment=True)
    transforms = multi_hot_transforms(PRE, cfg, 3)
    batch = next(pipeline.train_iterator(split, PRE, cfg, batch_size=6, seed=0, record_transforms=transforms))
    assert batch["image"].shape == (6, *pipeline.cached_size(PRE, cfg), 3)
    assert sorted(map(tuple, batch["label"].tolist())) == sorted(
        [(1, 0, 0), (0, 1, 1), (0, 0, 0), (0, 0, 1), (1, 1, 0), (0, 1, 0)])
    cached = [b["label"] for b in pipeline.eval_batches(split, PRE, batch_size=4, data_cfg=cfg,
                                                        record_transforms=transforms)]
    assert np.concatenate(cached)[:6].tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1], [1, 1, 0],
                                                   [0, 1, 0]]
    cfg.augment.mixup_alpha = 0.2
    with pytest.raises(ValueError, match=r"config.data.augment.mixup_alpha: this task's records do not"):
        pipeline.train_iterator(split, PRE, cfg, batch_size=6, seed=0, record_transforms=transforms)
