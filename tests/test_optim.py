"""The optimizer room: rule expansion and its errors, frozen params, gradual unfreezing, layer decay,
weight-decay masking, clipping, accumulation, the plateau scale and EMA, on a fake ViT-shaped tree."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vitjax import optim

DEPTH = 4
SPE = 10      # steps per epoch
TOTAL = 100   # total steps


def fake_params(depth=DEPTH, d=8, seed=0):
    """Nested dicts shaped like the ViT's parameters (paths as in the contract)."""
    rng = np.random.default_rng(seed)
    a = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
    dense = lambda i, o: {"kernel": a(i, o), "bias": a(o)}
    norm = lambda: {"scale": a(d), "bias": a(d)}
    layer = lambda: {"attention": {"query": dense(d, d), "key": dense(d, d)}, "layernorm_before": norm(),
                     "layernorm_after": norm(), "mlp": {"fc1": dense(d, 2 * d), "fc2": dense(2 * d, d)}}
    return {"backbone": {"embeddings": {"cls_token": a(1, 1, d), "distillation_token": a(1, 1, d),
                                        "position_embeddings": a(1, 6, d),
                                        "patch_embeddings": {"kernel": a(2, 2, 3, d), "bias": a(d)}},
                         "encoder": {f"layer_{i:02d}": layer() for i in range(depth)},
                         "layernorm": norm()},
            "head": {"classifier": dense(d, 3)}}


def config(**overrides):
    cfg = optim.default_config()
    cfg.update(overrides)
    return cfg


def sgd(**overrides):
    """Plain SGD at a constant rate 1: the update is exactly -multiplier * grad."""
    return config(**{"name": "sgd", "momentum": 0.0, "weight_decay": 0.0, "schedule": "constant", "warmup": "0",
                     "clip_grad_norm": 0.0, "lr": 1.0, **overrides})


def build(cfg, params=None, **kw):
    kw = {"num_layers": DEPTH, "steps_per_epoch": SPE, "total_steps": TOTAL, "batch_size": 8, **kw}
    return optim.build_optimizer(cfg, fake_params() if params is None else params, **kw)


def flat(tree):
    return dict(zip(jax.tree.leaves(optim.path_tree(tree)), jax.tree.leaves(tree)))


