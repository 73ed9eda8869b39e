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
``(out, in, kh, kw)`` weight has with ``Fold(rows=(3,), cols=(2, 0, 1))``), and its ``batch``
axes make a stacked leaf ``(layers, in, out)`` a stack of separate fields.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ladam_optax import _checks, _partitioned

STENCILS = ("5point", "9point")
IMPLEMENTATIONS = ("auto", "conv")


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
    ``reshape`` does). ``cols=()`` makes the leaf a periodic line of its ``rows`` axes.
    ``batch`` names axes whose every index is a field of its own: a stacked leaf
    ``(layers, in, out)`` (``nn.scan``, ``nnx.vmap``, a MaxText decoder) with ``batch=(0,)`` is
    smoothed as ``layers`` separate ``(in, out)`` fields, as the same layers unrolled into
    separate leaves are (:func:`ladam_optax.stacked` builds such folds from the path of the
    stack). Together the three groups must name each of the leaf's axes once (negative axes count
    from the end). The zero rules apply to the folded field of one slice: a side below 3, or a
    line below 4 elements, gives a zero Laplacian; ``min_spatial_size`` counts the elements of
    one slice.

    The PyTorch ``ladam`` package's rule, used for every leaf without a fold, is
    ``Fold(rows=(0,), cols=(1, ..., ndim - 1))`` (a 1-D leaf: ``Fold(rows=(0,), cols=())``).

    Attributes:
      rows: the axes flattened into the field's rows.
      cols: the axes flattened into the field's columns; ``()`` for a periodic line.
      batch: the axes along which the leaf is a stack of independent fields; ``()`` (the
        default) for one field.

    Examples:
      >>> from ladam_optax import Fold
      >>> Fold(rows=(3,), cols=(2, 0, 1))  # a Flax conv kernel as PyTorch's (out, in, kh, kw)
      Fold(rows=(3,), cols=(2, 0, 1))
      >>> Fold(rows=(1,), cols=(2,), batch=(0,))  # 12 stacked Dense kernels (12, in, out)
      Fold(rows=(1,), cols=(2,), batch=(0,))
    """

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    batch: tuple[int, ...] = ()

    def __repr__(self) -> str:
        batch = f", batch={self.batch!r}" if self.batch else ""
        return f"Fold(rows={self.rows!r}, cols={self.cols!r}{batch})"


def default_fold(ndim: int) -> Fold:
    """The reference's fold of a leaf with ``ndim`` axes: ``(shape[0], prod(shape[1:]))``."""
    if ndim == 0:
        return Fold((), ())
    return Fold((0,), tuple(range(1, ndim)))


def _axes(name: str, group: Any, ndim: int, fold: Any, at: str) -> tuple[int, ...]:
    """One group of a fold as non-negative axes; raises for what is not a tuple of ints in
    range."""
    if isinstance(group, numbers.Integral) and not isinstance(group, bool):
        group = (group,)
    if not isinstance(group, tuple | list) or not all(
        isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in group
    ):
        raise TypeError(f"Fold.{name} must be a tuple of ints{at}, got {group!r}")
    axes = tuple(int(a) for a in group)
    if any(not -ndim <= a < ndim for a in axes):
        raise ValueError(f"{fold} names an axis out of range for a {ndim}-D leaf{at}")
    return tuple(a % ndim for a in axes)


