"""smoothing_effect against a NumPy computation of the same numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_folds import fold_oracle

import ladam_optax
from ladam_optax import Fold, SmoothingEffect, smoothing_effect, torch_folds

SHAPES = {
    "dense": (24, 40),
    "vector": (64,),
    "Conv_0": {"kernel": (3, 3, 4, 8)},
    "small": (3, 4),  # below min_spatial_size: not smoothed
    "thin": (2, 50),  # a side below 3: zero Laplacian
}


def _tree(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s), jnp.float32),
        SHAPES,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def _trained_state(tx, steps=3):
    params = _tree(0)
    state = tx.init(params)
    for seed in range(1, steps + 1):
        # Gradients of very different scales in different entries: a rough variance field.
        grads = jax.tree.map(lambda g: g * jnp.abs(g) ** 3, _tree(seed))
        _, state = tx.update(grads, state, params)
    return state


def _numpy_effect(nu, count, c2, b2, eps, fold, stencil="9point"):
    v = np.asarray(nu, np.float64) / (1 - b2**count)
    reference_fold = fold or Fold((0,), tuple(range(1, v.ndim)))
    smoothed = v + c2 * fold_oracle(v, reference_fold, stencil)
    ratio = (np.sqrt(v) + eps) / (np.sqrt(np.maximum(smoothed, eps)) + eps)
    effect = np.abs(ratio - 1).ravel()
    return (
        np.median(effect),
        np.quantile(effect, 0.99),
        effect.max(),
        np.mean(smoothed <= eps),
    )


@pytest.mark.parametrize("fold", [None, torch_folds])
@pytest.mark.parametrize("c2", [1e-4, 0.2])
def test_matches_numpy(c2, fold):
    b2, eps = 0.99, 1e-8
    state = _trained_state(ladam_optax.ladam(1e-3, b2=b2, eps=eps, c2=c2, fold=fold))
    got = jax.jit(lambda s: smoothing_effect(s, c2, b2=b2, eps=eps, fold=fold))(state)
    nu = optax.tree.get(state, "nu")
    folds = {"Conv_0": {"kernel": Fold((3,), (2, 0, 1)) if fold else None}}
    for name in ("dense", "vector"):
        expected = _numpy_effect(nu[name], 3, c2, b2, eps, None)
        np.testing.assert_allclose(np.array(got[name]), expected, rtol=2e-3, atol=1e-7)
    expected = _numpy_effect(nu["Conv_0"]["kernel"], 3, c2, b2, eps, folds["Conv_0"]["kernel"])
    np.testing.assert_allclose(np.array(got["Conv_0"]["kernel"]), expected, rtol=2e-3, atol=1e-7)
    for name in ("small", "thin"):
        assert got[name] == SmoothingEffect(*[np.float32(0)] * 4)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(got))
    if c2 == 1e-4:
        assert float(got["dense"].median) < 1e-2
    else:
        assert float(got["dense"].max) > 0.05


def test_large_c2_shows_clamped_entries():
    with pytest.warns(UserWarning, match="above"):
        tx = ladam_optax.ladam(1e-3, c2=0.5)
    got = smoothing_effect(_trained_state(tx), 0.5)
    assert float(got["dense"].clamped_fraction) > 0.0


def test_before_the_first_step_it_is_zero():
    tx = ladam_optax.ladam(1e-3, c2=0.1)
    got = smoothing_effect(tx.init(_tree(0)), 0.1)
    assert all(float(x) == 0.0 for x in jax.tree.leaves(got))


def test_finds_the_state_inside_wrappers():
    inner = ladam_optax.ladam(1e-3, c2=0.1)
    plain = smoothing_effect(_trained_state(inner), 0.1)
    for wrapped in (
        optax.inject_hyperparams(ladam_optax.ladam)(learning_rate=1e-3, c2=0.1),
        optax.MultiSteps(inner, every_k_schedule=1),
        optax.chain(optax.clip_by_global_norm(1e9), inner),
    ):
        got = smoothing_effect(_trained_state(wrapped), 0.1)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-8)


def test_no_or_several_ladam_states_say_which_to_pass():
    with pytest.raises(ValueError, match="no ScaleByLAdamState"):
        smoothing_effect(optax.adam(1e-3).init(_tree(0)), 0.1)
    labels = jax.tree.map(lambda _: "a", _tree(0))
    labels["dense"] = "b"
    tx = optax.partition({"a": ladam_optax.ladam(c2=0.1), "b": ladam_optax.ladam(c2=0.1)}, labels)
    state = tx.init(_tree(0))
    with pytest.raises(ValueError, match="pass the one wanted"):
        smoothing_effect(state, 0.1)
    one = smoothing_effect(state.inner_states["b"], 0.1)
    assert isinstance(one["dense"], SmoothingEffect)
