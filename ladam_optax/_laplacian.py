"""The periodic discrete Laplacian that the LAdam family applies to its moments.

Pure array functions, no optax. Every leaf is treated as the PyTorch ``ladam`` package treats a
weight tensor:

- a 1-D leaf of ``n >= 4`` elements is a periodic line, stencil ``[1, -2, 1]``;
- a leaf with ``ndim >= 2`` is viewed as the 2-D field ``(shape[0], prod(shape[1:]))`` with
  periodic (wrap-around) edges, stencil 9-point ``[[1, 4, 1], [4, -20, 4], [1, 4, 1]] / 6`` or
  5-point ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``; either side below 3 gives zero;
- anything else (scalars, short vectors, thin matrices) has a zero Laplacian.

A :class:`Fold` replaces that rule for one leaf: it names which axes form the field's rows and
which its columns (a Flax conv kernel ``(kh, kw, in, out)`` gets the field PyTorch's
``(out, in, kh, kw)`` weight has with ``Fold(rows=(3,), cols=(2, 0, 1))``).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ladam_optax import _checks

STENCILS = ("5point", "9point")
IMPLEMENTATIONS = ("auto", "slices", "shifts", "padded", "conv")

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
    return _checks.choice("laplacian_impl", impl, IMPLEMENTATIONS)


class Fold(NamedTuple):
    """Which axes of a leaf form the rows and which the columns of the field it is smoothed as.

    The field is the leaf transposed to ``rows + cols`` and reshaped to
    ``(prod(rows), prod(cols))``, each group flattened in the order given (row-major, as
    ``reshape`` does). ``cols=()`` makes the leaf a periodic line of its ``rows`` axes. Together
    the two groups must be a permutation of the leaf's axes (negative axes count from the end).
    The zero rules apply to the folded field: a side below 3, or a line below 4 elements, gives
    a zero Laplacian.

    The PyTorch ``ladam`` package's rule, used for every leaf without a fold, is
    ``Fold(rows=(0,), cols=(1, ..., ndim - 1))`` (a 1-D leaf: ``Fold(rows=(0,), cols=())``).

    Attributes:
      rows: the axes flattened into the field's rows.
      cols: the axes flattened into the field's columns; ``()`` for a periodic line.

    Examples:
      >>> from ladam_optax import Fold
      >>> Fold(rows=(3,), cols=(2, 0, 1))  # a Flax conv kernel as PyTorch's (out, in, kh, kw)
      Fold(rows=(3,), cols=(2, 0, 1))
    """

    rows: tuple[int, ...]
    cols: tuple[int, ...]


def default_fold(ndim: int) -> Fold:
    """The reference's fold of a leaf with ``ndim`` axes: ``(shape[0], prod(shape[1:]))``."""
    if ndim == 0:
        return Fold((), ())
    return Fold((0,), tuple(range(1, ndim)))


def check_fold(fold: Fold | None, ndim: int, where: str = "") -> Fold:
    """``fold`` normalised for a leaf with ``ndim`` axes (non-negative axes, tuples of ints).

    ``None`` gives :func:`default_fold`. Raises ``TypeError`` for what is not a :class:`Fold`
    and ``ValueError`` for one that is not a permutation of the leaf's axes; ``where`` (e.g. a
    leaf's path) is named in the message.
    """
    if fold is None:
        return default_fold(ndim)
    at = f" for the leaf at {where}" if where else ""
    if not isinstance(fold, Fold):
        raise TypeError(f"a fold must be a ladam_optax.Fold or None{at}, got {fold!r}")
    groups = []
    for name, group in (("rows", fold.rows), ("cols", fold.cols)):
        if isinstance(group, numbers.Integral):
            group = (group,)
        if not isinstance(group, tuple | list) or not all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in group
        ):
            raise TypeError(f"Fold.{name} must be a tuple of ints{at}, got {group!r}")
        axes = tuple(int(a) for a in group)
        if any(not -ndim <= a < ndim for a in axes):
            raise ValueError(f"{fold} names an axis out of range for a {ndim}-D leaf{at}")
        groups.append(tuple(a % ndim for a in axes))
    rows, cols = groups
    if sorted(rows + cols) != list(range(ndim)):
        raise ValueError(
            f"{fold} is not a permutation of the axes of a {ndim}-D leaf{at}: rows and cols "
            f"together must name each of the axes 0..{ndim - 1} once"
        )
    return Fold(rows, cols)


