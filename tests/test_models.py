"""The linen modules on their own: dropout/stochastic depth only in training with an rng, remat, frozen backbone."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vitjax.models.heads import ClassificationHead
from vitjax.models.model import Model, build_model
from vitjax.models.vit import ViT, ViTSpec

SPEC = ViTSpec(image_size=(16, 24), patch_size=8, hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32,
               hidden_dropout=0.2, attention_dropout=0.2, drop_path_rate=0.3)
IMAGES = jnp.asarray(np.random.default_rng(0).standard_normal((4, 16, 24, 3)), jnp.float32)


def _init(model):
    return jax.jit(functools.partial(model.init, train=False))(jax.random.PRNGKey(0), IMAGES)["params"]


def _apply(model, params, **kwargs):
    return jax.jit(functools.partial(model.apply, **kwargs))({"params": params}, IMAGES)


def test_features_dict_shapes():
    spec = SPEC.replace(family="deit", distillation_token=True)
    out = _apply(ViT(spec), _init(ViT(spec)), train=False)
    assert out["tokens"].shape == (4, 2 + 6, 16) and out["patches"].shape == (4, 2, 3, 16)
    assert out["cls"].shape == out["distillation"].shape == (4, 16)


def test_dropout_only_with_train_and_rng():
    model = ViT(SPEC)
    params = _init(model)
    run = lambda **kw: _apply(model, params, **kw)["tokens"]
    eval_out = run(train=False)
    np.testing.assert_array_equal(run(train=True), eval_out)  # no 'dropout' rng: deterministic
    a = run(train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    b = run(train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert not np.allclose(a, eval_out) and not np.allclose(a, b)


def test_remat_same_values_and_grads():
    spec = SPEC.replace(num_layers=1)
    plain, remat = build_model(spec, 3), build_model(spec, 3, remat=True)
    params = _init(plain)
    loss = lambda m: lambda p: m.apply({"params": p}, IMAGES, train=True, rngs={"dropout": jax.random.PRNGKey(3)}).sum()
    g1, g2 = jax.jit(jax.grad(loss(plain)))(params), jax.jit(jax.grad(loss(remat)))(params)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), g1, g2)


def test_frozen_backbone_has_zero_backbone_grads():
    model = Model(ViT(SPEC), ClassificationHead(3))
    params = _init(model)
    params["head"] = jax.tree.map(lambda p: p + 0.1, params["head"])
    loss = lambda p: model.apply({"params": p}, IMAGES, train=False, frozen_backbone=True).sum()
    grads = jax.jit(jax.grad(loss))(params)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["backbone"]))
    assert float(jnp.abs(grads["head"]["classifier"]["kernel"]).max()) > 0


def test_bfloat16_compute_float32_params():
    model = build_model(SPEC, 3, dtype="bfloat16")
    params = _init(model)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    features = _apply(model.backbone, params["backbone"], train=False)
    assert features["tokens"].dtype == jnp.bfloat16
    assert _apply(model, params, train=False).dtype == jnp.float32
