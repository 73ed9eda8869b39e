"""Property-based tests of the operator (hypothesis): whatever the shape, dtype, stencil,
implementation and fold, the Laplacian is the float64 np.roll oracle's, linear, self-adjoint and
sums to zero; and at c2 = 0 the optimizers are optax's. Examples are bounded so the suite keeps
its time; the failing example, if any, is printed by hypothesis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import require
from test_folds import fold_oracle

import ladam_optax
from ladam_optax import Fold, laplacian

require("hypothesis", "for the property-based tests")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

IMPLS = ("auto", "conv")
DTYPES = {"float16": 40, "bfloat16": 40, "float32": 8, "float64": 8}  # error in eps * max|x|
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def shapes(draw, max_size: int = 2048) -> tuple[int, ...]:
    ndim = draw(st.integers(0, 5))
    shape = tuple(draw(st.integers(0, 9)) for _ in range(ndim))
    while int(np.prod(shape)) > max_size:
        shape = shape[:-1]
    return shape


@st.composite
def folds(draw, ndim: int) -> Fold | None:
    if draw(st.booleans()):
        return None
    axes = draw(st.permutations(range(ndim)))
    split = draw(st.integers(0, ndim))
    return Fold(rows=tuple(axes[:split]), cols=tuple(axes[split:]))


@st.composite
def cases(draw):
    shape = draw(shapes())
    return shape, draw(folds(len(shape)))


def _array(shape, seed, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _reference_fold(ndim: int, fold: Fold | None) -> Fold:
    if fold is not None:
        return fold
    return Fold((0,), tuple(range(1, ndim))) if ndim else Fold((), ())


@SETTINGS
@given(
    case=cases(),
    dtype=st.sampled_from(list(DTYPES)),
    stencil=st.sampled_from(["9point", "5point"]),
    impl=st.sampled_from(IMPLS),
)
@example(case=((300, 257), None), dtype="float32", stencil="9point", impl="auto")
@example(
    case=((2, 3, 64, 65), Fold((3,), (2, 0, 1))), dtype="float32", stencil="5point", impl="auto"
)
def test_equals_the_float64_oracle(case, dtype, stencil, impl, x64):
    shape, fold = case
    x = _array(shape, 0)
    low = jnp.asarray(x, dtype)
    got = np.asarray(laplacian(low, stencil, impl=impl, fold=fold), np.float64)
    assert got.dtype == np.float64 and got.shape == shape
    exact = np.asarray(low, np.float64)  # the input as the dtype holds it
    expected = fold_oracle(exact, _reference_fold(len(shape), fold), stencil)
    scale = float(np.abs(exact).max()) if exact.size else 0.0
    atol = DTYPES[dtype] * float(jnp.finfo(dtype).eps) * max(scale, 1.0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


@SETTINGS
@given(case=cases(), stencil=st.sampled_from(["9point", "5point"]), impl=st.sampled_from(IMPLS))
def test_linear_self_adjoint_and_sums_to_zero(case, stencil, impl, x64):
    shape, fold = case
    x, y = jnp.asarray(_array(shape, 1)), jnp.asarray(_array(shape, 2))

    def lap(v):
        return np.asarray(laplacian(v, stencil, impl=impl, fold=fold))

    np.testing.assert_allclose(lap(2.5 * x - 0.5 * y), 2.5 * lap(x) - 0.5 * lap(y), atol=1e-11)
    assert np.sum(lap(x) * np.asarray(y)) == pytest.approx(
        np.sum(np.asarray(x) * lap(y)), abs=1e-10
    )
    assert abs(np.sum(lap(x))) < 1e-10


@settings(SETTINGS, max_examples=6)
@given(
    leaf_shapes=st.lists(shapes(max_size=512), min_size=1, max_size=4),
    pair=st.sampled_from(["adam", "rmsprop"]),
)
def test_c2_zero_is_optax(leaf_shapes, pair):
    ours, theirs = {
        "adam": (ladam_optax.ladam(1e-2, c2=0.0), optax.adam(1e-2)),
        "rmsprop": (
            ladam_optax.lrmsprop(1e-2, c2=0.0),
            optax.rmsprop(1e-2, decay=0.99, eps=1e-8, eps_in_sqrt=False),
        ),
    }[pair]
    params = {f"p{i}": jnp.asarray(_array(s, i, np.float32)) for i, s in enumerate(leaf_shapes)}
    states = [ours.init(params), theirs.init(params)]
    for seed in range(3):
        grads = jax.tree.map(lambda p, seed=seed: p * 0.5 + seed, params)
        (a, states[0]), (b, states[1]) = (
            ours.update(grads, states[0], params),
            theirs.update(grads, states[1], params),
        )
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=3e-5, atol=1e-7)
