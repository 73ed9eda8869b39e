"""The periodic Laplacian of a leaf that may be sharded: halo exchanges only, chosen per leaf.

A leaf whose field is whole on every device gets the fast local form (``_stencil``'s
``"slices"``, or ``"conv"``). A leaf sharded over devices gets, on each shard, the same stencil on
its block padded with one slab from each neighbouring shard (``lax.ppermute``): halos only, never a
gather of the leaf. Who knows the sharding decides:

- Explicit mesh axes: the sharding is in the leaf's type while tracing (``jax.typeof``), with or
  without ``jax.set_mesh``, so the stencil is a ``jax.shard_map`` over the leaf's own spec: plain
  JAX, differentiable, batchable and exportable.
- Auto axes, or no mesh: only the compiler knows the sharding, so the stencil is a
  ``custom_partitioning`` op whose partition callback plans the halos from the sharding the
  compiler propagated. On one device (or a computation placed on one device of many) JAX inlines
  the local form and no callback runs. A ``custom_vjp`` (the operator is linear and
  self-adjoint) and a ``custom_vmap`` (vmapped axes become independent leading axes of the op)
  give it the differentiation and batching rules ``custom_partitioning`` lacks.

Per group of the field (its rows, its columns) one sharded axis that its mesh axes divide evenly
is exchanged as halos; any other sharded axis of the leaf is asked replicated, so the compiler
gathers that axis (correct; the cost is documented in the multi-device guide).

Layout of the arrays here: ``y`` is the leaf already transposed so that its first ``batch`` axes
are independent (vmapped), the next ``rows`` axes flatten into the field's rows and the rest into
its columns (none: a periodic line).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.interpreters import mlir
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ladam_optax import _stencil

_EDGES_APART_FROM = 3  # the shortest run :func:`_edges_apart` handles


class _Group(NamedTuple):
    """How one group of the field (its rows or its columns) lies on the mesh.

    ``start``/``stop``: the group's axes of ``y``. ``cut``: its sharded axis (``None``: whole on
    every shard). ``mesh_axes``/``sizes``: the mesh axes sharding ``cut``, in the spec's order.
    """

    start: int
    stop: int
    cut: int | None
    mesh_axes: tuple[str, ...]
    sizes: tuple[int, ...]


class _Plan(NamedTuple):
    spec: P  # the sharding the stencil works on (halo axes and batch axes kept)
    groups: tuple[_Group, ...]  # rows, and columns unless the field is a line

    @property
    def halos(self) -> bool:
        return any(g.cut is not None for g in self.groups)


def _mesh_axes(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple | list) else (entry,)


def _plan(mesh_shape: dict, shape: tuple[int, ...], spec: Any, batch: int, rows: int) -> _Plan:
    """Per group, the first sharded axis that its mesh axes divide evenly; every other sharded
    axis of the field is dropped from the spec (the compiler gathers it). Batch axes keep
    their sharding: they need no halos."""
    entries = tuple(spec) + (None,) * (len(shape) - len(tuple(spec)))
    kept: list = list(entries[:batch]) + [None] * (len(shape) - batch)
    bounds = [(batch, batch + rows)]
    if batch + rows < len(shape):
        bounds.append((batch + rows, len(shape)))
    groups = []
    for start, stop in bounds:
        group = _Group(start, stop, None, (), ())
        for axis in range(start, stop):
            names = _mesh_axes(entries[axis])
            sizes = tuple(mesh_shape[a] for a in names)
            if names and group.cut is None and shape[axis] % math.prod(sizes) == 0:
                group = _Group(start, stop, axis, names, sizes)
                kept[axis] = entries[axis]
        groups.append(group)
    return _Plan(P(*kept), tuple(groups))


# The local forms: the stencil on a block that is whole on this device.


def _local(y: jax.Array, stencil: str, batch: int, rows: int, form: str) -> jax.Array:
    """The stencil on every field of ``y`` (one per index of its batch axes), computed locally."""
    shape = y.shape
    field = (math.prod(shape[batch : batch + rows]),)
    if batch + rows < y.ndim:
        field += (math.prod(shape[batch + rows :]),)
    compute = functools.partial(_stencil.LOCAL_FORMS[form], stencil=stencil)
    if batch:
        out = jax.vmap(compute)(lax.reshape(y, (math.prod(shape[:batch]), *field)))
    else:
        out = compute(lax.reshape(y, field))
    return lax.reshape(out, shape)


# The halo form: the stencil on each shard's block padded with its neighbours' edge slabs.


def _ring(group: _Group, mesh_order: tuple[str, ...], step: int) -> tuple[tuple[str, ...], list]:
    """``lax.ppermute`` pairs sending each shard's slab to the shard ``step`` further along the
    group's sharded axis. Shards are numbered as ``NamedSharding`` tiles a dimension (the spec's
    first mesh axis major); ppermute numbers a tuple of axes in the mesh's order, so the pairs
    are translated."""
    names = tuple(sorted(group.mesh_axes, key=mesh_order.index))
    size = dict(zip(group.mesh_axes, group.sizes, strict=True))
    count = math.prod(group.sizes)

    def device_index(shard: int) -> int:
        coords = {}
        for axis in reversed(group.mesh_axes):
            shard, coords[axis] = divmod(shard, size[axis])
        index = 0
        for axis in names:
            index = index * size[axis] + coords[axis]
        return index

    pairs = [(device_index(k), device_index((k + step) % count)) for k in range(count)]
    return names, pairs


def _shard_number(group: _Group) -> jax.Array:
    """This shard's position along the group's sharded axis (spec order, first axis major)."""
    k = lax.axis_index(group.mesh_axes[0])
    for axis, size in zip(group.mesh_axes[1:], group.sizes[1:], strict=True):
        k = k * size + lax.axis_index(axis)
    return k


class _Run(NamedTuple):
    """Where one group of the field lies in the halo body's view of a block: the axis along
    which the stencil runs (``axis``) and the axes before it in the group (``outer``, a range),
    over whose flattened index the run's ends wrap into the next."""

    axis: int
    outer: tuple[int, int]
    cut: int | None = None  # the group's sharded axis where it is an outer one, not the run


