"""The optax-citizenship battery, run on every optimizer of OPTIMIZERS_UNDER_TEST."""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import OPTIMIZERS_UNDER_TEST, build, quadratic_problem, random_tree

import ladam_optax

NAMES = list(OPTIMIZERS_UNDER_TEST)
TREE_SHAPES = {"w": (16, 24), "b": (24,), "k": (3, 3, 4, 4), "s": ()}


def _tree(seed, dtype=jnp.float32):
    tree = random_tree(TREE_SHAPES, seed)
    if jnp.issubdtype(dtype, jnp.complexfloating):  # a genuine imaginary part
        tree = jax.tree.map(lambda a, b: a + 1j * b, tree, random_tree(TREE_SHAPES, seed + 500))
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def _run(tx, steps=5, dtype=jnp.float32, jit=True):
    """Updates of ``steps`` steps of ``tx`` on fixed random gradients, and the final state."""
    params = _tree(0, dtype)
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    history = []
    for step in range(steps):
        updates, state = update(_tree(step + 1, dtype), state, params)
        params = optax.apply_updates(params, updates)
        history.append(updates)
    return history, state


def _first_update(tx, grads, params):
    """The updates of one jitted step of ``tx`` from its initial state."""
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    return updates


def _assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _initial_and_final_loss(tx, steps):
    """Trains ``tx`` on the quadratic problem for ``steps`` jitted steps."""
    params, loss = quadratic_problem()
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    initial = float(loss(params))
    for _ in range(steps):
        params, state = step(params, state)
    return initial, float(loss(params))


@pytest.mark.parametrize("name", NAMES)
def test_converges(name):
    initial, final = _initial_and_final_loss(build(name), 300)
    assert final < 0.3 * initial


@pytest.mark.parametrize("name", NAMES)
def test_returns_extra_args_transformation_and_accepts_extra_args(name):
    tx = build(name)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params = _tree(0)
    updates, _ = tx.update(_tree(1), tx.init(params), params, value=jnp.float32(1.0), key=None)
    assert jax.tree.structure(updates) == jax.tree.structure(params)


@pytest.mark.parametrize("name", NAMES)
def test_compiles_once(name):
    tx = build(name)
    traces = []

    @jax.jit
    def step(grads, state, params):
        traces.append(1)
        return tx.update(grads, state, params)

    params = _tree(0)
    state = tx.init(params)
    for seed in range(1, 6):
        _, state = step(_tree(seed), state, params)
    assert len(traces) == 1


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_equals_plain_and_retunes_without_recompiling(name):
    factory, kwargs = OPTIMIZERS_UNDER_TEST[name]
    numeric = {k: v for k, v in kwargs.items() if not isinstance(v, str)}
    static = {k: v for k, v in kwargs.items() if isinstance(v, str)}
    numeric["min_spatial_size"] = 16
    injected = optax.inject_hyperparams(factory)(**numeric, **static)
    params = _tree(0)
    state = injected.init(params)
    assert set(numeric) <= set(state.hyperparams)

    traces = []

    @jax.jit
    def step(grads, state):
        traces.append(1)
        return injected.update(grads, state, params)

    updates, state = step(_tree(1), state)
    plain, _ = _run(factory(**numeric, **static), steps=1)
    # inject_hyperparams stores every numeric default as float32 too: b2 = float32(0.999) is off
    # by 1.3e-5 in 1 - b2, which the plain optimizer computes in float64 (as optax.adam does).
    _assert_trees_close(updates, plain[0], rtol=3e-5, atol=1e-7)

    # Re-tune c2 through the state: the same compiled step gives the c2=0.5 optimizer's numbers.
    unchanged, _ = step(_tree(2), state)
    state.hyperparams["c2"] = jnp.asarray(0.5, jnp.float32)
    retuned, _ = step(_tree(2), state)
    # Every numeric hyperparameter as an array, as injected: the same chain, links included.
    reference = factory(**{**state.hyperparams, "c2": jnp.asarray(0.5, jnp.float32)}, **static)
    expected, _ = jax.jit(reference.update)(_tree(2), state.inner_state, params)
    _assert_trees_close(retuned, expected, rtol=3e-5, atol=1e-7)
    # c2 had an effect: the same step from the same state with the original c2 differs.
    assert not np.allclose(np.asarray(retuned["w"]), np.asarray(unchanged["w"]))
    assert len(traces) == 1


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_updates_and_dtype_stable_state(name, strict_dtypes):
    tx = build(name)
    params = _tree(0, jnp.bfloat16)
    state0 = tx.init(params)
    history, state = _run(tx, steps=3, dtype=jnp.bfloat16)
    for leaf in jax.tree.leaves(history[-1]):
        assert leaf.dtype == jnp.bfloat16
        assert bool(jnp.all(jnp.isfinite(leaf)))
    assert jax.tree.map(lambda x: x.dtype, state0) == jax.tree.map(lambda x: x.dtype, state)
    # bf16 numbers track the float32 run (bf16 has ~3 significant digits).
    reference, _ = _run(tx, steps=3)
    _assert_trees_close(
        jax.tree.map(lambda x: x.astype(jnp.float32), history[-1]), reference[-1], 0.05, 2e-3
    )


