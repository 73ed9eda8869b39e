"""The periodic discrete Laplacian that the LAdam family applies to its moments.

Pure array functions, no optax. Every leaf is treated as the PyTorch ``ladam`` package treats a
weight tensor:

- a 1-D leaf of ``n >= 4`` elements is a periodic line, stencil ``[1, -2, 1]``;
- a leaf with ``ndim >= 2`` is viewed as the 2-D field ``(shape[0], prod(shape[1:]))`` with
  periodic (wrap-around) edges, stencil 9-point ``[[1, 4, 1], [4, -20, 4], [1, 4, 1]] / 6`` or
  5-point ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``; either side below 3 gives zero;
- anything else (scalars, short vectors, thin matrices) has a zero Laplacian.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

STENCILS = ("5point", "9point")
IMPLEMENTATIONS = ("auto", "conv", "slices", "padded")

_KERNELS_2D = {
    "9point": np.array([[1.0, 4.0, 1.0], [4.0, -20.0, 4.0], [1.0, 4.0, 1.0]]) / 6.0,
    "5point": np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
}
_KERNEL_1D = np.array([1.0, -2.0, 1.0])


def check_stencil(stencil: str) -> str:
    """Returns ``stencil`` if it names a known stencil, else raises ``ValueError``."""
    if stencil not in STENCILS:
        raise ValueError(f"stencil must be '5point' or '9point', got {stencil!r}")
    return stencil


def check_implementation(impl: str) -> str:
    """Returns ``impl`` if it names a known implementation, else raises ``ValueError``."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(
            f"laplacian_impl must be 'auto', 'slices', 'conv' or 'padded', got {impl!r}"
        )
    return impl


