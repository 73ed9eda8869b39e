"""Laplacian smoothing of gradients (LSGD, Osher et al.) as an optax transformation."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ladam_optax import _checks


def _inverse_spectrum(n: int, sigma) -> jax.Array:
    """The rfft-domain eigenvalues of (I - sigma L)^-1 for the periodic 1-D Laplacian L.

    L's eigenvalues are 2 cos(2 pi k / n) - 2, so (I - sigma L) has 1 + 2 sigma (1 - cos(.)):
    real and >= 1 for sigma >= 0, one division per frequency.
    """
    k = np.arange(n // 2 + 1)
    stiffness = 2.0 * (1.0 - np.cos(2.0 * np.pi * k / n))
    value = _checks.static_value(sigma)
    if value is not None:
        return jnp.asarray(1.0 / (1.0 + value * stiffness), jnp.float32)
    return 1.0 / (1.0 + jnp.asarray(sigma, jnp.float32) * jnp.asarray(stiffness, jnp.float32))


def _solve_screened_poisson(vector: jax.Array, sigma) -> jax.Array:
    """Solves the screened Poisson equation (I - sigma L) u = vector for a periodic 1-D
    vector, by FFT. (Not LAdam's ``v + c2 lap(v)``, which applies the Laplacian once.)"""
    n = vector.shape[0]
    spectrum = jnp.fft.rfft(vector.astype(jnp.float32)) * _inverse_spectrum(n, sigma)
    return jnp.fft.irfft(spectrum, n).astype(vector.dtype)


def laplacian_smoothing(
    sigma: jax.typing.ArrayLike = 1.0, layerwise: bool = True, min_numel: int = 4
) -> optax.GradientTransformationExtraArgs:
    """Laplacian smoothing of the updates: solves ``(I - sigma L) u = g`` by FFT.

    .. math::

      u = \\mathcal{F}^{-1}\\!\\left[\\frac{\\mathcal{F}(g)}{1 - \\sigma\\,\\mathcal{F}(v)}\\right],
      \\quad v = (-2, 1, 0, \\dots, 0, 1)

    on each leaf flattened to a periodic vector (``layerwise=True``; leaves with at most
    ``min_numel`` elements pass through), or on all leaves concatenated in tree order
    (``layerwise=False``). Computed in float32 with real FFTs; updates keep their dtype. With
    ``optax.sgd`` after it, this is Laplacian smoothing gradient descent (LSGD).

    Args:
      sigma: smoothing strength, >= 0 (0 is the identity).
      layerwise: smooth each leaf separately (True) or everything as one vector. Static.
      min_numel: with ``layerwise``, leaves of at most this many elements are left alone.
        Static when a Python int; traced (``optax.inject_hyperparams``), every leaf is
        transformed and the small ones selected back.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with an empty state.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> import ladam_optax
      >>> lsgd = optax.chain(ladam_optax.laplacian_smoothing(sigma=1.0), optax.sgd(0.1))
      >>> spike = {"w": jnp.zeros(8).at[0].set(1.0)}
      >>> updates, _ = lsgd.update(spike, lsgd.init(spike))
      >>> bool(updates["w"][0] > -0.1) and bool(updates["w"][1] < 0.0)  # spread to neighbours
      True

    References:
      S. Osher et al., Laplacian smoothing gradient descent, Research in the Mathematical
      Sciences 9 (2022); torchzero 0.4.4, ``LaplacianSmoothing``.
    """
    _checks.non_negative("sigma", sigma)
    if not isinstance(layerwise, bool):
        raise TypeError(f"layerwise must be a bool, got {layerwise!r}")
    # optax.inject_hyperparams passes min_numel as a traced integer: then the choice is a where.
    static_min = None if isinstance(min_numel, jax.Array) else min_numel
    if static_min is not None and (
        isinstance(static_min, bool)
        or not isinstance(static_min, numbers.Integral)
        or static_min < 0
    ):
        raise ValueError(f"min_numel must be an integer >= 0, got {min_numel!r}")

    def solve_leaf(g):
        if static_min is not None and g.size <= static_min:
            return g
        smoothed = _solve_screened_poisson(g.reshape(-1), sigma).reshape(g.shape)
        return smoothed if static_min is not None else jnp.where(g.size > min_numel, smoothed, g)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        if layerwise:
            return jax.tree.map(solve_leaf, updates), state
        leaves, treedef = jax.tree.flatten(updates)
        if sum(g.size for g in leaves) == 0:  # nothing to smooth (an FFT of length 0 fails)
            return updates, state
        flat = jnp.concatenate([g.reshape(-1).astype(jnp.float32) for g in leaves])
        smoothed = _solve_screened_poisson(flat, sigma)
        offsets = np.cumsum([0] + [g.size for g in leaves])
        out = [
            smoothed[a:b].reshape(g.shape).astype(g.dtype)
            for g, a, b in zip(leaves, offsets[:-1], offsets[1:], strict=True)
        ]
        return jax.tree.unflatten(treedef, out), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