def _at_ends(slab: jax.Array, axes: range, last: bool) -> jax.Array:
    """``slab``'s entry at index 0 (``last``: at the end) of each of ``axes``."""
    for a in axes:
        n = slab.shape[a]
        slab = _lines(slab, a, n - 1, n) if last else _lines(slab, a, 0, 1)
    return slab


def _where_ends(slab: jax.Array, axes: range, last: bool) -> jax.Array:
    """Whether each entry of ``slab`` sits at index 0 (``last``: at the end) of all ``axes``."""
    hits = [
        lax.eq(
            lax.broadcasted_iota(np.int32, slab.shape, a),
            np.int32(slab.shape[a] - 1 if last else 0),
        )
        for a in axes
    ]
    return functools.reduce(lax.bitwise_and, hits)


def _carried(slab: jax.Array, outer: tuple[int, int], shift: int) -> jax.Array:
    """``slab`` rolled by ``shift`` over its ``outer`` axes flattened (row-major): the slab the
    neighbouring index of the flattened group sees across the run's end."""
    start, stop = outer
    shape = slab.shape
    count = math.prod(shape[start:stop])
    if count == 1:
        return slab
    merged = lax.reshape(slab, (*shape[:start], count, *shape[stop:]))
    return lax.reshape(jnp.roll(merged, shift, start), shape)


