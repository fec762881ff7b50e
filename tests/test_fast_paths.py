"""The fast paths compute the same function as the plain ones (CPU: cuDNN's padding and masking are
checked through XLA's attention with the same padding code), "auto" picks the spelled-out attention
on CPU, and the CPU host keeps its scratch memory between steps."""

import dataclasses
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.train_helpers import tiny_config
from vitjax import optim
from vitjax.data.records import ArraySource, ImageDataset
from vitjax.models.model import Model, build_model
from vitjax.models.vit import ViT, ViTSpec, padded_attention
from vitjax.train import setup
from vitjax.train.fast_paths import backbone_options

SPEC = ViTSpec(image_size=(16, 20), patch_size=4, hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64)
FAST = dict(attention_impl="xla", attention_pad=8, patch_embed="matmul")  # 21 tokens -> 24


def _random_head(head):
    """The head starts at zero: every logit equal, no gradient into the backbone. Random weights instead."""
    return jax.tree.map(lambda p: p + 0.1 * np.random.default_rng(3).standard_normal(p.shape, np.float32), head)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("tokens,multiple", [(21, 8), (197, 64), (64, 64)])
def test_padded_attention_values_and_grads(tokens, multiple):
    q, k, v, cot = (jnp.asarray(np.random.default_rng(s).standard_normal((2, tokens, 3, 16)), jnp.float32)
                    for s in range(4))
    plain = lambda q, k, v: jax.nn.dot_product_attention(q, k, v)
    padded = functools.partial(padded_attention, implementation="xla", pad_multiple=multiple)
    out, vjp = jax.vjp(jax.jit(plain), q, k, v)
    out_p, vjp_p = jax.vjp(jax.jit(padded), q, k, v)
    assert out_p.shape == out.shape and _rel(out_p, out) < 1e-6
    for g_p, g in zip(vjp_p(cot), vjp(cot)):
        assert _rel(g_p, g) < 1e-6


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-6), ("bfloat16", 1e-2)])
def test_einsum_attention_values_and_grads(dtype, tol):
    q, k, v, cot = (jnp.asarray(np.random.default_rng(s).standard_normal((2, 65, 4, 24)), dtype)
                    for s in range(4))
    plain = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla")
    out, vjp = jax.vjp(jax.jit(plain), q, k, v)
    out_e, vjp_e = jax.vjp(jax.jit(functools.partial(padded_attention, implementation="einsum")), q, k, v)
    assert out_e.dtype == out.dtype and _rel(out_e, out) < tol
    for g_e, g in zip(vjp_e(cot), vjp(cot)):
        assert _rel(g_e, g) < tol


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_fast_backbone_same_logits(dtype, tol):
    plain, fast = build_model(SPEC, 3, dtype=dtype), build_model(SPEC, 3, dtype=dtype, **FAST)
    images = jnp.asarray(np.random.default_rng(0).standard_normal((4, 18, 22, 3)), jnp.float32)  # edges dropped
    params = jax.jit(functools.partial(plain.init, train=False))(jax.random.key(0), images)["params"]
    shapes = jax.eval_shape(functools.partial(fast.init, train=False), jax.random.key(0), images)["params"]
    assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, params)  # the same parameters
    params["head"] = _random_head(params["head"])
    logits = lambda m: jax.jit(functools.partial(m.apply, train=False))({"params": params}, images)
    assert _rel(logits(fast), logits(plain)) < tol


def _tiny_run(tmp_path, optimizer="adamw"):
    config = tiny_config("unused")
    config.model.spec.num_layers = 1
    config.optim.name = optimizer
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    dataset = ImageDataset("synthetic", {"train": ArraySource("synthetic", images, np.arange(16) % 3)},
                           ["a", "b", "c"])
    run = setup.build_run(config, str(tmp_path), dataset)
    return run, {"image": images, "label": (np.arange(16) % 3).astype(np.int32)}


def _one_step(run, batch):
    state = run.init_state()
    start = jax.device_get({**state.params, "head": _random_head(state.params["head"])})
    state, (metrics, grad_norm) = run.jit_train_step()(state.replace(params=start), batch)
    update = jax.tree.map(lambda new, old: new - old, jax.device_get(state.params), start)
    return update, jax.device_get(metrics.compute()["loss"]), jax.device_get(grad_norm)


