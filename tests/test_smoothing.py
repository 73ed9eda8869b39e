"""laplacian_smoothing against torchzero 0.4.4's LaplacianSmoothing."""

from __future__ import annotations

import importlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import REFERENCE_DIR, _missing, random_tree, require_torch

import ladam_optax

SHAPES = {
    "a_matrix": (12, 9),
    "b_vector": (31,),
    "c_tiny": (4,),
    "d_conv": (3, 3, 2, 5),
    "e_one": (),
}


def _torchzero():
    require_torch()
    path = REFERENCE_DIR / "torchzero-0.4.4"
    if not (path / "torchzero").is_dir():
        _missing(f"torchzero==0.4.4 not found at {path}: run `bash tests/run.sh`")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    return importlib.import_module("torchzero")


def _reference(grads: dict, **settings) -> dict:
    """The smoothed gradients torchzero produces (one step of LR 1 from zero parameters)."""
    torch = require_torch()
    tz = _torchzero()
    params = {k: torch.zeros(v.shape, requires_grad=True) for k, v in grads.items()}
    for k, p in params.items():
        p.grad = torch.tensor(grads[k])
    optimizer = tz.Optimizer(
        list(params.values()), tz.m.LaplacianSmoothing(**settings), tz.m.LR(1.0)
    )
    optimizer.step()
    return {k: -p.detach().numpy() for k, p in params.items()}


@pytest.mark.parametrize("sigma", [0.0, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("layerwise", [True, False])
def test_matches_torchzero(sigma, layerwise):
    grads = random_tree(SHAPES, 0)  # keys in sorted order: tree order == torch's list order
    expected = _reference(grads, sigma=sigma, layerwise=layerwise)
    tx = ladam_optax.laplacian_smoothing(sigma=sigma, layerwise=layerwise)
    ours, _ = jax.jit(tx.update)(jax.tree.map(jnp.asarray, grads), tx.init(grads))
    for key in SHAPES:
        np.testing.assert_allclose(
            np.asarray(ours[key]), expected[key], rtol=1e-5, atol=1e-6, err_msg=key
        )


def test_min_numel_leaves_small_leaves_alone():
    grads = jax.tree.map(jnp.asarray, random_tree(SHAPES, 1))
    tx = ladam_optax.laplacian_smoothing(sigma=2.0, min_numel=31)
    out, _ = tx.update(grads, tx.init(grads))
    for key in ("b_vector", "c_tiny", "e_one"):  # 31, 4 and 1 elements: <= 31
        np.testing.assert_array_equal(np.asarray(out[key]), np.asarray(grads[key]))
    assert not np.allclose(np.asarray(out["a_matrix"]), np.asarray(grads["a_matrix"]))


def test_lsgd_trains_and_keeps_dtypes():
    target = jnp.sin(jnp.linspace(0.0, 6.0, 64))
    params = {"w": jnp.zeros(64, jnp.bfloat16)}
    lsgd = optax.chain(ladam_optax.laplacian_smoothing(1.0), optax.sgd(0.5))
    state = lsgd.init(params)
    loss = lambda p: jnp.mean((p["w"].astype(jnp.float32) - target) ** 2)  # noqa: E731
    initial = float(loss(params))
    for _ in range(100):
        updates, state = lsgd.update(jax.grad(loss)(params), state)
        assert updates["w"].dtype == jnp.bfloat16
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.2 * initial


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"sigma": -1.0}, ValueError), ({"min_numel": -1}, ValueError), ({"layerwise": 1}, TypeError)],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        ladam_optax.laplacian_smoothing(**kwargs)
