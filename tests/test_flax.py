"""Flax integration: NNX nnx.Optimizer, Linen TrainState, and per-layer c2 with optax.partition."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import require

import ladam_optax

flax = require("flax", "for the Flax integration tests")
from flax import linen, nnx  # noqa: E402
from flax.training import train_state  # noqa: E402

X = jax.random.normal(jax.random.key(0), (128, 16))
Y = jnp.sin(X @ jax.random.normal(jax.random.key(1), (16, 4)))


def kernel_or_rest(path, _) -> str:
    """The PyTorch param-groups recipe: smooth the weight matrices, not biases and scales.

    The name is the path's last dict key: Linen params end there, NNX states add ``.value``.
    """
    names = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
    return "smooth" if names[-1] == "kernel" else "plain"


def per_layer_c2(c2: float = 1e-4) -> optax.GradientTransformation:
    return optax.partition(
        {"smooth": ladam_optax.ladam(1e-2, c2=c2), "plain": ladam_optax.ladam(1e-2, c2=0.0)},
        lambda params: jax.tree_util.tree_map_with_path(kernel_or_rest, params),
    )


class NNXModel(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(16, 32, rngs=rngs)
        self.norm = nnx.LayerNorm(32, rngs=rngs)
        self.out = nnx.Linear(32, 4, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.gelu(self.norm(self.hidden(x))))


class LinenModel(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = linen.gelu(linen.LayerNorm()(linen.Dense(32)(x)))
        return linen.Dense(4)(x)


def _train_nnx(tx, steps=60):
    model = NNXModel(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(X) - Y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(steps)]
    return losses, optimizer


def _train_linen(tx, steps=60):
    model = LinenModel()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.key(0), X)["params"], tx=tx
    )

    @jax.jit
    def step(state):
        def loss_fn(params):
            return jnp.mean((state.apply_fn({"params": params}, X) - Y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(steps):
        state, loss = step(state)
        losses.append(float(loss))
    return losses, state


@pytest.mark.parametrize("train", [_train_nnx, _train_linen], ids=["nnx", "linen"])
@pytest.mark.parametrize(
    "make_tx",
    [lambda: ladam_optax.ladam(1e-2, c2=1e-4), lambda: ladam_optax.ladamw(1e-2), per_layer_c2],
    ids=["ladam", "ladamw", "per_layer_c2"],
)
def test_training_lowers_the_loss(train, make_tx):
    losses, _ = train(make_tx())
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0]


def test_per_layer_labels_from_the_flax_trees():
    nnx_params = nnx.state(NNXModel(nnx.Rngs(0)), nnx.Param)
    linen_params = LinenModel().init(jax.random.key(0), X)["params"]
    for params in (nnx_params, linen_params):
        labels = jax.tree.leaves(jax.tree_util.tree_map_with_path(kernel_or_rest, params))
        assert labels.count("smooth") == 2 and labels.count("plain") == 4  # 2 biases, scale, bias


def test_per_layer_c2_smooths_only_the_kernels():
    """The partition gives kernels the c2 optimizer and everything else the c2=0 one."""
    params = LinenModel().init(jax.random.key(0), X)["params"]
    grads = jax.tree.map(
        lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape), params
    )
    tx = per_layer_c2(c2=0.3)
    updates, _ = tx.update(grads, tx.init(params), params)
    smooth = ladam_optax.ladam(1e-2, c2=0.3, min_spatial_size=0)
    plain = ladam_optax.ladam(1e-2, c2=0.0)
    expected_smooth, _ = smooth.update(grads, smooth.init(params), params)
    expected_plain, _ = plain.update(grads, plain.init(params), params)
    kernel = updates["Dense_0"]["kernel"]
    np.testing.assert_allclose(kernel, expected_smooth["Dense_0"]["kernel"], rtol=1e-6)
    assert not np.allclose(kernel, expected_plain["Dense_0"]["kernel"])
    np.testing.assert_allclose(
        updates["LayerNorm_0"]["scale"], expected_plain["LayerNorm_0"]["scale"], rtol=1e-6
    )
