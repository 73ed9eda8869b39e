"""Neuron reordering: put correlated hidden units next to each other before training with LAdam.

A dense layer's output units are in arbitrary order, so the Laplacian along them couples
unrelated neurons. Permuting the units (and the next layer's inputs with them) leaves the network's
function unchanged while making neighbours along that axis similar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

# The reference keeps small layers as they are: too few units for an order to matter.
_MIN_NEURONS_TO_REORDER = 5


def compute_neuron_order(activations: Any) -> list[int]:
    """A permutation of the neurons that places strongly correlated ones next to each other.

    The neurons (columns of ``activations``) are standardized (sample mean, unbiased standard
    deviation clamped at 1e-8) and correlated, ``C = Z^T Z / batch``; the order is the greedy
    nearest-neighbour path that starts at neuron 0 and always moves to the unvisited neuron of
    highest correlation with the current one (the first of equals). Up to 4 neurons keep their
    order. Runs once on the host, in float64.

    Args:
      activations: a 2-D array ``[batch, neurons]`` of finite values (jax or NumPy), e.g. a
        hidden layer's outputs collected on a few training batches.

    Returns:
      The order as a list of ints: neuron ``order[i]`` goes to position ``i``.

    Examples:
      >>> import numpy as np
      >>> from ladam_optax import compute_neuron_order
      >>> base = np.random.default_rng(0).normal(size=(256, 3))
      >>> acts = base[:, [0, 1, 2, 0, 1, 2]] + 0.01 * np.random.default_rng(1).normal(size=(256, 6))
      >>> compute_neuron_order(acts)[:2]
      [0, 3]

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``ladam.reorder.compute_neuron_order``.
    """
    if not hasattr(activations, "shape") or not hasattr(activations, "dtype"):
        raise TypeError(
            f"activations must be a jax or NumPy array, got {type(activations).__name__}"
        )
    if activations.ndim != 2:
        raise ValueError(
            f"activations must be 2-D [batch, neurons], got shape {tuple(activations.shape)}"
        )
    acts = np.asarray(activations, dtype=np.float64)
    batch, n = acts.shape
    if n < _MIN_NEURONS_TO_REORDER:
        return list(range(n))
    if batch < 2:
        raise ValueError(f"activations need at least 2 rows to correlate, got {batch}")
    if not np.all(np.isfinite(acts)):
        raise ValueError("activations contain NaN or infinite values")
    stds = np.maximum(acts.std(axis=0, ddof=1), 1e-8)
    normed = (acts - acts.mean(axis=0)) / stds
    corr = normed.T @ normed / batch
    visited = np.zeros(n, dtype=bool)
    visited[0] = True
    order = [0]
    for _ in range(n - 1):
        row = np.where(visited, -np.inf, corr[order[-1]])
        nxt = int(np.argmax(row))
        order.append(nxt)
        visited[nxt] = True
    return order


def _dense(name: str, layer: Any) -> dict:
    if not isinstance(layer, Mapping):
        raise TypeError(
            f"{name} must be a mapping with 'kernel' (in, out) and optionally 'bias' (out,), "
            f"got {type(layer).__name__}"
        )
    unknown = sorted(set(layer) - {"kernel", "bias"})
    if unknown:
        raise ValueError(f"{name} may only have 'kernel' and 'bias', got extra keys {unknown}")
    if "kernel" not in layer:
        raise ValueError(f"{name} has no 'kernel'")
    if jnp.ndim(layer["kernel"]) != 2:
        raise ValueError(
            f"{name}['kernel'] must be 2-D (in, out), got shape {jnp.shape(layer['kernel'])}"
        )
    return dict(layer)


def reorder_dense(
    layer_params: Mapping[str, Any], next_layer_params: Mapping[str, Any], order: Sequence[int]
) -> tuple[dict, dict]:
    """Permutes a Dense layer's output units and the next Dense layer's inputs alike.

    With ``h = act(x @ kernel + bias)`` feeding ``next``, the units of ``h`` are reordered by
    ``order``: ``kernel[:, order]``, ``bias[order]`` and ``next_kernel[order, :]``. Any
    element-wise activation in between commutes with the permutation, so the network computes the
    same function.

    Args:
      layer_params: ``{"kernel": (in, out), "bias": (out,)}`` (bias optional), e.g.
        ``nnx.to_pure_dict(nnx.state(model.fc1))`` or a Linen ``params["Dense_0"]``.
      next_layer_params: the following Dense layer's ``{"kernel": (out, next), "bias": ...}``;
        its bias is unchanged.
      order: a permutation of ``range(out)``, e.g. from :func:`compute_neuron_order`.

    Returns:
      ``(new_layer_params, new_next_layer_params)`` as new dicts of arrays.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ladam_optax import reorder_dense
      >>> fc1 = {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.arange(3.0)}
      >>> fc2 = {"kernel": jnp.arange(3.0).reshape(3, 1), "bias": jnp.zeros(1)}
      >>> new1, new2 = reorder_dense(fc1, fc2, [2, 0, 1])
      >>> new1["bias"].tolist(), new2["kernel"][:, 0].tolist()
      ([2.0, 0.0, 1.0], [2.0, 0.0, 1.0])

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``ladam.reorder.reorder_linear_layer``.
    """
    layer = _dense("layer_params", layer_params)
    following = _dense("next_layer_params", next_layer_params)
    width = jnp.shape(layer["kernel"])[1]
    if jnp.shape(following["kernel"])[0] != width:
        raise ValueError(
            f"next_layer_params['kernel'] has {jnp.shape(following['kernel'])[0]} inputs, but "
            f"layer_params['kernel'] has {width} outputs"
        )
    if "bias" in layer and jnp.shape(layer["bias"]) != (width,):
        raise ValueError(
            f"layer_params['bias'] must have shape ({width},), got {jnp.shape(layer['bias'])}"
        )
    index = np.asarray(order)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise TypeError(f"order must be a sequence of ints, got {order!r}")
    if sorted(index.tolist()) != list(range(width)):
        raise ValueError(f"order must be a permutation of range({width}), got {list(order)}")
    layer["kernel"] = jnp.asarray(layer["kernel"])[:, index]
    if "bias" in layer:
        layer["bias"] = jnp.asarray(layer["bias"])[index]
    following["kernel"] = jnp.asarray(following["kernel"])[index, :]
    return layer, following