def test_one_train_step_same_with_every_fast_path(tmp_path):
    # SGD: the update is linear in the gradient, so it shows gradient differences as they are.
    run, batch = _tiny_run(tmp_path, "sgd")
    fast = dataclasses.replace(run, steps=dataclasses.replace(run.steps, module=Model(
        ViT(run.model.spec, remat=True, remat_policy="dots_with_no_batch_dims_saveable", **FAST),
        run.model.module.head)))
    (u0, loss0, norm0), (u1, loss1, norm1) = _one_step(run, batch), _one_step(fast, batch)
    assert abs(loss1 - loss0) < 1e-5 * abs(loss0) and abs(norm1 - norm0) < 1e-5 * norm0
    assert np.linalg.norm(u0["backbone"]["encoder"]["layer_00"]["mlp"]["fc1"]["kernel"]) > 0  # it trains
    flat = lambda tree: np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])
    assert _rel(flat(u1), flat(u0)) < 1e-4  # measured 8e-6 (float32 rounding)
    np.testing.assert_allclose(flat(u1), flat(u0), rtol=0, atol=1e-4 * np.abs(flat(u0)).max())


def test_bfloat16_momentum_state_close_to_float32():
    params = {"backbone": {"encoder": {"layer_00": {"w": np.ones((8, 4), np.float32)}}},
              "head": {"b": np.zeros(4, np.float32)}}
    grads = jax.tree.map(lambda p: jnp.asarray(np.random.default_rng(2).standard_normal(p.shape), jnp.float32),
                         params)
    config = tiny_config("unused").optim
    build = lambda: optim.build_optimizer(config, params, num_layers=1, steps_per_epoch=1, total_steps=4,
                                          batch_size=1).tx
    updates = {}
    for dtype in ("float32", "bfloat16"):
        config.momentum_dtype = dtype
        tx = build()
        state = tx.init(params)
        for _ in range(2):
            updates[dtype], state = tx.update(grads, state, params)
        mu = [s.mu for s in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "mu")) if hasattr(s, "mu")]
        assert {leaf.dtype for leaf in jax.tree.leaves(mu)} == {jnp.dtype(dtype)}
    # AdamW's update is lr * m / sqrt(v): a bfloat16 m moves each parameter within 1% of lr.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-2 * config.lr),
                 updates["bfloat16"], updates["float32"])


def test_auto_picks_per_backend():
    model = tiny_config("unused").model
    model.dtype = "bfloat16"
    assert backbone_options(model, gpu=False) | {"dtype": None} == dict(
        dtype=None, attention_impl="einsum", attention_pad=0, patch_embed="conv", remat=False,
        remat_policy="nothing_saveable")
    on_gpu = backbone_options(model, gpu=True)
    assert (on_gpu["attention_impl"], on_gpu["attention_pad"], on_gpu["patch_embed"]) == ("cudnn", 64, "matmul")
    model.dtype = "float32"
    assert backbone_options(model, gpu=True)["attention_impl"] == "xla"  # cuDNN needs 16-bit inputs


@pytest.mark.parametrize("key,value,message", [
    ("attention", "flash", "config.model.attention='flash'"),
    ("attention", "cudnn", "needs config.model.dtype"),
    ("attention_pad", -1, "config.model.attention_pad=-1"),
    ("patch_embed", "unfold", "config.model.patch_embed='unfold'"),
    ("remat_policy", "all", "config.model.remat_policy='all'"),
])
def test_bad_knobs_name_the_key(key, value, message):
    model = tiny_config("unused").model
    model[key] = value
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        backbone_options(model, gpu=False)


def test_cpu_host_keeps_scratch_between_steps():
    """XLA:CPU allocates a step's scratch anew each call; over 32 MB glibc maps fresh pages for it, which
    every call then page-faults. After `keep_host_buffers()` the heap's pages are mostly reused."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "xla_cpu_repro.py")
    faults = {}
    for flags in ([], ["--keep"]):
        out = subprocess.run([sys.executable, script, "faults", *flags], capture_output=True, text=True,
                             check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}).stdout
        assert ("keep_host_buffers applied: True" in out) == bool(flags)
        faults[bool(flags)] = int(out.split("minor page faults per call: ")[1].split()[0])
    assert faults[False] > 30_000  # 2 x 64 MB of 4 KiB pages at least, faulted on every call
    assert faults[True] * 10 < faults[False]


def test_bad_momentum_dtype_names_the_key():
    config = tiny_config("unused").optim
    config.momentum_dtype = "int8"
    params = {"backbone": {"encoder": {"layer_00": {"w": np.ones((8, 4), np.float32)}}},
              "head": {"b": np.zeros(4, np.float32)}}
    with pytest.raises(ValueError, match="optim.momentum_dtype='int8'"):
        optim.build_optimizer(config, params, num_layers=1, steps_per_epoch=1, total_steps=4, batch_size=1)
