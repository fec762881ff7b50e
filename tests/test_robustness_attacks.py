"""FGSM on a linear model equals its closed form; PGD stays in the epsilon ball and the pixel box."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.robustness import attacks


class Linear(nn.Module):
    """logits = W . flatten(x) + b: the model whose FGSM step has a closed form."""

    classes: int

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(self.classes)(x.reshape(x.shape[0], -1))


def _setup(multilabel=False):
    rng = np.random.default_rng(0)
    model = Linear(4)
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    images[0, 0, 0] = (0, 255, 128)  # pixels at the box edges
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    labels = (rng.random((6, 4)) > 0.5).astype(np.float32) if multilabel else rng.integers(0, 4, 6)
    valid = np.array([True] * 5 + [False])
    batch = {"image": images, "label": labels, "valid": valid}
    preprocessing = Preprocessing(size=(8, 8), mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    return model, params, batch, preprocessing


@pytest.mark.parametrize("multilabel", [False, True])
def test_fgsm_on_a_linear_model_equals_its_closed_form(multilabel):
    model, params, batch, preprocessing = _setup(multilabel)
    perturb = attacks.make_perturb(model, preprocessing.normalize)
    epsilon = 4.0
    adversarial = np.asarray(perturb(params, batch, *attacks.Attack.fgsm(epsilon).args(),
                                     jax.random.key(1)))

    # d loss / d x = (rescale / std) * (d loss / d logits) W^T, per channel of the flattened input.
    w, b = np.asarray(params["Dense_0"]["kernel"], np.float64), np.asarray(params["Dense_0"]["bias"])
    x = batch["image"].astype(np.float64)
    normalized = (x / 255 - np.array(preprocessing.mean)) / np.array(preprocessing.std)
    logits = normalized.reshape(6, -1) @ w + b
    if multilabel:  # mean sigmoid cross-entropy over the 4 labels
        d_logits = (special.expit(logits) - batch["label"]) / 4
    else:
        d_logits = special.softmax(logits, axis=-1) - np.eye(4)[batch["label"]]
    d_x = (d_logits @ w.T).reshape(x.shape) / 255 / np.array(preprocessing.std)
    d_x[~batch["valid"]] = 0  # padding rows are not attacked
    expected = np.clip(x + epsilon * np.sign(d_x), 0, 255)
    np.testing.assert_allclose(adversarial, expected, atol=1e-4)
    assert np.abs(adversarial - x).max() == pytest.approx(epsilon)


def test_pgd_stays_in_the_ball_and_the_box_and_raises_the_loss():
    model, params, batch, preprocessing = _setup()
    epsilon = 3.0
    x = batch["image"].astype(np.float32)

    def loss(pixels):
        logits = model.apply({"params": params}, preprocessing.normalize(jnp.asarray(pixels)))
        return float(attacks.attack_loss(logits, batch["label"])[:5].mean())

    perturb = jax.jit(attacks.make_perturb(model, preprocessing.normalize))
    fgsm = perturb(params, batch, *attacks.Attack.fgsm(epsilon).args(), jax.random.key(2))
    pgd = np.asarray(perturb(params, batch, *attacks.Attack.pgd(epsilon).args(), jax.random.key(2)))
    assert np.abs(pgd - x).max() <= epsilon + 1e-4
    assert pgd.min() >= 0 and pgd.max() <= 255
    assert loss(pgd) >= loss(fgsm) - 1e-6 > loss(x)
    for attack in (attacks.NONE, attacks.Attack.fgsm(0.0), attacks.Attack.pgd(0.0)):
        unchanged = perturb(params, batch, *attack.args(), jax.random.key(3))
        np.testing.assert_array_equal(np.asarray(unchanged), x)