@pytest.mark.parametrize("name", NAMES)
def test_complex64_updates_and_dtype_stable_state(name, strict_dtypes):
    tx = build(name)
    history, state = _run(tx, steps=3, dtype=jnp.complex64)
    for leaf in jax.tree.leaves(history[-1]):
        assert leaf.dtype == jnp.complex64
        assert bool(jnp.all(jnp.isfinite(leaf)))
    state0 = tx.init(_tree(0, jnp.complex64))
    assert jax.tree.map(lambda x: x.dtype, state0) == jax.tree.map(lambda x: x.dtype, state)


@pytest.mark.parametrize("name", NAMES)
def test_float64_under_x64(name, x64, strict_dtypes):
    tx = build(name)
    history, state = _run(tx, steps=3, dtype=jnp.float64)
    for leaf in jax.tree.leaves(history[-1]):
        assert leaf.dtype == jnp.float64
    for leaf in jax.tree.leaves(state):
        assert leaf.dtype in (jnp.float64, jnp.int32)


@pytest.mark.parametrize("name", ["ladam", "ladamw", "ladam_weight_lap"])
def test_mu_dtype_is_honoured(name, strict_dtypes):
    tx = build(name, mu_dtype=jnp.bfloat16)
    params = _tree(0)
    states = [tx.init(params), _run(tx, steps=2)[1]]
    for state in states:
        (inner,) = [s for s in state if isinstance(s, ladam_optax.ScaleByLAdamState)]
        assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(inner.mu))
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(inner.nu))
        assert inner.count.dtype == jnp.int32


@pytest.mark.parametrize(
    ("mu_dtype", "expected"),
    [(jnp.bfloat16, jnp.complex64), (jnp.float32, jnp.complex64), (jnp.float64, jnp.complex128)],
)
def test_mu_dtype_of_a_complex_leaf_is_its_complex_counterpart(mu_dtype, expected, x64):
    for tx in (ladam_optax.ladam(mu_dtype=mu_dtype), ladam_optax.wave_ladam(mu_dtype=mu_dtype)):
        mu = optax.tree.get(tx.init(_tree(0, jnp.complex128)), "mu")
        assert {leaf.dtype for leaf in jax.tree.leaves(mu)} == {jnp.dtype(expected)}