def _exchange(first, last, run: _Run, group: _Group, mesh_order: tuple[str, ...]):
    """What lies just before and just after a block along ``run.axis``, given the block's
    ``first`` and ``last`` slabs there: its own wrap when the group is whole here, else the
    neighbouring shards' edge slabs.

    A run is contiguous in the flattened group, so the neighbour across its end is the next
    outer index's run: on this shard when the group is whole here, else the next shard's run of
    the same outer index, except at the ends of the ring, where the flattened wrap carries into
    the next outer index: those two shards roll what they receive by one.
    """
    if group.cut is None:
        return _carried(last, run.outer, 1), _carried(first, run.outer, -1)
    names, forward = _ring(group, mesh_order, 1)
    _, backward = _ring(group, mesh_order, -1)
    if run.cut is not None:
        return _exchange_across(first, last, run, group, names, forward, backward)
    before = lax.ppermute(last, names, forward)  # the previous shard's last slab
    after = lax.ppermute(first, names, backward)  # the next shard's first slab
    if math.prod(first.shape[run.outer[0] : run.outer[1]]) > 1:
        k, count = _shard_number(group), math.prod(group.sizes)
        before = jnp.where(k == 0, _carried(before, run.outer, 1), before)
        after = jnp.where(k == count - 1, _carried(after, run.outer, -1), after)
    return before, after


def _exchange_across(first, last, run: _Run, group: _Group, names, forward, backward):
    """:func:`_exchange` where the group is sharded on an outer axis of its run (the run is the
    group's last axis, whole here): along the flattened ``(cut, ..., run)`` axes a run's ends
    wrap into the next index of the axes from ``cut`` on, on this shard, except at this shard's
    first and last such index, whose neighbours are the previous shard's last and the next
    shard's first entries (one element per outer index: the only halos), carried into the next
    index of the axes before ``cut`` at the ends of the ring."""
    assert run.cut is not None
    inner, before_cut = range(run.cut, run.axis), (run.outer[0], run.cut)
    before = _carried(last, (run.cut, run.axis), 1)
    after = _carried(first, (run.cut, run.axis), -1)
    received_before = lax.ppermute(_at_ends(last, inner, True), names, forward)
    received_after = lax.ppermute(_at_ends(first, inner, False), names, backward)
    if math.prod(first.shape[before_cut[0] : before_cut[1]]) > 1:
        k, count = _shard_number(group), math.prod(group.sizes)
        carried = _carried(received_before, before_cut, 1)
        received_before = jnp.where(k == 0, carried, received_before)
        carried = _carried(received_after, before_cut, -1)
        received_after = jnp.where(k == count - 1, carried, received_after)
    before = jnp.where(_where_ends(before, inner, False), received_before, before)
    after = jnp.where(_where_ends(after, inner, True), received_after, after)
    return before, after


def _lines(block: jax.Array, axis: int, start: int, stop: int) -> jax.Array:
    return lax.slice_in_dim(block, start, stop, axis=axis)


def _ends(block: jax.Array, run: _Run, group: _Group, mesh_order: tuple[str, ...]):
    """The slabs just before and just after ``block`` along its run (:func:`_exchange`)."""
    n = block.shape[run.axis]
    first, last = _lines(block, run.axis, 0, 1), _lines(block, run.axis, n - 1, n)
    return _exchange(first, last, run, group, mesh_order)


def _padded(block: jax.Array, run: _Run, group: _Group, mesh_order: tuple[str, ...]):
    """``block`` with one slab added before and after along its run (:func:`_exchange`)."""
    before, after = _ends(block, run, group, mesh_order)
    return lax.concatenate([before, block, after], run.axis)


def _placed(out: jax.Array, axis: int, first: jax.Array, last: jax.Array) -> jax.Array:
    """``out`` with its first and last slabs along ``axis`` replaced by ``first``/``last``."""
    index = lax.broadcasted_iota(np.int32, out.shape, axis)
    for at, values in ((out.shape[axis] - 1, last), (0, first)):
        spread = lax.broadcast_in_dim(
            lax.squeeze(values, (axis,)),
            out.shape,
            tuple(a for a in range(out.ndim) if a != axis),
        )
        out = lax.select(lax.eq(index, np.int32(at)), spread, out)
    return out