def folded_shape(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The 1-D or 2-D field a leaf of ``shape`` is smoothed as, or ``None`` if its Laplacian is 0.

    Decided from the static shape alone: ``(n,)`` for a 1-D leaf with ``n >= 4``,
    ``(shape[0], prod(shape[1:]))`` for ``ndim >= 2`` when both sides are at least 3.
    """
    if len(shape) == 1:
        return (shape[0],) if shape[0] >= 4 else None
    if len(shape) >= 2:
        rows, cols = shape[0], math.prod(shape[1:])
        return (rows, cols) if rows >= 3 and cols >= 3 else None
    return None


def resolve_implementation(impl: str) -> str:
    """Maps ``"auto"`` to the implementation measured fastest (``benchmarks/optimizer_step.py``).

    ``"slices"`` won on CPU by a wide margin (README, Performance); a one-channel convolution
    also wastes the matrix units of GPUs and TPUs, so it is the default on every backend until
    a measurement there says otherwise.
    """
    check_implementation(impl)
    return "slices" if impl == "auto" else impl


def _wrap_pad(field: jax.Array) -> jax.Array:
    return jnp.pad(field, 1, mode="wrap")


def _stencil_valid(padded: jax.Array, stencil: str) -> jax.Array:
    """The stencil on every point of ``padded`` that has all its neighbours ("valid" region)."""
    if padded.ndim == 1:
        return (padded[:-2] + padded[2:]) - 2.0 * padded[1:-1]
    north, south = padded[:-2, 1:-1], padded[2:, 1:-1]
    west, east = padded[1:-1, :-2], padded[1:-1, 2:]
    edges = (north + south) + (west + east)
    if stencil == "5point":
        return edges - 4.0 * padded[1:-1, 1:-1]
    corners = (padded[:-2, :-2] + padded[:-2, 2:]) + (padded[2:, :-2] + padded[2:, 2:])
    return (corners + 4.0 * edges - 20.0 * padded[1:-1, 1:-1]) / 6.0


def _wrap(block: jax.Array, axis: int) -> jax.Array:
    """``block`` with its last slice prepended and its first appended along ``axis``."""
    first = jax.lax.slice_in_dim(block, 0, 1, axis=axis)
    last = jax.lax.slice_in_dim(block, block.shape[axis] - 1, block.shape[axis], axis=axis)
    return jnp.concatenate([last, block, first], axis=axis)


def _laplacian_slices(field: jax.Array, stencil: str) -> jax.Array:
    """The stencil from static slices of ``field`` itself, with no padded copy of it.

    The interior (all but the outermost ring) reads plain shifted slices, which XLA fuses into
    straight vectorised loops; only the one-element-wide ring is built with wrap-around, from
    three-row (three-column) slabs, and written over the interior with ``dynamic_update_slice``.
    A padded copy (``jnp.pad(mode="wrap")``) or a convolution is several times slower on CPU
    (``benchmarks/optimizer_step.py``).
    """
    out = jnp.zeros_like(field)
    if field.ndim == 1:
        ends = _stencil_valid(jnp.concatenate([field[-2:], field[:2]]), stencil)  # [n-1, 0]
        out = jax.lax.dynamic_update_slice(out, _stencil_valid(field, stencil), (1,))
        out = jax.lax.dynamic_update_slice(out, ends[1:], (0,))
        return jax.lax.dynamic_update_slice(out, ends[:1], (field.shape[0] - 1,))
    rows, cols = field.shape
    top = _wrap(jnp.concatenate([field[-1:], field[:2]]), axis=1)
    bottom = _wrap(jnp.concatenate([field[-2:], field[:1]]), axis=1)
    left = _wrap(jnp.concatenate([field[:, -1:], field[:, :2]], axis=1), axis=0)
    right = _wrap(jnp.concatenate([field[:, -2:], field[:, :1]], axis=1), axis=0)
    out = jax.lax.dynamic_update_slice(out, _stencil_valid(field, stencil), (1, 1))
    out = jax.lax.dynamic_update_slice(out, _stencil_valid(left, stencil), (0, 0))
    out = jax.lax.dynamic_update_slice(out, _stencil_valid(right, stencil), (0, cols - 1))
    out = jax.lax.dynamic_update_slice(out, _stencil_valid(top, stencil), (0, 0))
    return jax.lax.dynamic_update_slice(out, _stencil_valid(bottom, stencil), (rows - 1, 0))


def _laplacian_padded(field: jax.Array, stencil: str) -> jax.Array:
    """The stencil from a wrap-padded copy: the obvious form, kept for benchmarks and tests."""
    return _stencil_valid(_wrap_pad(field), stencil)


def _laplacian_conv(field: jax.Array, stencil: str) -> jax.Array:
    kernel = _KERNEL_1D if field.ndim == 1 else _KERNELS_2D[stencil]
    out = jax.lax.conv_general_dilated(
        _wrap_pad(field)[None, None],
        jnp.asarray(kernel, field.dtype)[None, None],
        window_strides=(1,) * field.ndim,
        padding="VALID",
    )
    return out[0, 0]


_IMPLEMENTATIONS = {
    "slices": _laplacian_slices,
    "conv": _laplacian_conv,
    "padded": _laplacian_padded,
}


def laplacian(x: jax.Array, stencil: str = "9point", *, impl: str = "auto") -> jax.Array:
    """The periodic discrete Laplacian of one array, as the PyTorch ``ladam`` package defines it.

    .. math::

      (\\Delta x)_{ij} = \\sum_{a, b \\in \\{-1, 0, 1\\}}
        k_{ab}\\, x_{(i+a) \\bmod h,\\,(j+b) \\bmod w}

    with ``k`` the 9-point ``[[1, 4, 1], [4, -20, 4], [1, 4, 1]] / 6`` or 5-point stencil on the
    ``(shape[0], prod(shape[1:]))`` view of ``x``; ``[1, -2, 1]`` with wrap-around for 1-D ``x``
    of at least 4 elements. Arrays too small for a stencil (a side below 3, a vector below 4
    elements, scalars) give zeros.

    Args:
      x: an array of any shape and floating dtype.
      stencil: ``"9point"`` (isotropic, the default) or ``"5point"``.
      impl: ``"slices"`` (static shifted slices of ``x``, the wrap-around ring patched in),
        ``"conv"`` (``lax.conv_general_dilated`` on a wrap-padded copy, the reference's form),
        ``"padded"`` (static slices of a wrap-padded copy) or ``"auto"`` (the measured fastest,
        ``"slices"``). All give the same numbers to float rounding.

    Returns:
      An array of the shape and dtype of ``x``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ladam_optax import laplacian
      >>> laplacian(jnp.array([0.0, 1.0, 0.0, 0.0]))
      Array([ 1., -2.,  1.,  0.], dtype=float32)

    References:
      G. Partin, `ladam` (PyTorch), https://pypi.org/project/ladam/
    """
    check_stencil(stencil)
    impl = resolve_implementation(impl)
    x = jnp.asarray(x)
    field_shape = folded_shape(x.shape)
    if field_shape is None:
        return jnp.zeros_like(x)
    out = _IMPLEMENTATIONS[impl](x.reshape(field_shape), stencil)
    return out.reshape(x.shape).astype(x.dtype)
