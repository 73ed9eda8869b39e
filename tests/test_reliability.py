"""Inputs that were silently wrong: complex parameters, c2 beyond the stencil's stability limit,
non-finite hyperparameters, integer leaves, mismatched shapes; each now right or refused."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import NAMES_UNDER_TEST, build
from test_laplacian import oracle

import ladam_optax
from ladam_optax._transform import c2_limit

COMPLEX_SHAPES = {"w": (16, 24), "b": (24,), "k": (3, 3, 4, 4)}


def _complex_tree(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {
        k: jnp.asarray(
            scale * (rng.standard_normal(s) + 1j * rng.standard_normal(s)), jnp.complex64
        )
        for k, s in COMPLEX_SHAPES.items()
    }


def test_complex_ladam_at_c2_zero_is_optax_adam_over_many_steps():
    ours, theirs = ladam_optax.ladam(1e-2, c2=0.0), optax.adam(1e-2)
    params = _complex_tree(0)
    states = ours.init(params), theirs.init(params)
    step = jax.jit(lambda tx_index, g, s: (ours, theirs)[tx_index].update(g, s), static_argnums=0)
    for seed in range(1, 31):
        grads = _complex_tree(seed)
        (a, s0), (b, s1) = step(0, grads, states[0]), step(1, grads, states[1])
        states = s0, s1
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            assert x.dtype == jnp.complex64
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=3e-5, atol=1e-8)
    # The second moment is real, half the memory of a complex one.
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(optax.tree.get(states[0], "nu")))


@pytest.mark.parametrize("name", NAMES_UNDER_TEST)
def test_every_optimizer_converges_on_complex_parameters(name):
    target = _complex_tree(0)
    params = jax.tree.map(jnp.zeros_like, target)
    tx = build(name)
    state = tx.init(params)

    def loss(p):
        pairs = zip(jax.tree.leaves(p), jax.tree.leaves(target), strict=True)
        return sum(jnp.sum(jnp.abs(a - t) ** 2) for a, t in pairs)

    @jax.jit
    def step(params, state):
        # optax's convention for complex parameters: the conjugate of JAX's gradient.
        grads = jax.tree.map(jnp.conj, jax.grad(loss)(params))
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    initial = float(loss(params))
    for _ in range(300):
        params, state = step(params, state)
    final = float(loss(params))
    assert np.isfinite(final) and final < 0.3 * initial, (initial, final)
    assert all(p.dtype == jnp.complex64 for p in jax.tree.leaves(params))


@pytest.mark.parametrize("factory", [ladam_optax.ladam, ladam_optax.lrmsprop, ladam_optax.ladagrad])
def test_complex_first_step_against_numpy(factory):
    """Step 1: the smoothed second moment is the real field |g|^2 (times (1 - b2), bias-corrected
    away), the update g over its root."""
    grads = {"w": _complex_tree(3)["w"]}
    params = jax.tree.map(jnp.zeros_like, grads)
    tx = factory(1.0, c2=0.2, eps=1e-8)
    updates, _ = tx.update(grads, tx.init(params), params)
    g = np.asarray(grads["w"], np.complex128)
    v = np.abs(g) ** 2
    if factory is ladam_optax.lrmsprop:
        v = (1 - 0.99) * v
    smoothed = v + 0.2 * oracle(v, "9point")
    floor = 1e-8 if factory is ladam_optax.ladam else 0.0
    expected = -g / (np.sqrt(np.maximum(smoothed, floor)) + 1e-8)
    np.testing.assert_allclose(np.asarray(updates["w"]), expected, rtol=2e-4, atol=1e-6)


def test_complex_update_lap_and_weight_lap_smooth_real_and_imaginary_parts():
    for mode in ("update_lap", "weight_lap"):
        tx = ladam_optax.ladam(1e-2, c2=0.1, mode=mode)
        params = _complex_tree(0)
        updates, _ = tx.update(_complex_tree(1), tx.init(params), params)
        plain, _ = optax.adam(1e-2).update(_complex_tree(1), optax.adam(1e-2).init(params))
        for x in jax.tree.leaves(updates):
            assert x.dtype == jnp.complex64 and np.all(np.isfinite(np.asarray(x)))
        assert np.abs(np.asarray(updates["w"]) - np.asarray(plain["w"])).max() > 1e-5


# --- c2 beyond the stability limits ------------------------------------------------------------

LIMITS = {
    ("variance_lap", "9point"): 0.3,
    ("variance_lap", "5point"): 0.25,
    ("update_lap", "9point"): 3 / 16,
    ("update_lap", "5point"): 1 / 8,
    ("weight_lap", "9point"): 3 / 8,
    ("weight_lap", "5point"): 1 / 4,
}


@pytest.mark.parametrize(("mode", "stencil"), list(LIMITS))
def test_c2_above_the_limit_warns_once_and_below_it_does_not(mode, stencil):
    limit = LIMITS[(mode, stencil)]
    assert c2_limit(mode, stencil)[0] == pytest.approx(limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ladam_optax.ladam(c2=limit, mode=mode, stencil=stencil)
    with pytest.warns(UserWarning, match=f"above {limit:.4g}") as record:
        ladam_optax.ladam(c2=1.01 * limit, mode=mode, stencil=stencil)
    assert len(record) == 1
    assert record[0].filename == __file__  # attributed to the caller, not to the package


@pytest.mark.parametrize("factory", [ladam_optax.lrmsprop, ladam_optax.ladagrad])
def test_lrmsprop_and_ladagrad_warn_above_the_variance_limit(factory):
    with pytest.warns(UserWarning, match="smoothed variance stays non-negative"):
        factory(c2=0.31)


def test_the_centre_weight_limit_is_where_the_smoothed_variance_can_go_negative():
    spike = jnp.zeros((8, 8)).at[4, 4].set(1.0)
    at_limit = spike + 0.3 * ladam_optax.laplacian(spike)
    beyond = spike + 0.31 * ladam_optax.laplacian(spike)
    assert float(at_limit.min()) >= -1e-6 and float(beyond.min()) < 0.0


# --- hyperparameters and leaves refused at construction or init --------------------------------


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (ladam_optax.ladam, "c2"),
        (ladam_optax.ladam, "learning_rate"),
        (ladam_optax.ladam, "eps"),
        (ladam_optax.ladam, "weight_decay"),
        (ladam_optax.ladam, "b1"),
        (ladam_optax.wave_ladam, "wave_dt"),
        (ladam_optax.wave_ladam, "wave_kappa"),
        (ladam_optax.wave_ladam, "wave_E0"),
        (ladam_optax.wave_ladam, "wave_damping"),
        (ladam_optax.ladamw, "weight_decay"),
        (ladam_optax.ladagrad, "lr_decay"),
        (ladam_optax.lrmsprop, "momentum"),
        (ladam_optax.add_weight_diffusion, "c2"),
    ],
)
def test_non_finite_hyperparameters_raise(factory, name, value):
    with pytest.raises(ValueError, match=name):
        factory(**{name: value})


def test_the_wave_mode_has_its_own_optimizer():
    with pytest.raises(ValueError, match="wave_ladamw"):
        ladam_optax.ladam(mode="wave_variance")
    with pytest.raises(TypeError, match="wave_dt"):
        ladam_optax.ladam(wave_dt=0.1)  # pyright: ignore[reportCallIssue]
    with pytest.raises(ValueError, match=r"wave_damping must be in \[0, 1\]"):
        ladam_optax.wave_ladamw(wave_damping=1.5)


@pytest.mark.parametrize(
    ("mu_dtype", "error"), [(jnp.int32, ValueError), (jnp.bool_, ValueError), ("nope", TypeError)]
)
def test_mu_dtype_must_be_floating(mu_dtype, error):
    with pytest.raises(error, match="mu_dtype"):
        ladam_optax.ladam(mu_dtype=mu_dtype)


@pytest.mark.parametrize("name", NAMES_UNDER_TEST)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_and_boolean_leaves_raise_at_init_with_their_path(name, dtype):
    params = {"layer": {"kernel": jnp.zeros((4, 4)), "step": jnp.zeros((), dtype)}}
    with pytest.raises(TypeError, match=r"\['layer'\]\['step'\].*optax.masked"):
        build(name).init(params)


def test_masking_the_integer_leaf_out_works():
    params = {"kernel": jnp.ones((4, 4)), "step": jnp.zeros((), jnp.int32)}
    tx = optax.masked(ladam_optax.ladam(1e-2), {"kernel": True, "step": False})
    updates, _ = tx.update({"kernel": jnp.ones((4, 4)), "step": params["step"]}, tx.init(params))
    assert updates["kernel"].shape == (4, 4)


@pytest.mark.parametrize("name", NAMES_UNDER_TEST)
def test_a_gradient_of_the_wrong_shape_names_its_leaf(name):
    params = {"a": jnp.zeros((4, 4)), "b": jnp.zeros((6,))}
    tx = build(name)
    with pytest.raises(ValueError, match=r"\['b'\] has shape \(5,\)"):
        tx.update({"a": jnp.zeros((4, 4)), "b": jnp.zeros((5,))}, tx.init(params), params)


def test_laplacian_refuses_integer_arrays():
    with pytest.raises(TypeError, match="floating or complex"):
        ladam_optax.laplacian(jnp.zeros((4, 4), jnp.int32))


def test_laplacian_smoothing_of_a_tree_of_empty_leaves():
    tx = ladam_optax.laplacian_smoothing(layerwise=False)
    tree = {"a": jnp.zeros((0,)), "b": jnp.zeros((3, 0))}
    updates, _ = tx.update(tree, tx.init(tree))
    assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, tree)


def test_laplacian_smoothing_under_inject_hyperparams_with_its_defaults():
    tree = {"w": jnp.zeros(8).at[0].set(1.0), "small": jnp.ones(3)}
    injected = optax.inject_hyperparams(ladam_optax.laplacian_smoothing)()
    got, _ = jax.jit(injected.update)(tree, injected.init(tree))
    expected, _ = ladam_optax.laplacian_smoothing().update(tree, optax.EmptyState())
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_min_spatial_size_stays_static_with_static_args():
    """Traced, every small leaf runs the stencil behind a where; static, none does."""
    params = {f"w{i}": jnp.ones((4, 3)) for i in range(4)}  # 12 elements: below 16

    def primitives(**injected_kwargs):
        tx = optax.inject_hyperparams(ladam_optax.ladam, **injected_kwargs)(
            learning_rate=1e-3, c2=0.1, min_spatial_size=16
        )
        jaxpr = jax.make_jaxpr(tx.update)(params, tx.init(params), params)
        return str(jaxpr)

    assert "pad" in primitives()  # the stencil is in the program
    assert "pad" not in primitives(static_args=("min_spatial_size",))