def _edges_apart(block, stencil: str, plan: _Plan, runs: tuple[_Run, ...], mesh_order):
    """The stencil (before its overall scale) on a block of runs of at least 3: the interior
    from static slices of the block itself (zeros on its edges), the edges from thin strips
    padded with the neighbours' slabs, then selected in: the block is read once, with no padded
    copy of it (the single-device ``"slices"`` form's idea)."""
    taps = _stencil.taps
    axes = tuple(r.axis for r in runs)
    rows, n_rows = axes[0], block.shape[axes[0]]
    interior = taps(block, stencil, axes)
    ring = [(1, 1, 0) if a in axes else (0, 0, 0) for a in range(block.ndim)]
    out = lax.pad(interior, np.zeros((), block.dtype), ring)
    if len(runs) == 1:  # a line: each end sees one neighbouring element
        before, after = _ends(block, runs[0], plan.groups[0], mesh_order)
        first = taps(lax.concatenate([before, _lines(block, rows, 0, 2)], rows), stencil, axes)
        last = lax.concatenate([_lines(block, rows, n_rows - 2, n_rows), after], rows)
        return _placed(out, rows, first, taps(last, stencil, axes))
    cols, n_cols = axes[1], block.shape[axes[1]]
    left, right = _ends(block, runs[1], plan.groups[1], mesh_order)

    def wide(start: int, stop: int) -> jax.Array:  # rows start:stop, padded with columns
        pieces = [_lines(x, rows, start, stop) for x in (left, block, right)]
        return lax.concatenate(pieces, cols)

    top_two, bottom_two = wide(0, 2), wide(n_rows - 2, n_rows)
    above, below = _exchange(
        _lines(top_two, rows, 0, 1),
        _lines(bottom_two, rows, 1, 2),
        runs[0],
        plan.groups[0],
        mesh_order,
    )

    def tall(side: jax.Array, start: int, stop: int, first: bool) -> jax.Array:
        """An outer column's stencil on the block's inner rows, zeros on its first and last
        row: the corners come from the rows' strips, which are placed last."""
        strip = [side, _lines(block, cols, start, stop)]
        strip = lax.concatenate(strip if first else strip[::-1], cols)
        inner = taps(strip, stencil, axes)
        config = [(1, 1, 0) if a == rows else (0, 0, 0) for a in range(inner.ndim)]
        return lax.pad(inner, np.zeros((), inner.dtype), config)

    out = _placed(out, cols, tall(left, 0, 2, True), tall(right, n_cols - 2, n_cols, False))
    first_row = taps(lax.concatenate([above, top_two], rows), stencil, axes)
    last_row = taps(lax.concatenate([bottom_two, below], rows), stencil, axes)
    return _placed(out, rows, first_row, last_row)  # rows last: the corners


def _view(shape: tuple[int, ...], plan: _Plan) -> tuple[tuple[int, ...], tuple[_Run, ...]]:
    """The shape the halo body works on and each group's run in it.

    A group runs along its last axis, the axes before it (the sharded one among them, if any)
    its outer ones; where that axis is shorter than 3, along its axes from the sharded one (or
    all of them) flattened. Mostly the view is the block itself, and the body reads it with no
    reshape, so XLA sees every read of the leaf for what it is.
    (With a reshape in between, XLA's CPU backend could give a fused consumer that also reads
    the leaf elementwise the leaf's own buffer for its output, while the fused stencil still
    read the leaf through the reshaped view: :func:`_read_apart` guards the reshaped views;
    the docs' performance notes.)"""
    view = list(shape[: plan.groups[0].start])
    runs = []
    for g in plan.groups:
        cut = g.start if g.cut is None else g.cut
        if shape[g.stop - 1] >= _EDGES_APART_FROM:  # along the last axis, nothing flattened
            start = len(view) - g.start
            sharded = None if g.cut in (None, g.stop - 1) else start + g.cut
            view += shape[g.start : g.stop]
            runs.append(_Run(len(view) - 1, (start + g.start, len(view) - 1), sharded))
            continue
        outer = (len(view), len(view) + cut - g.start)
        view += shape[g.start : cut]
        runs.append(_Run(len(view), outer))
        view.append(math.prod(shape[cut : g.stop]))
    return tuple(view), tuple(runs)


