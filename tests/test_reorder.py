"""compute_neuron_order / reorder_dense against ladam 0.4.1's ladam.reorder, on Flax NNX MLPs."""

import importlib
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import load_reference, require_torch

from ladam_optax import compute_neuron_order, reorder_dense


def _reference():
    return importlib.import_module(load_reference("0.4.1").__name__ + ".reorder")


def _activations(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.normal(size=(200, n)).astype(np.float32)
    if kind == "clustered":  # groups of strongly correlated neurons, shuffled
        base = rng.normal(size=(200, 4))
        columns = rng.permutation(np.arange(n) % 4)
        return (base[:, columns] + 0.3 * rng.normal(size=(200, n))).astype(np.float32)
    # post-ReLU hidden layer of a random MLP, with a few dead (constant) units
    x = rng.normal(size=(200, 16))
    hidden = np.maximum(x @ rng.normal(size=(16, n)) + rng.normal(size=n), 0.0)
    hidden[:, : n // 8] = 0.0
    return hidden.astype(np.float32)


@pytest.mark.parametrize("kind", ["random", "clustered", "relu"])
@pytest.mark.parametrize("n", [3, 5, 16, 64])
@pytest.mark.parametrize("seed", [0, 1])
def test_order_matches_reference(kind, n, seed):
    torch = require_torch()
    acts = _activations(kind, n, seed)
    expected = _reference().compute_neuron_order(torch.from_numpy(acts))
    assert compute_neuron_order(acts) == expected
    assert compute_neuron_order(jnp.asarray(acts)) == expected


def test_order_is_a_permutation_that_groups_clusters():
    acts = _activations("clustered", 32, 0)
    order = compute_neuron_order(acts)
    assert sorted(order) == list(range(32)) and order[0] == 0
    corr = np.corrcoef(acts.T)
    adjacent = np.mean([corr[a, b] for a, b in itertools.pairwise(order)])
    identity = np.mean([corr[a, a + 1] for a in range(31)])
    # 4 clusters: at most 3 of the 31 neighbour pairs cross clusters in the greedy path
    assert adjacent > 0.7 and identity < 0.4, (adjacent, identity)


class _MLP(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = nnx.Linear(10, 24, rngs=rngs)
        self.fc2 = nnx.Linear(24, 20, rngs=rngs)
        self.fc3 = nnx.Linear(20, 3, rngs=rngs)

    def hidden(self, x):
        h1 = jax.nn.relu(self.fc1(x))
        return h1, jnp.tanh(self.fc2(h1))

    def __call__(self, x):
        return self.fc3(self.hidden(x)[1])


def test_reordered_network_computes_the_same_function():
    model = _MLP(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (64, 10))
    before = model(x)
    h1, h2 = model.hidden(x)
    for layer, following, acts in [("fc1", "fc2", h1), ("fc2", "fc3", h2)]:
        order = compute_neuron_order(acts)
        assert order != sorted(order)
        new, new_next = reorder_dense(
            nnx.to_pure_dict(nnx.state(getattr(model, layer))),
            nnx.to_pure_dict(nnx.state(getattr(model, following))),
            order,
        )
        nnx.update(getattr(model, layer), new)
        nnx.update(getattr(model, following), new_next)
        if layer == "fc1":
            np.testing.assert_allclose(model.hidden(x)[0], h1[:, order], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model(x), before, rtol=1e-5, atol=1e-6)


def test_reorder_matches_reference_layers():
    torch = require_torch()
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(6, 8), torch.nn.Linear(8, 5)
    ours1 = {"kernel": fc1.weight.detach().numpy().T, "bias": fc1.bias.detach().numpy()}
    ours2 = {"kernel": fc2.weight.detach().numpy().T, "bias": fc2.bias.detach().numpy()}
    order = [3, 1, 7, 0, 2, 6, 4, 5]
    new1, new2 = reorder_dense(ours1, ours2, order)
    _reference().reorder_linear_layer(fc1, fc2, order)
    np.testing.assert_array_equal(new1["kernel"], fc1.weight.detach().numpy().T)
    np.testing.assert_array_equal(new1["bias"], fc1.bias.detach().numpy())
    np.testing.assert_array_equal(new2["kernel"], fc2.weight.detach().numpy().T)
    np.testing.assert_array_equal(new2["bias"], fc2.bias.detach().numpy())


def test_reorder_without_bias_and_linen_params():
    layer = {"kernel": jnp.arange(12.0).reshape(3, 4)}
    following = {"kernel": jnp.arange(8.0).reshape(4, 2), "bias": jnp.ones(2)}
    new, new_next = reorder_dense(layer, following, [1, 0, 3, 2])
    assert set(new) == {"kernel"}
    np.testing.assert_array_equal(new["kernel"][:, 0], layer["kernel"][:, 1])
    np.testing.assert_array_equal(new_next["kernel"][0], following["kernel"][1])
    assert layer["kernel"][0, 0] == 0.0  # inputs are not modified


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: compute_neuron_order([[1.0, 2.0]]), TypeError, "must be a jax or NumPy array"),
        (lambda: compute_neuron_order(np.ones(8)), ValueError, r"2-D \[batch, neurons\]"),
        (lambda: compute_neuron_order(np.ones((1, 8))), ValueError, "at least 2 rows"),
        (
            lambda: compute_neuron_order(np.full((4, 8), np.nan)),
            ValueError,
            "NaN or infinite",
        ),
        (
            lambda: reorder_dense({"kernel": np.ones((2, 3))}, {"kernel": np.ones((3, 1))}, [0, 1]),
            ValueError,
            r"permutation of range\(3\)",
        ),
        (
            lambda: reorder_dense({"kernel": np.ones((2, 3))}, {"kernel": np.ones((4, 1))}, [0]),
            ValueError,
            "has 4 inputs, but",
        ),
        (
            lambda: reorder_dense({"w": np.ones((2, 3))}, {"kernel": np.ones((3, 1))}, [0, 1, 2]),
            ValueError,
            "may only have 'kernel' and 'bias'",
        ),
        (
            lambda: reorder_dense(np.ones((2, 3)), {"kernel": np.ones((3, 1))}, [0, 1, 2]),
            TypeError,
            "must be a mapping",
        ),
        (
            lambda: reorder_dense(
                {"kernel": np.ones((2, 3))}, {"kernel": np.ones((3, 1))}, [0.0, 1.0, 2.0]
            ),
            TypeError,
            "sequence of ints",
        ),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()