def check_fold(fold: Fold | None, ndim: int, where: str = "") -> Fold:
    """``fold`` normalised for a leaf with ``ndim`` axes (non-negative axes, tuples of ints).

    ``None`` gives :func:`default_fold`. Raises ``TypeError`` for what is not a :class:`Fold`
    and ``ValueError`` for one whose groups do not name each of the leaf's axes once (a batch
    axis that is also a row or column axis among them); ``where`` (e.g. a leaf's path) is named
    in the message.
    """
    if fold is None:
        return default_fold(ndim)
    at = f" for the leaf at {where}" if where else ""
    if not isinstance(fold, Fold):
        raise TypeError(f"a fold must be a ladam_optax.Fold or None{at}, got {fold!r}")
    rows, cols, batch = (
        _axes(name, group, ndim, fold, at)
        for name, group in (("rows", fold.rows), ("cols", fold.cols), ("batch", fold.batch))
    )
    if set(batch) & set(rows + cols):
        raise ValueError(
            f"{fold} names axis {sorted(set(batch) & set(rows + cols))[0]} as a batch axis and "
            f"as a row or column axis{at}: a batch axis indexes separate fields, so it cannot "
            "also be inside one"
        )
    if sorted(batch + rows + cols) != list(range(ndim)):
        raise ValueError(
            f"{fold} is not a permutation of the axes of a {ndim}-D leaf{at}: rows, cols and "
            f"batch together must name each of the axes 0..{ndim - 1} once"
        )
    return Fold(rows, cols, batch)


def slice_size(shape: tuple[int, ...], fold: Fold | None) -> int:
    """The number of elements of one field of a leaf of ``shape``: the whole leaf, or one slice
    along ``fold.batch`` (what the zero rules and ``min_spatial_size`` count)."""
    if fold is None or not fold.batch:
        return math.prod(shape)
    return math.prod(n for a, n in enumerate(shape) if a not in fold.batch)


def batch_shape(shape: tuple[int, ...], fold: Fold | None) -> tuple[int, ...]:
    """``shape`` with every axis that is not a batch axis of ``fold`` set to 1: the shape of a
    per-field statistic that broadcasts against the leaf; ``()`` for a leaf of one field."""
    if fold is None or not fold.batch:
        return ()
    return tuple(n if a in fold.batch else 1 for a, n in enumerate(shape))


def _field_shape(shape: tuple[int, ...], fold: Fold) -> tuple[int, ...]:
    """The shape of one slice's field before the zero rules: 1-D for ``cols=()``, else 2-D."""
    rows = math.prod(shape[a] for a in fold.rows)
    if not fold.cols:
        return (rows,)
    return (rows, math.prod(shape[a] for a in fold.cols))


def folded_shape(shape: tuple[int, ...], fold: Fold | None = None) -> tuple[int, ...] | None:
    """The 1-D or 2-D field each slice of a leaf of ``shape`` is smoothed as (the whole leaf
    without batch axes), or ``None`` if its Laplacian is 0.

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
      impl: ``"auto"`` (the default: on a leaf whole on one device, the interior from static
        slices of ``x`` and the wrap-around outer ring computed apart; on a sharded leaf, the
        same stencil on each shard with one-slab halos exchanged between neighbouring shards,
        see the multi-device guide) or ``"conv"`` (``lax.conv_general_dilated`` on a
        wrap-padded copy, the reference's form, for leaves whole on a device; sharded leaves get
        the halo form). Both give the same numbers to float rounding. Static.
      fold: a :class:`Fold` naming the axes of the field's rows and columns (and any batch
        axes, each index of which is a field of its own), or ``None`` for the reference's
        ``(shape[0], prod(shape[1:]))``. Static.

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

    ``stencil`` and ``impl`` must be valid and ``fold`` checked (:func:`check_fold`) or
    ``None``. The field's axes are brought in order (batch, rows, columns) by a transpose (local
    to each shard), then :func:`ladam_optax._partitioned.folded_laplacian` partitions the
    stencil. Jitted, so that an update traces the stencil once per leaf shape, dtype, sharding
    and fold, however many leaves share them (the blocks of a deep model do).
    """
    if folded_shape(x.shape, fold) is None:
        return jnp.zeros_like(x)
    fold = fold or default_fold(x.ndim)
    order = fold.batch + fold.rows + fold.cols
    moved = order != tuple(range(x.ndim))
    y = lax.transpose(x, order) if moved else x
    form = "conv" if impl == "conv" else "slices"
    out = _partitioned.folded_laplacian(y, stencil, len(fold.batch), len(fold.rows), form)
    if moved:
        out = lax.transpose(out, tuple(int(a) for a in np.argsort(order)))
    return out if out.dtype == x.dtype else out.astype(x.dtype)
