"""The local periodic stencil forms: the Laplacian of a field that is whole on one device.

Pure array functions of ``lax`` ops (they trace several times faster than ``jnp``'s promoting
wrappers), no optax, no mesh: a 1-D field is a periodic line ``[1, -2, 1]``, a 2-D field gets the
9-point ``[[1, 4, 1], [4, -20, 4], [1, 4, 1]] / 6`` or 5-point stencil with wrap-around edges.
The sharded forms (``_partitioned``) build on :func:`taps` and :func:`divided_by_scale`; the
public :func:`ladam_optax.laplacian` (``_laplacian``) picks a form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_KERNELS_2D = {
    "9point": np.array([[1.0, 4.0, 1.0], [4.0, -20.0, 4.0], [1.0, 4.0, 1.0]]) / 6.0,
    "5point": np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
}
_KERNEL_1D = np.array([1.0, -2.0, 1.0])

# Corner and edge weights of each stencil, before its overall scale.
_WEIGHTS = {"9point": (1.0, 4.0, 6.0), "5point": (0.0, 1.0, 1.0)}


def _shifted(field: jax.Array, offsets: tuple[int, ...]) -> jax.Array:
    """``field[i + offsets]`` with zeros where that falls outside, as ``pad(slice(field))``.

    One small pad per tap, rather than taps sliced from one padded copy: XLA fuses these into
    the consumer's loop, where it would materialise a shared padded copy as a temporary.
    """
    start = tuple(max(o, 0) for o in offsets)
    stop = tuple(n + min(o, 0) for n, o in zip(field.shape, offsets, strict=True))
    config = [(max(-o, 0), max(o, 0), 0) for o in offsets]
    return lax.pad(lax.slice(field, start, stop), np.zeros((), field.dtype), config)


def _along(axis: int, ndim: int, offset: int) -> tuple[int, ...]:
    return tuple(offset if a == axis else 0 for a in range(ndim))


def _neighbours(x: jax.Array, axis: int) -> jax.Array:
    """``x[i - 1] + x[i + 1]`` along ``axis``, with zeros outside ``x``."""
    return lax.add(_shifted(x, _along(axis, x.ndim, -1)), _shifted(x, _along(axis, x.ndim, 1)))


def _scaled(x: jax.Array, weight: float) -> jax.Array:
    """``weight * x``; no op for a unit weight (fewer ops to trace, lower and compile)."""
    return x if weight == 1.0 else lax.mul(x, np.array(weight, x.dtype))


def _across(x: jax.Array, axis: int) -> jax.Array:
    """What the first and the last slab along ``axis`` see across the wrap: ``(x[-1], x[0])``
    stacked along ``axis`` (one strided slice, reversed)."""
    n = x.shape[axis]
    strides = tuple(n - 1 if a == axis else 1 for a in range(x.ndim))
    return lax.rev(lax.slice(x, (0,) * x.ndim, x.shape, strides), (axis,))


def _periodic_neighbours(x: jax.Array) -> jax.Array:
    """``x[:, j - 1] + x[:, j + 1]`` with wrap-around, for a ``(k, n)`` array: the zero-padded
    neighbours plus the two ends across the wrap, placed by one interior-padded ``pad``."""
    n = x.shape[1]
    ends = lax.pad(_across(x, 1), np.zeros((), x.dtype), [(0, 0, 0), (0, 0, n - 2)])
    return lax.add(_neighbours(x, 1), ends)


def _edge_lines(field: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """The first and last lines of ``field`` along ``axis`` (its rows for ``axis=0``, its
    columns for ``axis=1``), and the lines just inside them, each pair laid out as a ``(2, n)``
    array (columns transposed): two strided slices."""
    size = field.shape[axis]

    def lines(start: int, stop: int, stride: int) -> jax.Array:
        limits = [(0, n, 1) for n in field.shape]
        limits[axis] = (start, stop, stride)
        picked = lax.slice(field, *zip(*limits, strict=True))
        return picked if axis == 0 else lax.transpose(picked, (1, 0))

    outer, inner = lines(0, size, size - 1), lines(1, size - 1, max(size - 3, 1))
    if inner.shape[0] == 1:  # a side of 3: the middle row is next to both outer ones
        inner = lax.broadcast_in_dim(inner, outer.shape, (0, 1))
    return outer, inner


def _edge_values(outer: jax.Array, inner: jax.Array, stencil: str) -> jax.Array:
    """The periodic stencil (before its overall scale) along the first and last row of a
    field, from its outer rows ``(row 0, row h-1)`` and the rows inside them
    ``(row 1, row h-2)``: row 0 sees rows h-1 and 1 across, row h-1 sees rows h-2 and 0."""
    corner, edge, _ = _WEIGHTS[stencil]
    across = lax.add(lax.rev(outer, (0,)), inner)
    along = lax.add(_scaled(across, corner), _scaled(outer, edge)) if corner else outer
    total = lax.add(_scaled(across, edge), _periodic_neighbours(along))
    return lax.sub(total, _scaled(outer, 4.0 * (corner + edge)))


def _ring_values(field: jax.Array, stencil: str) -> jax.Array:
    """The periodic stencil (before its overall scale) on the outer ring of the 2-D ``field``,
    packed as ``[row 0 (w), row h-1 (w), column 0 (h), column w-1 (h)]``. O(h + w) work."""
    rows = _edge_values(*_edge_lines(field, 0), stencil)
    cols = _edge_values(*_edge_lines(field, 1), stencil)
    return lax.concatenate([lax.reshape(rows, (rows.size,)), lax.reshape(cols, (cols.size,))], 0)


def _laplacian_slices(field: jax.Array, stencil: str) -> jax.Array:
    """The stencil's interior from plain slices of ``field``, its outer ring computed apart.

    Every tap of the interior is a static ``slice`` of ``field`` itself, and one ``pad`` of
    the interior's result (zeros on the ring) keeps the reads inside ``field``: the loop that
    consumes it then masks all nine reads with the pad's one column bound, where taps that are
    each zero-padded need a mask apiece, which made the loop compute-bound
    (docs' performance notes). The ring's values (:func:`_ring_values`, O(h + w)) are computed
    once into one small vector, kept out of the loop by ``optimization_barrier``, and put in
    place by ``iota`` selects, rows over columns at the corners. Fused in instead, they would be
    recomputed, with strided reads, for every element. Written with ``lax`` ops, which keeps
    tracing the update cheap. Costs one small kernel and ``2 (h + w)`` elements of temporary
    memory per leaf. A 1-D ``field`` needs no ring: its wrap is two more zero-padded taps,
    ``x[n - 1]`` at 0 and ``x[0]`` at ``n - 1``.
    """
    if field.ndim == 1:
        n = field.shape[0]
        wrap = lax.add(_shifted(field, (n - 1,)), _shifted(field, (1 - n,)))
        return lax.add(_neighbours(field, 0), lax.sub(wrap, _scaled(field, 2.0)))
    rows, cols = field.shape
    ring = lax.optimization_barrier(_ring_values(field, stencil))
    ends = (cols, 2 * cols, 2 * cols + rows, 2 * (cols + rows))
    top, bottom, left, right = (
        lax.slice(ring, (start,), (end,)) for start, end in zip((0, *ends[:3]), ends, strict=True)
    )
    out = _zero_ring(taps(field, stencil, (0, 1)))
    for axis, first, last in ((1, left, right), (0, top, bottom)):  # rows last: the corners
        index = lax.broadcasted_iota(np.int32, field.shape, axis)
        for at, values in ((field.shape[axis] - 1, last), (0, first)):
            spread = lax.broadcast_in_dim(values, field.shape, (1 - axis,))
            out = lax.select(lax.eq(index, np.int32(at)), spread, out)
    return _divided_by_scale(out, stencil)


def _zero_ring(interior: jax.Array) -> jax.Array:
    """``interior`` of a 2-D field inside a ring of zeros: ``(h - 2, w - 2)`` to ``(h, w)``."""
    return lax.pad(interior, np.zeros((), interior.dtype), [(1, 1, 0), (1, 1, 0)])


def taps(block: jax.Array, stencil: str, axes: tuple[int, ...]) -> jax.Array:
    """The stencil's weighted taps (before its overall scale) at every point of ``block`` that
    has all its neighbours along ``axes`` (one axis: the line ``[1, -2, 1]``; two: the field's
    rows and columns), each tap a static ``slice``: ``block`` shrinks by 2 along ``axes``."""

    def tap(*offsets: int) -> jax.Array:
        start, stop = [0] * block.ndim, list(block.shape)
        for axis, offset in zip(axes, offsets, strict=True):
            start[axis], stop[axis] = 1 + offset, block.shape[axis] - 1 + offset
        return lax.slice(block, tuple(start), tuple(stop))

    if len(axes) == 1:
        return lax.sub(lax.add(tap(-1), tap(1)), _scaled(tap(0), 2.0))
    corner, edge, _ = _WEIGHTS[stencil]
    total = lax.add(lax.add(tap(-1, 0), tap(1, 0)), lax.add(tap(0, -1), tap(0, 1)))
    if corner:
        corners = lax.add(lax.add(tap(-1, -1), tap(-1, 1)), lax.add(tap(1, -1), tap(1, 1)))
        total = lax.add(_scaled(corners, corner), _scaled(total, edge))
    return lax.sub(total, _scaled(tap(0, 0), 4.0 * (corner + edge)))


def divided_by_scale(total: jax.Array, stencil: str, axes: tuple[int, ...]) -> jax.Array:
    """``total`` from :func:`taps` over ``axes`` divided by the stencil's overall scale
    (a line's stencil has none)."""
    return total if len(axes) == 1 else _divided_by_scale(total, stencil)


def _divided_by_scale(total: jax.Array, stencil: str) -> jax.Array:
    """``total`` divided by the stencil's overall scale (6 for the 9-point stencil)."""
    scale = _WEIGHTS[stencil][2]
    return lax.div(total, np.array(scale, total.dtype)) if scale != 1.0 else total


def _laplacian_conv(field: jax.Array, stencil: str) -> jax.Array:
    """The reference's form: ``lax.conv_general_dilated`` on a wrap-padded copy."""
    weights = _KERNEL_1D if field.ndim == 1 else _KERNELS_2D[stencil]
    # Built from scalar literals: an array constant cannot be closed over by the op that
    # partitions the stencil (custom_partitioning traces it without constants).
    entries = [lax.full((1,), float(w), field.dtype) for w in weights.ravel()]
    kernel = lax.reshape(lax.concatenate(entries, 0), (1, 1, *weights.shape))
    out = lax.conv_general_dilated(
        jnp.pad(field, 1, mode="wrap")[None, None],
        kernel,
        window_strides=(1,) * field.ndim,
        padding="VALID",
    )
    return out[0, 0]


# The local forms: the stencil on a field that is whole on one device. "auto" uses "slices".
LOCAL_FORMS = {"slices": _laplacian_slices, "conv": _laplacian_conv}