def _field_shape(shape: tuple[int, ...], fold: Fold) -> tuple[int, ...]:
    """The shape of the field before the zero rules: 1-D for ``cols=()``, else 2-D."""
    rows = math.prod(shape[a] for a in fold.rows)
    if not fold.cols:
        return (rows,)
    return (rows, math.prod(shape[a] for a in fold.cols))


def folded_shape(shape: tuple[int, ...], fold: Fold | None = None) -> tuple[int, ...] | None:
    """The 1-D or 2-D field a leaf of ``shape`` is smoothed as, or ``None`` if its Laplacian is 0.

    Decided from the static shape and ``fold`` (a checked :class:`Fold`, or ``None`` for the
    reference's rule): a line of ``n >= 4`` elements, or a 2-D field whose sides are both at
    least 3.
    """
    if fold is None:
        if not shape:
            return None
        fold = default_fold(len(shape))
    field = _field_shape(shape, fold)
    if len(field) == 1:
        return field if field[0] >= 4 else None
    return field if min(field) >= 3 else None


def resolve_implementation(impl: str, x: jax.Array) -> str:
    """The implementation ``impl`` stands for on the leaf ``x`` (at trace time).

    ``"auto"`` picks, per leaf, the fastest form known to partition with halo exchanges only
    (measured on 8 simulated devices, docs' multi-device page):

    - one device: ``"slices"``, the fastest by a wide margin on CPU; a one-channel convolution
      also wastes the matrix units of GPUs and TPUs, so it is the default on every backend
      until a measurement there says otherwise;
    - several devices, Explicit mesh axes: ``"slices"`` for a leaf whose sharding shards no
      axis (replicated, as in plain data parallelism), ``"shifts"`` otherwise;
    - several devices, Auto axes (the sharding is not known while tracing): ``"slices"`` for
      1-D leaves, which it partitions with the same collective-permutes as ``"shifts"``;
      ``"shifts"`` for every other leaf, where the ``"slices"`` form made XLA all-gather
      sharded leaves. Data-parallel training with replicated parameters on Auto axes should
      pass ``laplacian_impl="slices"`` (half the cost of ``"shifts"``).
    """
    if impl != "auto":
        return impl
    if jax.device_count() == 1:
        return "slices"
    if _explicitly_sharded():
        spec = jax.typeof(x).sharding.spec
        return "slices" if all(axis is None for axis in spec) else "shifts"
    return "slices" if x.ndim == 1 else "shifts"


def _explicitly_sharded() -> bool:
    """Whether the current mesh (``jax.set_mesh``) has Explicit axes."""
    mesh = jax.sharding.get_abstract_mesh()
    return not mesh.empty and any(t == jax.sharding.AxisType.Explicit for t in mesh.axis_types)


def _wrap_pad(field: jax.Array) -> jax.Array:
    return jnp.pad(field, 1, mode="wrap")


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


