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

import functools
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


# Corner and edge weights of each stencil, before its overall scale.
_WEIGHTS = {"9point": (1.0, 4.0, 6.0), "5point": (0.0, 1.0, 1.0)}


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


def _shifted(field: jax.Array, offsets: tuple[int, ...]) -> jax.Array:
    """``field[i + offsets]`` with zeros where that falls outside, as ``pad(slice(field))``.

    One small pad per tap, rather than taps sliced from one padded copy: XLA fuses these into
    the consumer's loop, where it would materialise a shared padded copy as a temporary.
    """
    start = tuple(max(o, 0) for o in offsets)
    stop = tuple(n + min(o, 0) for n, o in zip(field.shape, offsets, strict=True))
    config = [(max(-o, 0), max(o, 0), 0) for o in offsets]
    return jax.lax.pad(jax.lax.slice(field, start, stop), jnp.zeros((), field.dtype), config)


def _sum_zero_padded(field: jax.Array, stencil: str) -> jax.Array:
    """The 2-D stencil's weighted sum with zeros outside ``field`` (before the overall scale)."""
    corner, edge, _ = _WEIGHTS[stencil]
    edges = (_shifted(field, (-1, 0)) + _shifted(field, (1, 0))) + (
        _shifted(field, (0, -1)) + _shifted(field, (0, 1))
    )
    total = edge * edges - 4.0 * (corner + edge) * field
    if corner:
        corners = (_shifted(field, (-1, -1)) + _shifted(field, (-1, 1))) + (
            _shifted(field, (1, -1)) + _shifted(field, (1, 1))
        )
        total = corner * corners + total
    return total


def _ring_corrections(field: jax.Array, stencil: str):
    """What wrap-around adds to the zero-padded stencil on the outer ring (scaled).

    Returns ``(top, bottom, left, right)``: vectors for rows 0 and h-1 (length w) and for
    columns 0 and w-1 (length h). Rows 0 and h-1 gain the row across the wrap, weighted along
    it *without* wrapping; columns 0 and w-1 gain the column across the wrap, weighted along
    it *with* wrapping, which also supplies the diagonal corner taps, so each tap of the ring
    is counted once. O(h + w) work; the vectors are packed through one concatenate, which XLA
    materialises: fused into the consumer instead, they would be recomputed with strided
    column reads for every element of the field (measured: twice as slow).
    """
    corner, edge, scale = _WEIGHTS[stencil]
    rows, cols = field.shape
    above_below = jnp.concatenate([field[-1:], field[:1]])  # rows across the wrap
    left_right = jnp.concatenate([field[:, -1:], field[:, :1]], axis=1).T  # columns across it
    across_rows, across_cols = edge * above_below, edge * left_right
    if corner:
        across_rows += corner * (_shifted(above_below, (0, -1)) + _shifted(above_below, (0, 1)))
        across_cols += corner * (jnp.roll(left_right, 1, axis=1) + jnp.roll(left_right, -1, axis=1))
    packed = jnp.concatenate([across_rows.reshape(-1), across_cols.reshape(-1)])
    if scale != 1.0:
        packed = packed / scale
    return jnp.split(packed, [cols, 2 * cols, 2 * cols + rows])


def _laplacian_slices(field: jax.Array, stencil: str) -> jax.Array:
    """The stencil as a zero-padded stencil plus a wrap-around correction on the outer ring.

    The zero-padded stencil (one ``pad(slice)`` per tap) fuses into the consumer's loop; the
    correction is four edge vectors broadcast in and selected by ``iota`` comparisons. So XLA
    neither materialises a padded copy nor concatenates a full-size array: inside an optimizer
    update on CPU this is ~2.4x faster than the stencil on a wrap-padded copy and needs no
    temporary of the field's size (README, Performance).
    """
    zero = jnp.zeros((), field.dtype)
    if field.ndim == 1:
        n = field.shape[0]
        i = jax.lax.broadcasted_iota(jnp.int32, field.shape, 0)
        out = (_shifted(field, (-1,)) + _shifted(field, (1,))) - 2.0 * field
        return out + jnp.where(i == 0, field[-1], jnp.where(i == n - 1, field[0], zero))
    rows, cols = field.shape
    top, bottom, left, right = _ring_corrections(field, stencil)
    i = jax.lax.broadcasted_iota(jnp.int32, field.shape, 0)
    j = jax.lax.broadcasted_iota(jnp.int32, field.shape, 1)
    ring_rows = jnp.where(i == 0, top[None, :], jnp.where(i == rows - 1, bottom[None, :], zero))
    ring_cols = jnp.where(j == 0, left[:, None], jnp.where(j == cols - 1, right[:, None], zero))
    scale = _WEIGHTS[stencil][2]
    interior = _sum_zero_padded(field, stencil)
    interior = interior / scale if scale != 1.0 else interior
    return interior + (ring_rows + ring_cols)


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


@functools.partial(jax.jit, static_argnames=("stencil", "impl"))
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
      impl: ``"slices"`` (static slices of a zero-padded ``x``, the wrap-around ring added as
        a correction),
        ``"conv"`` (``lax.conv_general_dilated`` on a wrap-padded copy, the reference's form),
        ``"padded"`` (static slices of a wrap-padded copy) or ``"auto"`` (the measured fastest,
        ``"slices"``). All give the same numbers to float rounding.

    Returns:
      An array of the shape and dtype of ``x``. The function is jitted (``stencil`` and
      ``impl`` static); inside a jitted update it is inlined.

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