@pytest.mark.parametrize("name", NAMES)
def test_multisteps_equals_one_step_on_mean_gradient(name):
    tx = build(name)
    params = _tree(0)
    multi = optax.MultiSteps(tx, every_k_schedule=3)
    state = multi.init(params)
    grads = [_tree(seed) for seed in (1, 2, 3)]
    total = jax.tree.map(jnp.zeros_like, params)
    for g in grads:
        updates, state = jax.jit(multi.update)(g, state, params)
        total = jax.tree.map(jnp.add, total, updates)
    mean = jax.tree.map(lambda *g: sum(g) / 3.0, *grads)
    expected = _first_update(tx, mean, params)
    _assert_trees_close(total, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_masked_with_none_and_masked_leaves(name):
    tx = build(name)
    params = {**_tree(0), "frozen": jnp.ones((8, 8)), "absent": None}
    mask = {"w": True, "b": True, "k": True, "s": True, "frozen": False, "absent": None}
    masked = optax.masked(tx, mask)
    grads = {**_tree(1), "frozen": jnp.full((8, 8), 2.0), "absent": None}
    updates, _ = jax.jit(masked.update)(grads, masked.init(params), params)
    np.testing.assert_array_equal(np.asarray(updates["frozen"]), np.full((8, 8), 2.0))
    assert updates["absent"] is None
    alone = _first_update(tx, _tree(1), _tree(0))
    _assert_trees_close({k: updates[k] for k in alone}, alone)


@pytest.mark.parametrize("name", NAMES)
def test_partition_with_per_group_c2(name):
    """The PyTorch param-groups recipe: smooth the matrices, not the vectors."""
    factory, kwargs = OPTIMIZERS_UNDER_TEST[name]
    labels = {"w": "smooth", "k": "smooth", "b": "plain", "s": "plain"}
    tx = optax.partition(
        {"smooth": factory(**kwargs), "plain": factory(**{**kwargs, "c2": 0.0})}, labels
    )
    params = _tree(0)
    updates, _ = jax.jit(tx.update)(_tree(1), tx.init(params), params)
    smooth = _first_update(factory(**kwargs), _tree(1), params)
    flat_tx = factory(**{**kwargs, "c2": 0.0})
    plain = _first_update(flat_tx, _tree(1), params)
    _assert_trees_close([updates["w"], updates["k"]], [smooth["w"], smooth["k"]])
    _assert_trees_close([updates["b"], updates["s"]], [plain["b"], plain["s"]])


@pytest.mark.parametrize("name", NAMES)
def test_apply_if_finite_skips_a_nan_step(name):
    tx = optax.apply_if_finite(build(name), max_consecutive_errors=3)
    params = _tree(0)
    state = tx.init(params)
    bad = {**_tree(1), "w": jnp.full((16, 24), jnp.nan)}
    updates, state = jax.jit(tx.update)(bad, state, params)
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
    assert int(state.notfinite_count) == 1
    updates, state = jax.jit(tx.update)(_tree(1), state, params)
    plain = _first_update(build(name), _tree(1), params)
    _assert_trees_close(updates, plain)


@pytest.mark.parametrize("name", NAMES)
def test_works_as_the_outer_optimizer_of_sam(name):
    adv = optax.chain(optax.contrib.normalize(), optax.sgd(0.05))
    initial, final = _initial_and_final_loss(
        optax.contrib.sam(build(name), adv, sync_period=2), 200
    )
    assert final < 0.5 * initial


def _lamb_style(c2: float, learning_rate: float = 1e-2, weight_decay: float = 1e-3):
    """docs/flax.md's LAMB-style chain: LAdam direction, decoupled decay, layer-wise trust ratio."""
    return optax.chain(
        ladam_optax.scale_by_ladam(c2=c2),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_trust_ratio(),
        optax.scale_by_learning_rate(learning_rate),
    )


def test_lamb_style_chain_is_optax_lamb_at_c2_zero():
    got, _ = _run(_lamb_style(0.0), steps=10)
    expected, _ = _run(optax.lamb(1e-2, eps=1e-8, weight_decay=1e-3), steps=10)
    _assert_trees_close(got, expected, rtol=3e-5, atol=1e-8)


def test_lamb_style_chain_scales_each_layer_by_its_trust_ratio():
    params = _tree(0)
    tx = _lamb_style(0.2)
    updates, _ = jax.jit(tx.update)(_tree(1), tx.init(params), params)
    smoothed = ladam_optax.scale_by_ladam(c2=0.2)
    direction, _ = smoothed.update(_tree(1), smoothed.init(params), params)
    for name in params:
        if params[name].size == 0:
            continue
        raw = direction[name] + 1e-3 * params[name]
        ratio = jnp.linalg.norm(params[name]) / jnp.linalg.norm(raw)
        np.testing.assert_allclose(updates[name], -1e-2 * ratio * raw, rtol=2e-5, atol=1e-9)
    # From a non-zero start: steps are lr * ||p|| per layer, so from zero they grow only slowly.
    target = _tree(5)
    tx = _lamb_style(1e-4, 5e-2, 0.0)

    def loss(p):
        return sum(jnp.mean((p[k] - target[k]) ** 2) for k in p)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    initial = float(loss(params))
    for _ in range(200):
        params, state = step(params, state)
    assert float(loss(params)) < 0.2 * initial


ODD_SHAPES = {"scalar": (), "empty": (0,), "empty2d": (0, 7), "one": (1, 1), "thin": (2, 100)}
ODD_SHAPES |= {"tall": (100, 3), "five_d": (2, 3, 4, 5, 6)}


@pytest.mark.parametrize("name", NAMES)
def test_odd_leaves(name, strict_dtypes):
    tx = build(name, min_spatial_size=0)
    params = jax.tree.map(jnp.asarray, random_tree(ODD_SHAPES, 0))
    state = tx.init(params)
    grads = jax.tree.map(jnp.asarray, random_tree(ODD_SHAPES, 1))
    updates, state = jax.jit(tx.update)(grads, state, params)
    for key, shape in ODD_SHAPES.items():
        assert updates[key].shape == shape
        assert bool(jnp.all(jnp.isfinite(updates[key])))


@pytest.mark.parametrize("name", NAMES)
def test_init_accepts_abstract_params(name):
    tx = build(name)
    abstract = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in TREE_SHAPES.items()}
    state_shape = jax.eval_shape(tx.init, abstract)
    concrete = tx.init(_tree(0))
    assert jax.tree.structure(state_shape) == jax.tree.structure(concrete)
    for a, c in zip(jax.tree.leaves(state_shape), jax.tree.leaves(concrete), strict=True):
        assert (a.shape, a.dtype) == (c.shape, c.dtype)