def run(opt, params, steps, grads=None, step_fn=None):
    """Apply `steps` updates with fixed (or random) grads; return the params after each step."""
    step_fn = step_fn or jax.jit(opt.tx.update)
    state = opt.tx.init(params)
    history = []
    for i in range(steps):
        g = grads if grads is not None else fake_params(seed=100 + i)
        updates, state = step_fn(g, state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        history.append(params)
    return history


def moved(before, after):
    b, a = flat(before), flat(after)
    return {p for p in b if not np.array_equal(np.asarray(b[p]), np.asarray(a[p]))}


PATHS = set(flat(fake_params()))


@pytest.mark.parametrize("overrides", [
    {"freeze": "full"}, {"freeze": "head_only"}, {"freeze": "last_n_blocks", "last_n_blocks": 0},
    {"freeze": "last_n_blocks", "last_n_blocks": 2}, {"freeze": "last_n_blocks", "last_n_blocks": DEPTH},
    {"freeze": "backbone/embeddings/.*"}, {"freeze": "backbone/embeddings/.*|backbone/encoder/layer_00/.*"},
    {"freeze": "none", "param_groups": (("head/.*", 10.0), (".*", 1.0))},
    {"freeze": "head_only", "unfreeze_every": "1"}, {"layer_decay": 0.7, "freeze": "last_n_blocks"},
])
def test_every_preset_covers_every_param_once(overrides):
    opt = build(config(**overrides))
    owned = [p for g in opt.groups for p in g.paths]
    assert sorted(owned) == sorted(PATHS)
    assert "regex" in opt.describe() and opt.describe().count("\n") == len(opt.groups) + 2


def test_unmatched_params_are_listed():
    with pytest.raises(ValueError, match="match no rule") as info:
        build(config(freeze="none", param_groups=(("head/.*", 1.0),)))
    assert "backbone/embeddings/cls_token" in str(info.value)


@pytest.mark.parametrize("overrides, key", [
    ({"param_groups": (("backbone/blocks/.*", 2.0),)}, "optim.param_groups[0]"),
    ({"unfreeze": (("backbone/encoder/layer_09/.*", 1),)}, "optim.unfreeze[0]"),
    ({"freeze": "head-only"}, "optim.freeze"),
    ({"param_groups": (("head/.*", 2.0), ("head/classifier/.*", 3.0))}, "optim.param_groups[1]"),
])
def test_dead_regex_is_named_with_existing_paths(overrides, key):
    with pytest.raises(ValueError, match="matches no parameter") as info:
        build(config(**overrides))
    message = str(info.value)
    assert key in message and "backbone/embeddings/" in message and "head_only" in message


@pytest.mark.parametrize("overrides, message", [
    ({"freeze": "last_n_blocks", "last_n_blocks": DEPTH + 1}, f"depth {DEPTH}"),
    ({"name": "adam"}, "optim.name='adam'.*adamw"),
    ({"schedule": "exponential"}, "optim.schedule='exponential'.*cyclic"),
    ({"schedule": "step"}, "optim.schedule='step' needs exactly one of optim.step.every"),
    ({"schedule": "step", "step": {"every": "2", "milestones": ("5",)}}, "exactly one of"),
    ({"schedule": "step", "step": {"milestones": ("5", "3")}}, r"optim.step.milestones\[1\]='3' is update 30"),
    ({"schedule": "step", "warmup": "2 epochs", "step": {"milestones": ("1",)}}, "after the warmup"),
    ({"schedule": "step", "step": {"every": "7", "gamma": 1.5}}, "optim.step.gamma=1.5"),
    ({"step": {"every": "7 epochs"}}, "optim.schedule='cosine'"),
    ({"schedule": "cyclic", "cyclic": {"mode": "triangle"}}, "optim.cyclic.mode='triangle'.*onecycle"),
    ({"schedule": "cyclic", "cyclic": {"low_fraction": 0.0}}, "optim.cyclic.low_fraction=0.0"),
    ({"schedule": "cyclic", "cyclic": {"period": "1 steps"}}, "optim.cyclic.period='1 steps'"),
    ({"warmup": "20 epochs"}, "optim.warmup='20 epochs'.*shorten"),
    ({"warmup": "3 weeks"}, "unknown unit"),
    ({"param_groups": (("head/.*", -1.0),)}, r"optim.param_groups\[0\].*multiplier"),
    ({"param_groups": ("head/.*",)}, r"optim.param_groups\[0\]"),
    ({"param_groups": (("head/(", 1.0),)}, "invalid regex"),
    ({"freeze": "head_only", "param_groups": (("head/.*", None),)}, "no parameter trains"),
    ({"grad_accum_steps": 0}, "grad_accum_steps"),
])
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        build(config(**overrides))


def test_num_layers_must_match_the_tree():
    with pytest.raises(ValueError, match="num_layers=6"):
        build(config(), num_layers=6)


def test_frozen_params_are_bit_identical_and_carry_no_state():
    params = fake_params()
    opt = build(config(freeze="head_only", weight_decay=0.1, warmup="0"), params)
    after = run(opt, params, 3)[-1]
    assert moved(params, after) == {p for p in PATHS if p.startswith("head/")}
    state_sizes = [x.size for x in jax.tree.leaves(opt.tx.init(params)) if np.ndim(x)]
    head_size = sum(x.size for x in jax.tree.leaves(params["head"]))
    assert sum(state_sizes) == 2 * head_size   # adam's mu and nu for the head only
    assert opt.backbone_frozen
    assert flat(opt.trainable_mask) == {p: p.startswith("head/") for p in PATHS}


def test_last_n_blocks_moves_only_the_top():
    params = fake_params()
    opt = build(config(freeze="last_n_blocks", last_n_blocks=2, warmup="0"), params)
    expected = {p for p in PATHS if p.startswith(("head/", "backbone/layernorm/", "backbone/encoder/layer_02/",
                                                  "backbone/encoder/layer_03/"))}
    assert moved(params, run(opt, params, 2)[-1]) == expected
    assert not opt.backbone_frozen


def test_gradual_unfreezing_without_recompiling():
    params = fake_params()
    opt = build(sgd(freeze="head_only", unfreeze=(("backbone/encoder/layer_03/.*", "3 steps"),)), params)
    traces = []

    def update(g, s, p):
        traces.append(1)
        return opt.tx.update(g, s, p)

    history = run(opt, params, 6, step_fn=jax.jit(update))
    layer3 = {p for p in PATHS if p.startswith("backbone/encoder/layer_03/")}
    heads = {p for p in PATHS if p.startswith("head/")}
    for step, (before, after) in enumerate(zip([params] + history, history)):
        assert moved(before, after) == (heads | layer3 if step >= 3 else heads), step
    assert len(traces) == 1
    assert [float(opt.lr_fns["optim.unfreeze[0]"](s)) for s in (2, 3)] == [0.0, 1.0]


def test_param_group_with_multiplier_and_start():
    opt = build(sgd(param_groups=(("backbone/encoder/layer_00/.*", 0.5, "2 epochs"),)))
    group = opt.groups[0]
    assert (group.name, group.multiplier, group.start) == ("optim.param_groups[0]", 0.5, 2 * SPE)
    assert [float(opt.lr_fns[group.name](s)) for s in (2 * SPE - 1, 2 * SPE)] == [0.0, 0.5]


def test_unfreeze_every_goes_top_down():
    opt = build(config(freeze="head_only", unfreeze_every="2 epochs"))
    starts = {g.name: g.start for g in opt.groups if g.trains}
    assert starts == {"unfreeze_every.top": 20, "unfreeze_every.layer_03": 20, "unfreeze_every.layer_02": 40,
                      "unfreeze_every.layer_01": 60, "unfreeze_every.layer_00": 80, "head": 0}
    # the embeddings would start at step 100 = the end of the run: frozen for the whole run, no state
    assert not any(v for p, v in flat(opt.trainable_mask).items() if p.startswith("backbone/embeddings/"))
    assert "2.00" in opt.describe()


def test_layer_decay_scales_the_rate_by_depth():
    decay = 0.5
    params = fake_params()
    ones = jax.tree.map(jnp.ones_like, params)
    opt = build(sgd(layer_decay=decay, param_groups=(("head/.*", 3.0),)), params)
    updates = flat(opt.tx.update(ones, opt.tx.init(params), params)[0])
    for path, update in updates.items():
        index = optim.layer_index(path, DEPTH)
        multiplier = 3.0 if path.startswith("head/") else 1.0
        np.testing.assert_allclose(update, -multiplier * decay ** (DEPTH + 1 - index), rtol=1e-6, err_msg=path)
    assert optim.layer_index("backbone/embeddings/cls_token", DEPTH) == 0
    assert optim.layer_index("backbone/encoder/layer_02/mlp/fc1/kernel", DEPTH) == 3
    assert optim.layer_index("backbone/layernorm/scale", DEPTH) == DEPTH + 1
    size = f"{sum(x.size for x in jax.tree.leaves(params)):,}"
    assert opt.describe().splitlines()[-1] == f"trained: {size} of {size} parameters (100.0%)"


def test_weight_decay_skips_biases_norms_and_embeddings():
    params = fake_params()
    decayed = {p for p, v in flat(optim.decay_mask(params)).items() if v}
    assert decayed == {p for p in PATHS if p.endswith("kernel")}   # incl. the patch projection kernel
    zeros = jax.tree.map(jnp.zeros_like, params)
    for name in ("sgd", "adamw", "lion"):
        opt = build(sgd(name=name, weight_decay=0.1), params)
        updates = flat(opt.tx.update(zeros, opt.tx.init(params), params)[0])
        assert {p for p, u in updates.items() if np.any(np.asarray(u) != 0)} == decayed, name


def test_clipping_counts_only_started_groups():
    params = fake_params()
    grads = jax.tree.map(lambda p: 100.0 * jnp.ones_like(p), params)
    grads["head"] = jax.tree.map(lambda p: jnp.full_like(p, 0.01), params["head"])
    opt = build(sgd(clip_grad_norm=1.0, freeze="head_only", unfreeze=(("backbone/.*", "5 steps"),)), params)
    state = opt.tx.init(params)
    updates = flat(opt.tx.update(grads, state, params)[0])
    np.testing.assert_allclose(updates["head/classifier/kernel"], -0.01)   # not clipped: norm < 1
    full = build(sgd(clip_grad_norm=1.0), params)
    clipped = full.tx.update(grads, full.tx.init(params), params)[0]
    norm = np.sqrt(sum(np.sum(np.square(u)) for u in jax.tree.leaves(clipped)))
    np.testing.assert_allclose(norm, 1.0, rtol=1e-5)


def test_warmup_and_schedules():
    opt = build(config(lr=1.0, warmup="1 epochs", schedule="linear", end_lr_fraction=0.1))
    lr = opt.lr_fns["all"]
    np.testing.assert_allclose([lr(0), lr(5), lr(SPE), lr(TOTAL)], [0.0, 0.5, 1.0, 0.1], rtol=1e-6)
    cosine = build(config(lr=1.0, warmup="0", schedule="cosine")).lr_fns["all"]
    np.testing.assert_allclose([cosine(0), cosine(TOTAL // 2), cosine(TOTAL)], [1.0, 0.5, 0.0], atol=1e-6)


def test_step_schedule_matches_a_hand_computed_curve_in_any_unit():
    """StepLR(step_size=3 epochs, gamma=0.1): 1 until step 30, then 0.1, 0.01 from 60, 0.001 from 90."""
    expected = {0: 1.0, 29: 1.0, 30: 0.1, 59: 0.1, 60: 0.01, 89: 0.01, 90: 0.001, 99: 0.001}
    for every in ("3", "3 epochs", "30 steps", "240 examples", "30%"):
        lr = build(config(lr=1.0, warmup="0", schedule="step", step={"every": every})).lr_fns["all"]
        np.testing.assert_allclose([lr(s) for s in expected], list(expected.values()), rtol=1e-6, err_msg=every)
    # MultiStepLR after a warmup: milestones count from the start of training, not from the warmup's end.
    lr = build(config(lr=1.0, warmup="1 epochs", schedule="step",
                      step={"milestones": ("25%", "70 steps"), "gamma": 0.5})).lr_fns["all"]
    np.testing.assert_allclose([lr(s) for s in (0, 5, 10, 24, 25, 69, 70, 99)],
                               [0.0, 0.5, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25], rtol=1e-6)
    # With accumulation the rate changes at the update holding step 30 (updates of 2 steps).
    lr = build(config(lr=1.0, warmup="0", schedule="step", grad_accum_steps=2, step={"every": "3"})).lr_fns["all"]
    np.testing.assert_allclose([lr(s) for s in (28, 29, 30, 31)], [1.0, 1.0, 0.1, 0.1], rtol=1e-6)
    # Layer-wise groups keep their multipliers on top of the step curve, and the update applies it.
    params = fake_params()
    opt = build(sgd(schedule="step", step={"every": "1"}, layer_decay=0.5), params)
    np.testing.assert_allclose(float(opt.lr_fns["all@1"](10)), 0.1 * 0.0625, rtol=1e-6)
    ones = jax.tree.map(jnp.ones_like, params)
    history = run(opt, params, 11, grads=ones)
    head = "head/classifier/bias"
    np.testing.assert_allclose(flat(history[9])[head] - flat(history[10])[head], 0.1, rtol=1e-5)
    np.testing.assert_allclose(flat(history[8])[head] - flat(history[9])[head], 1.0, rtol=1e-5)


def test_cyclic_schedules_match_hand_computed_curves():
    # Triangular, period 2 epochs = 20 steps, low 0.1: 1 at the start of each period, 0.1 half-way.
    lr = build(config(lr=1.0, warmup="0", schedule="cyclic", cyclic={"period": "2"})).lr_fns["all"]
    np.testing.assert_allclose([lr(s) for s in (0, 5, 10, 15, 20, 30, 99)],
                               [1.0, 0.55, 0.1, 0.55, 1.0, 0.1, 0.91], rtol=1e-6)
    # After a 10-step warmup (0 -> 1) the wave starts at its peak.
    lr = build(config(lr=1.0, warmup="10 steps", schedule="cyclic",
                      cyclic={"period": "160 examples"})).lr_fns["all"]
    np.testing.assert_allclose([lr(s) for s in (5, 10, 20, 25, 30)], [0.5, 1.0, 0.1, 0.55, 1.0], rtol=1e-6)
    # One cycle: cosine rise 0.04 -> 1 over the 30% warmup, cosine fall to 0 at step 100.
    lr = build(config(lr=1.0, warmup="30%", schedule="cyclic",
                      cyclic={"mode": "onecycle", "low_fraction": 0.04})).lr_fns["all"]
    np.testing.assert_allclose([lr(s) for s in (0, 15, 30, 65, 100)], [0.04, 0.52, 1.0, 0.5, 0.0],
                               rtol=1e-5, atol=1e-7)


def test_gradient_accumulation():
    params = fake_params()
    ones = jax.tree.map(jnp.ones_like, params)
    opt = build(sgd(grad_accum_steps=2, freeze="head_only", unfreeze=(("backbone/.*", "4 steps"),)), params)
    history = run(opt, params, 6, grads=ones)
    assert moved(params, history[0]) == set()                         # first micro-step: accumulating
    assert moved(history[0], history[1]) == {p for p in PATHS if p.startswith("head/")}
    assert moved(history[4], history[5]) == PATHS                     # update 2 = steps 4, 5: backbone started
    assert [float(opt.lr_fns["optim.unfreeze[0]"](s)) for s in (3, 4)] == [0.0, 1.0]
    assert optim.get_lr_scale(optim.set_lr_scale(opt.tx.init(params), 0.5)) == 0.5
    head_only = build(sgd(grad_accum_steps=2, freeze="head_only"), params)
    head_size = sum(x.size for x in jax.tree.leaves(params["head"]))
    state_size = sum(x.size for x in jax.tree.leaves(head_only.tx.init(params)) if np.ndim(x))
    assert state_size == head_size   # the accumulator holds the trained params only


def test_plateau_scale_drops_after_patience_and_respects_cooldown_and_floor():
    plateau = optim.Plateau(mode="min", factor=0.5, patience=2, cooldown=1, min_scale=0.2)
    scales = [plateau.update(v) for v in (1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.94, 0.99, 0.99, 0.99, 0.99)]
    assert scales == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2]
    up = optim.Plateau(mode="max", factor=0.1, patience=1, min_delta=0.01)
    assert [up.update(v) for v in (0.5, 0.505, 0.6)] == [1, pytest.approx(0.1), pytest.approx(0.1)]
    resumed = optim.Plateau().resumed(plateau.state_dict())
    assert resumed == plateau
    with pytest.raises(ValueError, match="optim.plateau.mode"):
        optim.Plateau(mode="up")


def test_plateau_config_and_scale_reach_the_update():
    assert optim.build_plateau(config()) is None
    cfg = config()
    cfg.plateau.factor, cfg.plateau.metric, cfg.plateau.mode = 0.5, "accuracy", "max"
    assert optim.build_plateau(cfg).metric == "accuracy"
    params = fake_params()
    ones = jax.tree.map(jnp.ones_like, params)
    opt = build(sgd(), params)
    traces = []

    def update(g, s, p):
        traces.append(1)
        return opt.tx.update(g, s, p)

    step = jax.jit(update)
    state = opt.tx.init(params)
    full, state = step(ones, state, params)
    state = optim.set_lr_scale(state, 0.25)
    assert optim.get_lr_scale(state) == 0.25
    scaled, _ = step(ones, state, params)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(scaled)):
        np.testing.assert_allclose(b, 0.25 * np.asarray(a))
    assert len(traces) == 1


def test_optimizers_run():
    params = fake_params()
    for overrides in ({"name": "adamw"}, {"name": "lion", "lr": 1e-5}, {"name": "sgd", "nesterov": True},
                      {"name": "adamw", "b1": 0.8, "b2": 0.99}):
        after = run(build(config(warmup="0", **overrides), params), params, 2)[-1]
        assert moved(params, after) == PATHS, overrides


def test_default_config_documents_every_knob():
    cfg = optim.default_config()
    assert {"name", "lr", "weight_decay", "b1", "b2", "eps", "momentum", "nesterov", "schedule", "warmup",
            "end_lr_fraction", "clip_grad_norm", "grad_accum_steps", "freeze", "last_n_blocks", "param_groups",
            "unfreeze", "unfreeze_every", "layer_decay", "ema_decay", "plateau"} <= set(cfg.keys())
    opt = build(cfg)
    assert not opt.backbone_frozen and all(jax.tree.leaves(opt.trainable_mask))


def test_sgd_momentum_and_nesterov():
    params = fake_params()
    ones = jax.tree.map(jnp.ones_like, params)
    for nesterov, second in ((False, 1.9), (True, 1.9 * 0.9 + 1.0)):
        opt = build(sgd(momentum=0.9, nesterov=nesterov), params)
        state = opt.tx.init(params)
        for _ in range(2):
            updates, state = opt.tx.update(ones, state, params)
        np.testing.assert_allclose(updates["head"]["classifier"]["bias"], -second, rtol=1e-6)
