"""FGSM and PGD attacks in pixel space: the perturbation lives on the uint8 scale [0, 255] (an
epsilon of 8 is the literature's 8/255), goes through the checkpoint's normalisation into the model,
and the adversarial image stays in the [0, 255] box.

Both are one function, `perturb`: from the clean image plus `start` times a uniform draw from the
epsilon ball, `steps` signed-gradient steps of `step_size`, each projected back onto the ball and the
box. FGSM (Goodfellow et al., 2015) is one step of epsilon without a random start; PGD (Madry et al.,
2018) starts at a random point and takes `steps` steps of 2.5 epsilon / steps. The step count is a
traced loop bound, so the clean evaluation (0 steps), FGSM and PGD at every epsilon share one
compiled program. The loss ascended is cross-entropy with the hard labels (the mean sigmoid
cross-entropy of multi-hot targets in multi-label classification), never the training loss with its
label smoothing: smoothing rewards lowering a confident true logit, which would blunt the attack.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Attack:
    """The traced arguments of `perturb`: epsilon and step size in pixel levels, the number of
    steps, and the random start's scale (0: start at the clean image)."""

    epsilon: float = 0.0
    step_size: float = 0.0
    steps: int = 0
    start: float = 0.0

    @classmethod
    def fgsm(cls, epsilon: float) -> "Attack":
        return cls(epsilon, epsilon, 1, 0.0)

    @classmethod
    def pgd(cls, epsilon: float, steps: int = 10, step_ratio: float = 2.5) -> "Attack":
        return cls(epsilon, step_ratio * epsilon / steps, steps, 1.0)

    def args(self) -> tuple:
        return (jnp.float32(self.epsilon), jnp.float32(self.step_size), jnp.int32(self.steps),
                jnp.float32(self.start))


NONE = Attack()  # the clean images


def attack_loss(logits, labels) -> jnp.ndarray:
    """Per-example loss [B]: softmax cross-entropy of int labels [B], or the mean sigmoid
    cross-entropy of multi-hot float labels [B, C]."""
    logits = logits.astype(jnp.float32)
    if labels.ndim == 2:
        return optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32)).mean(axis=-1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def make_perturb(model, normalize: Callable):
    """Returns `perturb(params, batch, epsilon, step_size, steps, start, rng) -> float32 pixels
    [B, H, W, 3]` (the arguments of `Attack.args()`). Padding rows (`valid` False) stay put."""

    def signed_gradient(params, pixels, batch):
        def total_loss(x):
            logits = model.apply({"params": params}, normalize(x), train=False)
            return jnp.sum(jnp.where(batch["valid"], attack_loss(logits, batch["label"]), 0.0))

        return jnp.sign(jax.grad(total_loss)(pixels))

    def perturb(params, batch, epsilon, step_size, steps, start, rng):
        clean = batch["image"].astype(jnp.float32)
        low, high = jnp.maximum(clean - epsilon, 0.0), jnp.minimum(clean + epsilon, 255.0)
        noise = jax.random.uniform(rng, clean.shape, jnp.float32, -1.0, 1.0) * (start * epsilon)
        x = jnp.clip(clean + noise, low, high)

        def step(_, x):
            return jnp.clip(x + step_size * signed_gradient(params, x, batch), low, high)

        return jax.lax.fori_loop(0, steps, step, x)

    return perturb