DECAY_MASK = {"w": True, "b": False, "k": True, "s": False}

# c2 = 0 must reproduce the plain optimizer, with the PyTorch eps conventions spelled out.
PLAIN_EQUIVALENTS = [
    (ladam_optax.ladam(1e-2, c2=0.0), optax.adam(1e-2)),
    (ladam_optax.ladam(1e-2, c2=0.0, mode="update_lap"), optax.adam(1e-2)),
    (ladam_optax.ladam(1e-2, c2=0.0, mode="weight_lap"), optax.adam(1e-2)),
    (ladam_optax.ladamw(1e-2, c2=0.0, weight_decay=0.1), optax.adamw(1e-2, weight_decay=0.1)),
    (
        ladam_optax.ladamw(1e-2, c2=0.0, weight_decay=0.1, mask=DECAY_MASK),
        optax.adamw(1e-2, weight_decay=0.1, mask=DECAY_MASK),
    ),
    (
        ladam_optax.ladam(1e-2, c2=0.0, weight_decay=0.1),
        optax.chain(optax.add_decayed_weights(0.1), optax.adam(1e-2)),
    ),
    (
        ladam_optax.ladagrad(5e-2, c2=0.0, eps=1e-10),
        optax.adagrad(5e-2, initial_accumulator_value=0.0, eps=1e-20),
    ),
    (
        ladam_optax.lrmsprop(1e-2, c2=0.0, decay=0.9),
        optax.rmsprop(1e-2, decay=0.9, eps=1e-8, eps_in_sqrt=False),
    ),
    (
        ladam_optax.lrmsprop(1e-2, c2=0.0, decay=0.9, momentum=0.5),
        optax.rmsprop(1e-2, decay=0.9, eps=1e-8, eps_in_sqrt=False, momentum=0.5),
    ),
]


@pytest.mark.parametrize(("ours", "plain"), PLAIN_EQUIVALENTS)
def test_c2_zero_is_the_plain_optimizer(ours, plain):
    got, _ = _run(ours, steps=10)
    expected, _ = _run(plain, steps=10)
    # optax computes 1 - 0.999**t in float32 (1.3e-5 off at t=1); we and PyTorch do not.
    _assert_trees_close(got, expected, rtol=3e-5, atol=1e-7)


def test_optax_style_state_names():
    tx = ladam_optax.ladam(c2=0.1)
    state = tx.init(_tree(0))
    assert optax.tree.get(state, "count").dtype == jnp.int32
    mu = optax.tree.get(state, "mu")
    nu = optax.tree.get(state, "nu")
    assert jax.tree.structure(mu) == jax.tree.structure(nu) == jax.tree.structure(_tree(0))


def test_persistent_state_is_as_large_as_adams():
    params = _tree(0)
    size = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))  # noqa: E731
    assert size(ladam_optax.ladam(c2=0.1).init(params)) == size(optax.adam(1e-3).init(params))


