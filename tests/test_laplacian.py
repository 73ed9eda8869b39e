"""The periodic Laplacian against a float64 NumPy oracle built from np.roll."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladam_optax import laplacian
from ladam_optax._laplacian import folded_shape

IMPLS = ["auto", "conv"]


def oracle(x: np.ndarray, stencil: str) -> np.ndarray:
    """The reference definition, in float64, with np.roll for the periodic neighbours."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        if x.size < 4:
            return np.zeros_like(x)
        return np.roll(x, 1) + np.roll(x, -1) - 2 * x
    if x.ndim == 0:
        return np.zeros_like(x)
    field = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    if min(field.shape) < 3:
        return np.zeros_like(x)

    def shift(a, b):
        return np.roll(field, (a, b), axis=(0, 1))

    edges = shift(1, 0) + shift(-1, 0) + shift(0, 1) + shift(0, -1)
    if stencil == "5point":
        out = edges - 4 * field
    else:
        corners = shift(1, 1) + shift(1, -1) + shift(-1, 1) + shift(-1, -1)
        out = (corners + 4 * edges - 20 * field) / 6
    return out.reshape(x.shape)


SHAPES = [
    (4,),
    (7,),
    (3, 3),
    (4, 5),
    (8, 3),
    (5, 9),
    (17, 4),
    (6, 7, 5),
    (3, 3, 4, 8),
    (2, 2, 3, 3, 4),
]
DEGENERATE = [(), (0,), (3,), (1, 1), (2, 100), (100, 2), (0, 5), (5, 0), (3, 1, 2)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("stencil", ["9point", "5point"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_numpy_oracle(shape, stencil, impl, x64):
    x = np.random.default_rng(0).standard_normal(shape)
    out = laplacian(jnp.asarray(x, jnp.float64), stencil, impl=impl)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out), oracle(x, stencil), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", DEGENERATE)
def test_degenerate_shapes_give_zeros(shape, impl):
    x = jnp.ones(shape)
    out = laplacian(x, impl=impl)
    assert out.shape == shape and out.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(out), np.zeros(shape))
    assert folded_shape(shape) is None


@pytest.mark.parametrize("stencil", ["9point", "5point"])
def test_impls_agree_in_float32_and_bfloat16(stencil):
    x = jax.random.normal(jax.random.key(0), (33, 65))
    slices = laplacian(x, stencil, impl="auto")
    conv = laplacian(x, stencil, impl="conv")
    np.testing.assert_allclose(np.asarray(slices), np.asarray(conv), rtol=1e-5, atol=1e-5)
    xb = x.astype(jnp.bfloat16)
    assert laplacian(xb, stencil, impl="auto").dtype == jnp.bfloat16
    assert laplacian(xb, stencil, impl="conv").dtype == jnp.bfloat16


def test_constant_field_has_zero_laplacian_and_sum_is_conserved():
    """A periodic Laplacian annihilates constants and its output sums to zero (conservation)."""
    np.testing.assert_allclose(np.asarray(laplacian(jnp.full((8, 12), 3.0))), 0.0, atol=1e-6)
    x = jax.random.normal(jax.random.key(1), (10, 10))
    assert abs(float(jnp.sum(laplacian(x)))) < 1e-4


def test_folding_views_trailing_axes_as_columns():
    assert folded_shape((3, 3, 4, 8)) == (3, 96)
    assert folded_shape((7,)) == (7,)
    x = jax.random.normal(jax.random.key(2), (4, 3, 5))
    np.testing.assert_allclose(
        np.asarray(laplacian(x)), np.asarray(laplacian(x.reshape(4, 15))).reshape(4, 3, 5)
    )


def test_jit_and_grad():
    x = jax.random.normal(jax.random.key(3), (6, 6))
    np.testing.assert_allclose(jax.jit(laplacian)(x), laplacian(x), rtol=1e-6)
    # The operator is linear and symmetric, so the gradient of <1, lap(x)> is lap(1) = 0.
    grad = jax.grad(lambda y: jnp.sum(laplacian(y)))(x)
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_vmap_and_symmetric_gradient(impl):
    """Under vmap, and differentiated (through the optimisation barrier of the ring): the
    operator is symmetric, so the gradient of ||lap(x)||^2 / 2 is lap(lap(x))."""
    x = jax.random.normal(jax.random.key(4), (3, 5, 7))
    batched = jax.vmap(lambda y: laplacian(y, impl=impl))(x)
    np.testing.assert_allclose(batched, np.stack([oracle(y, "9point") for y in x]), atol=1e-5)
    grad = jax.grad(lambda y: 0.5 * jnp.sum(laplacian(y, impl=impl) ** 2))(x[0])
    np.testing.assert_allclose(grad, oracle(oracle(x[0], "9point"), "9point"), atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stencil": "7point"}, "stencil must be '5point' or '9point', got '7point'"),
        ({"impl": "fft"}, "laplacian_impl must be one of 'auto', .* got 'fft'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        laplacian(jnp.ones((4, 4)), **kwargs)