def _outer_and_next(field: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """The first and last rows (``axis=0``) or columns (``axis=1``) of ``field``, and the ones
    just inside them, each as a ``(2, n)`` array: two strided slices."""
    size = field.shape[axis]

    def rows(start: int, stop: int, stride: int) -> jax.Array:
        limits = [(0, n, 1) for n in field.shape]
        limits[axis] = (start, stop, stride)
        picked = lax.slice(field, *zip(*limits, strict=True))
        return picked if axis == 0 else lax.transpose(picked, (1, 0))

    outer, inner = rows(0, size, size - 1), rows(1, size - 1, max(size - 3, 1))
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
    rows = _edge_values(*_outer_and_next(field, 0), stencil)
    cols = _edge_values(*_outer_and_next(field, 1), stencil)
    return lax.concatenate([lax.reshape(rows, (rows.size,)), lax.reshape(cols, (cols.size,))], 0)


def _laplacian_slices(field: jax.Array, stencil: str) -> jax.Array:
    """The stencil's interior from plain slices of ``field``, its outer ring computed apart.

    Every tap of the interior is a static ``slice`` of ``field`` itself, and one ``pad`` of
    the interior's result (zeros on the ring) keeps the reads inside ``field``: the loop that
    consumes it then masks all nine reads with the pad's one column bound, where taps that are
    each zero-padded need a mask apiece, which made the loop compute-bound
    (``benchmarks/README.md``). The ring's values (:func:`_ring_values`, O(h + w)) are computed
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
    out = zero_ring(interior_taps(field, stencil))
    for axis, first, last in ((1, left, right), (0, top, bottom)):  # rows last: the corners
        index = lax.broadcasted_iota(np.int32, field.shape, axis)
        for at, values in ((field.shape[axis] - 1, last), (0, first)):
            spread = lax.broadcast_in_dim(values, field.shape, (1 - axis,))
            out = lax.select(lax.eq(index, np.int32(at)), spread, out)
    return _unscaled(out, stencil)


def zero_ring(interior: jax.Array) -> jax.Array:
    """``interior`` of a 2-D field inside a ring of zeros: ``(h - 2, w - 2)`` to ``(h, w)``."""
    return lax.pad(interior, np.zeros((), interior.dtype), [(1, 1, 0), (1, 1, 0)])


def interior_taps(field: jax.Array, stencil: str) -> jax.Array:
    """The 2-D stencil (before its overall scale) on the points of ``field`` that have all
    their neighbours, ``(h - 2, w - 2)``: the interior of the ``"slices"`` form, each tap a
    static ``slice`` of ``field``."""
    corner, edge, _ = _WEIGHTS[stencil]
    rows, cols = field.shape

    def tap(a: int, b: int) -> jax.Array:
        return lax.slice(field, (1 + a, 1 + b), (rows - 1 + a, cols - 1 + b))

    total = lax.add(lax.add(tap(-1, 0), tap(1, 0)), lax.add(tap(0, -1), tap(0, 1)))
    if corner:
        corners = lax.add(lax.add(tap(-1, -1), tap(-1, 1)), lax.add(tap(1, -1), tap(1, 1)))
        total = lax.add(_scaled(corners, corner), _scaled(total, edge))
    return lax.sub(total, _scaled(tap(0, 0), 4.0 * (corner + edge)))


def _unscaled(total: jax.Array, stencil: str) -> jax.Array:
    """``total`` divided by the stencil's overall scale."""
    scale = _WEIGHTS[stencil][2]
    return lax.div(total, np.array(scale, total.dtype)) if scale != 1.0 else total


def _group_offsets(step: int, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Zero-padded offsets over ``shape`` whose sum is a periodic shift by ``step`` (0 or +-1)
    of those axes *flattened*: a step along the last axis, carrying into the earlier ones."""
    if step == 0:
        return [(0,) * len(shape)]
    terms = []
    for axis in range(len(shape) - 1, -1, -1):  # borrow from axis `axis`, wrap the later ones
        later = tuple(-step * (n - 1) for n in shape[axis + 1 :])
        terms.append((0,) * axis + (step,) + later)
    terms.append(tuple(-step * (n - 1) for n in shape))  # the very first / last element
    return [t for t in terms if all(abs(o) < n for o, n in zip(t, shape, strict=True))]


def _shifted_per_axis(x: jax.Array, offsets: tuple[int, ...]) -> jax.Array:
    """:func:`_shifted` as one single-axis shift after another (equal: the bounds of different
    axes are independent). Under sharding each step then moves data along one mesh axis only,
    which XLA does with collective-permutes, where a diagonal move costs an all-gather."""
    for axis, offset in enumerate(offsets):
        if offset:
            x = _shifted(x, tuple(offset if a == axis else 0 for a in range(x.ndim)))
    return x


def _periodic_tap(x: jax.Array, row_axes: int, row_step: int, col_step: int) -> jax.Array:
    """``x`` shifted periodically by one tap of the field whose rows are the first
    ``row_axes`` axes of ``x`` flattened, and whose columns are the others flattened."""
    offsets = [
        (*r, *c)
        for r in _group_offsets(row_step, x.shape[:row_axes])
        for c in _group_offsets(col_step, x.shape[row_axes:])
    ]
    terms = [_shifted_per_axis(x, o) for o in offsets]
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out


def _laplacian_shifts(x: jax.Array, stencil: str, row_axes: int) -> jax.Array:
    """The stencil on the unfolded array, from zero-padded shifts that sum to periodic ones.

    The field's rows are the first ``row_axes`` axes of ``x`` flattened, its columns the others
    (all axes rows: a periodic line). Nothing is reshaped, concatenated or gathered: under SPMD
    sharding every term is a slice and a pad of the array itself, which XLA partitions with
    halo exchanges (collective-permutes) and no all-gather, whichever axes are sharded. Costs
    ~2x the ``"slices"`` form on one CPU device.
    """

    def tap(row_step, col_step):
        return _periodic_tap(x, row_axes, row_step, col_step)

    if row_axes == x.ndim:
        return (tap(-1, 0) + tap(1, 0)) - 2.0 * x
    corner, edge, scale = _WEIGHTS[stencil]
    edges = (tap(-1, 0) + tap(1, 0)) + (tap(0, -1) + tap(0, 1))
    total = edge * edges - 4.0 * (corner + edge) * x
    if corner:
        corners = (tap(-1, -1) + tap(-1, 1)) + (tap(1, -1) + tap(1, 1))
        total = corner * corners + total
    return total / scale if scale != 1.0 else total


def _laplacian_padded(field: jax.Array, stencil: str) -> jax.Array:
    """The stencil from a wrap-padded copy: the obvious form, kept for benchmarks and tests."""
    padded = _wrap_pad(field)
    if field.ndim == 1:
        return (padded[:-2] + padded[2:]) - 2.0 * padded[1:-1]
    return _unscaled(interior_taps(padded, stencil), stencil)


def _laplacian_conv(field: jax.Array, stencil: str) -> jax.Array:
    kernel = _KERNEL_1D if field.ndim == 1 else _KERNELS_2D[stencil]
    out = lax.conv_general_dilated(
        _wrap_pad(field)[None, None],
        jnp.asarray(kernel, field.dtype)[None, None],
        window_strides=(1,) * field.ndim,
        padding="VALID",
    )
    return out[0, 0]


_IMPLEMENTATIONS = {
    "slices": _laplacian_slices,
    "shifts": _laplacian_shifts,
    "conv": _laplacian_conv,
    "padded": _laplacian_padded,
}


def laplacian(
    x: jax.typing.ArrayLike,
    stencil: str = "9point",
    *,
    impl: str = "auto",
    fold: Fold | None = None,
) -> jax.Array:
    """The periodic discrete Laplacian of one array, as the PyTorch ``ladam`` package defines it.

    .. math::

      (\\Delta x)_{ij} = \\sum_{a, b \\in \\{-1, 0, 1\\}}
        k_{ab}\\, x_{(i+a) \\bmod h,\\,(j+b) \\bmod w}

    with ``k`` the 9-point ``[[1, 4, 1], [4, -20, 4], [1, 4, 1]] / 6`` or 5-point stencil on the
    ``(shape[0], prod(shape[1:]))`` view of ``x`` (or the field ``fold`` names);
    ``[1, -2, 1]`` with wrap-around for 1-D ``x`` (or ``fold.cols == ()``) of at least 4
    elements. Arrays too small for a stencil (a side below 3, a line below 4 elements,
    scalars) give zeros.

    Args:
      x: an array of any shape and floating dtype (real or complex).
      stencil: ``"9point"`` (isotropic, the default) or ``"5point"``. Static.
      impl: ``"slices"`` (the interior from static slices of ``x``, the wrap-around outer
        ring computed apart and selected in), ``"shifts"`` (zero-padded shifts of the
        unfolded ``x`` that sum to periodic ones: the form XLA's SPMD partitioner turns into
        halo exchanges),
        ``"conv"`` (``lax.conv_general_dilated`` on a wrap-padded copy, the reference's form),
        ``"padded"`` (static slices of a wrap-padded copy) or ``"auto"`` (``"slices"`` on one
        device; on several, per leaf, the fastest form that partitions with halo exchanges
        only: see :func:`resolve_implementation`). All give the
        same numbers to float rounding. Static.
      fold: a :class:`Fold` naming the axes of the field's rows and columns, or ``None`` for
        the reference's ``(shape[0], prod(shape[1:]))``. Static.

    Returns:
      An array of the shape and dtype of ``x``, computed by a jitted function (``stencil``,
      ``impl`` and ``fold`` static).

    Raises:
      TypeError: for an integer or boolean ``x`` (the stencil's weights are fractions), or a
        ``fold`` that is not a :class:`Fold`.
      ValueError: for an unknown ``stencil`` or ``impl``, or a ``fold`` that is not a
        permutation of the axes of ``x``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ladam_optax import Fold, laplacian
      >>> laplacian(jnp.array([0.0, 1.0, 0.0, 0.0]))
      Array([ 1., -2.,  1.,  0.], dtype=float32)
      >>> laplacian(jnp.eye(4)[:, :2], fold=Fold(rows=(0, 1), cols=()))  # as a line of 8
      Array([[-2.,  1.],
             [ 1., -2.],
             [ 1.,  0.],
             [ 0.,  1.]], dtype=float32)

    References:
      G. Partin, `ladam` (PyTorch), https://pypi.org/project/ladam/
    """
    check_stencil(stencil)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(
            f"laplacian needs a floating or complex array, got {x.dtype}: convert it first, "
            "e.g. x.astype(jnp.float32)"
        )
    fold = None if fold is None else check_fold(fold, x.ndim)
    return periodic_laplacian(x, stencil, check_implementation(impl), fold)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def periodic_laplacian(
    x: jax.Array, stencil: str, impl: str, fold: Fold | None = None
) -> jax.Array:
    """:func:`laplacian` without the checks, for use inside a traced update.

    ``stencil`` and ``impl`` must be valid (``"auto"`` is resolved here, per leaf: see
    :func:`resolve_implementation`) and ``fold`` checked (:func:`check_fold`) or ``None``.
    Jitted, so that an update traces and lowers the stencil once per leaf shape, dtype and
    fold, however many leaves share them (the blocks of a deep model do).
    """
    field_shape = folded_shape(x.shape, fold)
    if field_shape is None:
        return jnp.zeros_like(x)
    impl = resolve_implementation(impl, x)
    fold = fold or default_fold(x.ndim)
    order = fold.rows + fold.cols
    moved = order != tuple(range(x.ndim))

    def compute(y: jax.Array) -> jax.Array:
        if moved:  # the field's axes in order: a transpose, local to each shard
            y = lax.transpose(y, order)
        if impl == "shifts":  # works on the unfolded array: no resharding reshape
            out = _laplacian_shifts(y, stencil, len(fold.rows))
        else:  # lax.reshape to the same shape is the identity, no op
            out = _IMPLEMENTATIONS[impl](lax.reshape(y, field_shape), stencil)
            out = lax.reshape(out, y.shape)
        return lax.transpose(out, tuple(int(a) for a in np.argsort(order))) if moved else out

    if _explicitly_sharded():
        # Under Explicit axes, slices and pads of sharded dims have no sharding rule of their
        # own: let the partitioner choose inside, and come back with the input's sharding.
        sharded = jax.sharding.auto_axes(compute, out_sharding=jax.typeof(x).sharding)
        out = cast(jax.Array, sharded(x))
    else:
        out = compute(x)
    return out if out.dtype == x.dtype else out.astype(x.dtype)