def test_each_signature_carries_only_its_modes_hyperparameters():
    """inject_hyperparams injects what the factory takes: no wave_* in ladam's state."""
    params = _tree(0)
    wave = {"wave_dt", "wave_kappa", "wave_E0", "wave_damping"}
    for factory in (ladam_optax.ladam, ladam_optax.ladamw, ladam_optax.scale_by_ladam):
        assert not wave & set(inspect.signature(factory).parameters)
    ladam_state = optax.inject_hyperparams(ladam_optax.ladam)(c2=0.1).init(params)
    assert not wave & set(ladam_state.hyperparams)
    wave_state = optax.inject_hyperparams(ladam_optax.wave_ladamw)(c2=0.1).init(params)
    assert wave <= set(wave_state.hyperparams) and "b2" not in wave_state.hyperparams


@pytest.mark.parametrize("mode", ["variance_lap", "weight_lap"])
def test_ladamw_without_decay_drops_the_decay_link(mode):
    params = _tree(0)
    without = ladam_optax.ladamw(1e-2, weight_decay=0.0, c2=0.1, mode=mode)
    coupled = ladam_optax.ladam(1e-2, c2=0.1, mode=mode)
    assert len(without.init(params)) == len(coupled.init(params))
    got, _ = _run(without)
    expected, _ = _run(coupled)
    _assert_trees_close(got, expected, rtol=0.0, atol=0.0)
    injected = optax.inject_hyperparams(ladam_optax.ladamw)(1e-2, weight_decay=0.0, c2=0.1)
    state = injected.init(params)
    state.hyperparams["weight_decay"] = jnp.asarray(0.5, jnp.float32)  # still retunable
    decayed, _ = injected.update(jax.tree.map(jnp.zeros_like, params), state, params)
    np.testing.assert_allclose(np.asarray(decayed["w"]), -1e-2 * 0.5 * np.asarray(params["w"]))