def _read_apart(y: jax.Array) -> jax.Array:
    """``y`` through an exact elementwise identity that XLA keeps: a ``reduce_precision`` to
    ``y``'s own format. Before a reshape of a block (a bitcast), it puts the reshape inside the
    stencil's fused consumer, so that XLA's CPU backend sees that the consumer reads the leaf
    at shifted positions and does not write its output into the leaf's buffer (the docs'
    performance notes). Removable once XLA checks the buffers of all of a fusion's operands."""
    if not jnp.issubdtype(y.dtype, jnp.floating):
        return y  # complex blocks: reduce_precision takes real floats only
    info = jnp.finfo(y.dtype)
    return lax.reduce_precision(y, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def _halo(y: jax.Array, stencil: str, plan: _Plan, mesh_order: tuple[str, ...]) -> jax.Array:
    """The per-shard body: the block in its view (:func:`_view`), its edges completed with the
    neighbours' slabs. Runs of at least 3: :func:`_edges_apart`. Thinner runs: the block padded
    with halos (columns first, then the rows of the column-padded block, which carries the
    corners) and the taps sliced from that copy."""
    view, runs = _view(y.shape, plan)
    block = y if view == y.shape else lax.reshape(_read_apart(y), view)
    axes = tuple(r.axis for r in runs)
    if min(block.shape[a] for a in axes) >= _EDGES_APART_FROM:
        out = _edges_apart(block, stencil, plan, runs, mesh_order)
    else:
        for run, group in reversed(tuple(zip(runs, plan.groups, strict=True))):
            block = _padded(block, run, group, mesh_order)
        out = _stencil.taps(block, stencil, axes)
    out = _stencil.divided_by_scale(out, stencil, axes)
    return out if view == y.shape else lax.reshape(out, y.shape)


# Auto axes: the compiler's sharding, planned at compile time.


def _partition(stencil, batch, rows, form, mesh, arg_shapes, result_shape):
    del result_shape
    x = arg_shapes[0]
    plan = _plan(dict(mesh.shape), x.shape, x.sharding.spec, batch, rows)
    sharding = NamedSharding(mesh, plan.spec)
    if plan.halos:
        body = functools.partial(
            _halo, stencil=stencil, plan=plan, mesh_order=tuple(mesh.axis_names)
        )
    else:
        body = functools.partial(_local, stencil=stencil, batch=batch, rows=rows, form=form)
    return mesh, body, sharding, (sharding,)


def _infer(stencil, batch, rows, form, mesh, arg_shapes, result_shape):  # GSPMD only
    del form, result_shape
    x = arg_shapes[0]
    return NamedSharding(mesh, _plan(dict(mesh.shape), x.shape, x.sharding.spec, batch, rows).spec)


def _rule(stencil, batch, rows, form, mesh, value_types, result_types):  # Shardy
    dims = " ".join(f"d{i}" for i in range(len(value_types[0].shape)))
    return f"{dims} -> {dims}"


@functools.partial(custom_partitioning, static_argnums=(1, 2, 3, 4))
def _compiler_planned(y, stencil, batch, rows, form):
    return _local(y, stencil, batch, rows, form)


_compiler_planned.def_partition(
    partition=_partition,
    infer_sharding_from_operands=_infer,
    sharding_rule=_rule,
)


# The op as a primitive of its own, so that its lowering can see what it is lowered for: a
# serialized export cannot carry custom_partitioning's compile-time callback, so there it lowers
# to the plain local form (correct on any sharding; XLA then partitions it as it can). The
# custom_partitioning form rides along as a jaxpr parameter: JAX finds it there and gives the
# lowering the devices it needs.
_laplacian_p = jax.extend.core.Primitive("ladam_periodic_laplacian")
_laplacian_p.def_impl(lambda y, *, planned, **statics: _local(y, **statics))
_laplacian_p.def_abstract_eval(lambda y, **params: y)


def _lower(ctx, y, *, planned, stencil: str, batch: int, rows: int, form: str):
    if ctx.module_context.lowering_parameters.for_export:
        body = functools.partial(_local, stencil=stencil, batch=batch, rows=rows, form=form)
    else:
        body = lambda v: jax.extend.core.jaxpr_as_fun(planned)(v)[0]  # noqa: E731
    return mlir.lower_fun(body, multiple_results=False)(ctx, y)


mlir.register_lowering(_laplacian_p, _lower, cacheable=False)  # as custom_partitioning's


@functools.cache
def _batchable(stencil: str, batch: int, rows: int, form: str):
    """The op for these statics with a vmap rule: vmapped axes become leading batch axes."""

    @jax.custom_batching.custom_vmap
    def op(y):
        planned = jax.make_jaxpr(
            functools.partial(_compiler_planned, stencil=stencil, batch=batch, rows=rows, form=form)
        )(y)
        return _laplacian_p.bind(
            y, planned=planned, stencil=stencil, batch=batch, rows=rows, form=form
        )

    @op.def_vmap
    def rule(axis_size, in_batched, y):
        del axis_size
        if not in_batched[0]:
            return op(y), False
        return _batchable(stencil, batch + 1, rows, form)(y), True

    return op


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _planned(y: jax.Array, stencil: str, batch: int, rows: int, form: str) -> jax.Array:
    return _batchable(stencil, batch, rows, form)(y)


def _planned_fwd(y, stencil, batch, rows, form):
    return _planned(y, stencil, batch, rows, form), None


def _planned_bwd(stencil, batch, rows, form, residual, cotangent):
    del residual  # linear and self-adjoint: the stencils are symmetric
    return (_planned(cotangent, stencil, batch, rows, form),)


_planned.defvjp(_planned_fwd, _planned_bwd)


# Explicit axes: the sharding is known while tracing.


def _explicit_mesh(y: jax.Array) -> tuple[Any, Any, bool] | None:
    """The mesh and spec of ``y`` if its mesh has Explicit axes, and whether they shard ``y``;
    ``None`` for Auto axes or no mesh."""
    sharding = jax.typeof(y).sharding
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or mesh.empty:
        return None
    explicit = {
        name
        for name, kind in zip(mesh.axis_names, mesh.axis_types, strict=True)
        if kind == AxisType.Explicit
    }
    if not explicit:
        return None
    named = {a for entry in sharding.spec for a in _mesh_axes(entry)}
    return mesh, sharding.spec, bool(named & explicit)


def folded_laplacian(y: jax.Array, stencil: str, batch: int, rows: int, form: str) -> jax.Array:
    """The stencil on every field of ``y``: its first ``batch`` axes index separate fields, the
    next ``rows`` axes are a field's rows and the rest its columns; partitioned with halo
    exchanges wherever a field is sharded, with no collective where only batch axes are
    (module docstring)."""
    explicit = _explicit_mesh(y)
    if explicit is None:
        return _planned(y, stencil, batch, rows, form)
    mesh, spec, sharded = explicit
    if not sharded:  # Explicit axes, replicated leaf: whole on every device
        return _local(y, stencil, batch, rows, form)
    plan = _plan(dict(mesh.shape), y.shape, spec, batch, rows)
    moved = tuple(plan.spec) != tuple(spec) + (None,) * (y.ndim - len(tuple(spec)))
    z = jax.sharding.reshard(y, NamedSharding(mesh, plan.spec)) if moved else y
    if plan.halos:
        body = functools.partial(
            _halo, stencil=stencil, plan=plan, mesh_order=tuple(mesh.axis_names)
        )
    else:
        body = functools.partial(_local, stencil=stencil, batch=batch, rows=rows, form=form)
    out = jax.shard_map(body, mesh=mesh, in_specs=plan.spec, out_specs=plan.spec)(z)
    return jax.sharding.reshard(out, NamedSharding(mesh, spec)) if moved else out
