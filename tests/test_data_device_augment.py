"""Device-side augmentation: crop/flip shapes and exactness, mixup/cutmix soft targets, the step transform."""
import jax
import jax.numpy as jnp
import numpy as np

from test_data_fakes import data_config
from vitjax.data import device_augment as da

IMAGES = jnp.asarray(np.random.default_rng(0).integers(0, 256, (6, 24, 24, 3), dtype=np.uint8))


def test_random_resized_crop_shapes_identity_and_variety():
    out = da.random_resized_crop(jax.random.key(0), IMAGES, (16, 16))
    assert out.shape == (6, 16, 16, 3) and out.dtype == jnp.uint8
    whole = da.random_resized_crop(jax.random.key(0), IMAGES, (24, 24), scale=(1, 1), ratio=(1, 1))
    assert np.array_equal(whole, IMAGES)
    other = da.random_resized_crop(jax.random.key(1), IMAGES, (16, 16))
    assert not np.array_equal(out, other)


def test_random_flip():
    flipped = da.random_flip(jax.random.key(0), IMAGES, prob=1.0)
    assert np.array_equal(flipped, IMAGES[:, :, ::-1])
    assert np.array_equal(da.random_flip(jax.random.key(0), IMAGES, prob=0.0), IMAGES)


def test_mixup_cutmix_soft_targets():
    onehot = jax.nn.one_hot(jnp.arange(6) % 3, 3)
    for seed in range(4):
        images, targets = da.mixup_cutmix(jax.random.key(seed), IMAGES, onehot, 0.4, 1.0, 1.0)
        assert images.shape == IMAGES.shape and images.dtype == jnp.uint8
        assert targets.shape == (6, 3) and np.allclose(targets.sum(1), 1.0)
        assert not np.array_equal(images, IMAGES)
    same, targets = da.mixup_cutmix(jax.random.key(0), IMAGES, onehot, 0.4, 1.0, 0.0)
    assert np.array_equal(same, IMAGES) and np.array_equal(targets, onehot)


def test_cutmix_targets_follow_the_pasted_area():
    onehot = jax.nn.one_hot(jnp.array([0, 1]), 2)
    x = jnp.stack([jnp.zeros((20, 20, 3), jnp.uint8), jnp.full((20, 20, 3), 255, jnp.uint8)])
    images, targets = da.mixup_cutmix(jax.random.key(3), x, onehot, 0.0, 1.0, 1.0)
    pasted = float((images[0, ..., 0] == 255).mean())
    assert np.isclose(targets[0, 1], pasted, atol=1e-6)


def test_train_transform_from_config():
    assert da.train_transform(data_config(), (16, 16), 3) is None
    cfg = data_config(device_augment=True, augment__mixup_alpha=0.2, augment__cutmix_alpha=1.0)
    fn = jax.jit(da.train_transform(cfg, (16, 16), 3))
    batch = fn(jax.random.key(0), {"image": IMAGES, "label": jnp.arange(6, dtype=jnp.int32) % 3})
    assert batch["image"].shape == (6, 16, 16, 3) and batch["image"].dtype == jnp.uint8
    assert batch["label"].shape == (6, 3) and np.allclose(batch["label"].sum(1), 1.0)
    crop_only = da.train_transform(data_config(device_augment=True), (16, 16), 3)
    out = crop_only(jax.random.key(0), {"image": IMAGES, "label": jnp.zeros(6, jnp.int32)})
    assert out["label"].dtype == jnp.int32 and out["image"].shape == (6, 16, 16, 3)