@pytest.mark.parametrize(
    ("factory", "kwargs", "error", "message"),
    [
        (ladam_optax.ladam, {"learning_rate": -1.0}, ValueError, "learning_rate must be >= 0"),
        (ladam_optax.ladam, {"learning_rate": "fast"}, TypeError, "learning_rate must be"),
        (ladam_optax.ladam, {"c2": -1e-4}, ValueError, "c2 must be >= 0"),
        (ladam_optax.ladam, {"eps": -1.0}, ValueError, "eps must be >= 0"),
        (ladam_optax.ladam, {"weight_decay": -0.1}, ValueError, "weight_decay must be >= 0"),
        (ladam_optax.ladam, {"b1": 1.0}, ValueError, r"b1 must be in \[0, 1\)"),
        (ladam_optax.ladam, {"b2": -0.1}, ValueError, r"b2 must be in \[0, 1\)"),
        (ladam_optax.ladam, {"mode": "wave"}, ValueError, "mode must be one of"),
        (ladam_optax.ladam, {"stencil": "3point"}, ValueError, "stencil must be '5point' or"),
        (ladam_optax.ladam, {"min_spatial_size": -1}, ValueError, "min_spatial_size must be >="),
        (ladam_optax.ladam, {"min_spatial_size": 1.5}, TypeError, "min_spatial_size must be an"),
        (ladam_optax.ladam, {"laplacian_impl": "fft"}, ValueError, "laplacian_impl must be"),
        (ladam_optax.ladamw, {"weight_decay": -1.0}, ValueError, "weight_decay must be >= 0"),
        (ladam_optax.ladamw, {"mode": "x"}, ValueError, "mode must be one of"),
        (ladam_optax.ladagrad, {"lr_decay": -0.1}, ValueError, "lr_decay must be >= 0"),
        (ladam_optax.ladagrad, {"eps": -0.1}, ValueError, "eps must be >= 0"),
        (ladam_optax.ladagrad, {"c2": -0.1}, ValueError, "c2 must be >= 0"),
        (ladam_optax.lrmsprop, {"decay": 1.0}, ValueError, r"decay must be in \[0, 1\)"),
        (ladam_optax.lrmsprop, {"momentum": -0.5}, ValueError, r"momentum must be in \[0, 1\)"),
        (ladam_optax.lrmsprop, {"learning_rate": -1e-2}, ValueError, "learning_rate must be"),
        (ladam_optax.scale_by_ladam, {"mode": "weight_lap"}, ValueError, "add_weight_diffusion"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(factory, kwargs, error, message):
    with pytest.raises(error, match=message):
        factory(**kwargs)


@pytest.mark.parametrize(
    "tx",
    [
        ladam_optax.ladam(mode="weight_lap"),
        ladam_optax.ladam(weight_decay=0.1),
        ladam_optax.ladamw(),
        ladam_optax.ladagrad(weight_decay=0.1),
        ladam_optax.lrmsprop(weight_decay=0.1),
    ],
)
def test_updates_that_need_params_say_so(tx):
    params = _tree(0)
    with pytest.raises(ValueError, match="params"):
        tx.update(_tree(1), tx.init(params))


def test_learning_rate_schedule():
    schedule = optax.linear_schedule(1e-2, 0.0, 4)
    got, _ = _run(ladam_optax.ladam(schedule, c2=0.0), steps=5)
    expected, _ = _run(optax.adam(schedule), steps=5)
    _assert_trees_close(got, expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(np.asarray(got[-1]["w"]), 0.0)


def test_public_signatures_match_the_spec():
    """Other code is built against these exact names and defaults."""
    wave = "wave_dt=0.1, wave_kappa=0.1, wave_E0=0.0, wave_damping=0.5, *, stencil='9point', "
    expected = {
        "scale_by_ladam": "(b1=0.9, b2=0.999, eps=1e-08, c2=0.0001, mode='variance_lap', "
        "stencil='9point', min_spatial_size=16, mu_dtype=None, *, laplacian_impl='auto', "
        "fold=None)",
        "ladam": "(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-08, weight_decay=0.0, "
        "c2=0.0001, mode='variance_lap', stencil='9point', min_spatial_size=16, mu_dtype=None, "
        "*, laplacian_impl='auto', fold=None)",
        "ladamw": "(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-08, weight_decay=0.0001, "
        "c2=0.0001, mode='variance_lap', stencil='9point', min_spatial_size=16, mu_dtype=None, "
        "mask=None, *, laplacian_impl='auto', fold=None)",
        "scale_by_wave_ladam": f"(b1=0.9, eps=1e-08, c2=0.0001, {wave}min_spatial_size=16, "
        "mu_dtype=None, laplacian_impl='auto', fold=None)",
        "wave_ladam": "(learning_rate=0.001, b1=0.9, eps=1e-08, weight_decay=0.0, c2=0.0001, "
        f"{wave}min_spatial_size=16, mu_dtype=None, laplacian_impl='auto', fold=None)",
        "wave_ladamw": "(learning_rate=0.001, b1=0.9, eps=1e-08, weight_decay=0.0001, "
        f"c2=0.0001, {wave}min_spatial_size=16, mu_dtype=None, mask=None, "
        "laplacian_impl='auto', fold=None)",
        "scale_by_ladagrad": "(eps=1e-10, c2=0.0001, stencil='9point', min_spatial_size=16, *, "
        "laplacian_impl='auto', fold=None)",
        "ladagrad": "(learning_rate=0.01, lr_decay=0.0, eps=1e-10, weight_decay=0.0, c2=0.0001, "
        "stencil='9point', min_spatial_size=16, *, laplacian_impl='auto', fold=None)",
        "scale_by_lrmsprop": "(decay=0.99, eps=1e-08, c2=0.0001, stencil='9point', "
        "min_spatial_size=16, *, laplacian_impl='auto', fold=None)",
        "lrmsprop": "(learning_rate=0.01, decay=0.99, eps=1e-08, weight_decay=0.0, momentum=0.0, "
        "c2=0.0001, stencil='9point', min_spatial_size=16, *, laplacian_impl='auto', fold=None)",
        "laplacian": "(x, stencil='9point', *, impl='auto', fold=None)",
        "add_weight_diffusion": "(c2=0.0001, stencil='9point', min_spatial_size=16, *, "
        "laplacian_impl='auto', fold=None)",
        "suggest_c2": "(architecture='auto')",
        "chi_anneal_schedule": "(peak_value, total_steps, warmup_frac=0.05, settle_frac=0.3, "
        "*, repeat=False)",
        "laplacian_smoothing": "(sigma=1.0, layerwise=True, min_numel=4)",
        "analyze_params": "(params, *, fold=None)",
        "stacked": "(axes, fold=None)",
        "auto_configure": "(params, learning_rate=0.001, total_steps=None, weight_decay=0.0, *, "
        f"fold={ladam_optax.torch_folds!r})",
        "compute_neuron_order": "(activations)",
        "reorder_dense": "(layer_params, next_layer_params, order)",
    }
    empty = inspect.Parameter.empty
    for name, signature in expected.items():
        actual = inspect.signature(getattr(ladam_optax, name))
        plain = actual.replace(
            parameters=[p.replace(annotation=empty) for p in actual.parameters.values()],
            return_annotation=inspect.Signature.empty,
        )
        assert str(plain) == signature, name


def test_nn_signatures_match_the_spec():
    from ladam_optax import nn

    expected = {
        "WaveNorm": "num_features n_steps=3 dt=0.1 c=1.0 chi=1.0",
        "WaveNormDamped": "num_features n_steps=3 dt=0.1 c=1.0 chi=1.0 init_damping=0.5",
        "ChiNorm": "num_features chi0_init=1.0 g_init=0.1 tau=0.1 eps=1e-05 "
        "use_running_average=False",
    }
    for name, positional in expected.items():
        signature = inspect.signature(getattr(nn, name).__init__)
        parameters = list(signature.parameters.values())[1:]  # after self
        shown = [
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in parameters
            if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ]
        assert " ".join(shown) == positional, name
        rngs = signature.parameters["rngs"]
        assert rngs.kind is inspect.Parameter.KEYWORD_ONLY and rngs.default is rngs.empty


# The conv form is the reference's, slow to compile: a few optimizers.
IMPL_CASES = [name for name in ("ladam", "ladagrad", "wave_ladam") if name in NAMES]


@pytest.mark.parametrize("name", IMPL_CASES)
def test_laplacian_impls_give_the_same_updates(name):
    """The default form against the reference's convolution."""
    got, _ = _run(build(name, laplacian_impl="auto"))
    expected, _ = _run(build(name, laplacian_impl="conv"))
    _assert_trees_close(got, expected, rtol=1e-5, atol=1e-7)


def _eager_updates(tx, params, grads):
    """The updates of each step of ``tx`` on the gradients ``grads``, not jitted (on trees this
    small running op by op costs less than compiling)."""
    state, history = tx.init(params), []
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        history.append(updates)
    return history


# 9 and 8 elements, both with a nonzero Laplacian; 9 is not the default min_spatial_size, so a
# link built with the default instead of the alias's value is seen too.
GATE_SHAPES = {"at": (3, 3), "below": (8,)}
# One optimizer per transformation that gates: scale_by_ladam, add_weight_diffusion, the wave's
# leapfrog, and the step LAdaGrad and LRMSProp share.
GATE_CASES = ["ladam", "ladam_weight_lap", "wave_ladam", "ladagrad"]


@pytest.mark.parametrize("traced", [False, True], ids=["static", "traced"])
@pytest.mark.parametrize("name", GATE_CASES)
def test_a_leaf_of_exactly_min_spatial_size_elements_is_smoothed(name, traced):
    factory, kwargs = OPTIMIZERS_UNDER_TEST[name]
    kwargs = {**kwargs, "min_spatial_size": 9}
    # inject_hyperparams without static_args traces min_spatial_size (and c2): the traced gate.
    tx = optax.inject_hyperparams(factory)(**kwargs) if traced else factory(**kwargs)
    params = jax.tree.map(jnp.asarray, random_tree(GATE_SHAPES, 0))
    grads = [jax.tree.map(jnp.asarray, random_tree(GATE_SHAPES, seed)) for seed in (1, 2)]
    got = _eager_updates(tx, params, grads)[-1]
    smoothed = _eager_updates(build(name, min_spatial_size=0), params, grads)[-1]
    plain = _eager_updates(build(name, c2=0.0), params, grads)[-1]
    for leaf in GATE_SHAPES:  # the smoothing moves both leaves' steps
        assert not np.allclose(np.asarray(smoothed[leaf]), np.asarray(plain[leaf]), rtol=1e-3)
    _assert_trees_close(got["at"], smoothed["at"], rtol=3e-5, atol=1e-7)
    _assert_trees_close(got["below"], plain["below"], rtol=3e-5, atol=1e-7)


def test_a_traced_c2_of_zero_is_adam_without_the_variance_floor():
    """At c2 = 0 the smoothed variance's eps floor is off, traced or static. With gradients of
    ~1e-5, v_hat ~ 1e-10 lies below eps = 1e-8, where the floor would shrink the step ~10x."""
    params = _tree(0)
    grads = [jax.tree.map(lambda g: 1e-5 * g, _tree(1))]
    traced = _eager_updates(
        optax.inject_hyperparams(ladam_optax.ladam)(learning_rate=1e-2, c2=0.0), params, grads
    )
    static = _eager_updates(ladam_optax.ladam(1e-2, c2=0.0), params, grads)
    adam = _eager_updates(optax.adam(1e-2), params, grads)
    floored = _eager_updates(ladam_optax.ladam(1e-2, c2=1e-30), params, grads)  # floor on
    assert not np.allclose(np.asarray(floored[-1]["w"]), np.asarray(adam[-1]["w"]), rtol=0.5)
    _assert_trees_close(static, adam, rtol=3e-5, atol=1e-7)
    _assert_trees_close(traced, adam, rtol=3e-5, atol=1e-7)


def test_wave_ladamw_mask_leaves_the_masked_leaves_undecayed():
    """ladamw's mask is checked against optax.adamw's (PLAIN_EQUIVALENTS); the wave variance has
    no optax twin: a masked leaf steps as without decay, an unmasked one as with it."""
    params = _tree(0)
    grads = [_tree(seed) for seed in (1, 2)]

    def run(**kwargs):
        tx = ladam_optax.wave_ladamw(1e-2, c2=0.1, wave_dt=0.2, **kwargs)
        return _eager_updates(tx, params, grads)[-1]

    masked, decayed, undecayed = (
        run(weight_decay=0.5, mask=DECAY_MASK),
        run(weight_decay=0.5),
        run(weight_decay=0.0),
    )
    for leaf, decays in DECAY_MASK.items():
        assert not np.allclose(np.asarray(decayed[leaf]), np.asarray(undecayed[leaf]))
        expected = decayed if decays else undecayed
        np.testing.assert_allclose(np.asarray(masked[leaf]), np.asarray(expected[leaf]), rtol=1e-6)


@pytest.mark.parametrize(
    "name",
    [
        "lrmsprop_momentum",
        "ladagrad",
        "ladam",
        "wave_ladam",
    ],
)
def test_inject_hyperparams_on_complex_params_equals_plain(name):
    """inject_hyperparams stores the hyperparameters in the complex params' dtype; they are
    taken as real numbers (a complex-to-real cast warns in JAX, and is to raise)."""
    factory, kwargs = OPTIMIZERS_UNDER_TEST[name]
    params, grads = _tree(0, jnp.complex64), [_tree(1, jnp.complex64)]
    injected = optax.inject_hyperparams(factory)(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        got = _eager_updates(injected, params, grads)
    expected = _eager_updates(factory(**kwargs), params, grads)
    _assert_trees_close(got, expected, rtol=3e-5, atol=1e-7)


def test_a_traced_wave_E0_is_squared_as_a_static_one():
    """A nonzero rest level under inject_hyperparams (the battery's traces wave_E0 = 0, which
    takes the first step's mean square instead)."""
    kwargs = dict(learning_rate=1e-2, c2=0.1, wave_dt=0.2, wave_E0=2.0)
    params, grads = _tree(0), [_tree(1), _tree(2)]
    injected = optax.inject_hyperparams(ladam_optax.wave_ladam)(**kwargs)
    got = _eager_updates(injected, params, grads)
    expected = _eager_updates(ladam_optax.wave_ladam(**kwargs), params, grads)
    _assert_trees_close(got, expected, rtol=3e-5, atol=1e-7)


def test_wave_ladam_weight_decay_is_added_to_the_gradient():
    """Coupled decay, as ladam's: wave_ladam(weight_decay) is optax.add_decayed_weights chained
    before wave_ladam without it (0.4.1 has only decoupled decay, checked in test_parity.py)."""
    kwargs = dict(learning_rate=1e-2, c2=0.1, wave_dt=0.2)
    params, grads = _tree(0), [_tree(1), _tree(2)]
    got = _eager_updates(ladam_optax.wave_ladam(weight_decay=0.1, **kwargs), params, grads)
    chained = optax.chain(optax.add_decayed_weights(0.1), ladam_optax.wave_ladam(**kwargs))
    _assert_trees_close(got, _eager_updates(chained, params, grads))
