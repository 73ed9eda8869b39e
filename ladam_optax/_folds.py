"""Per-leaf folds: which axes of each parameter form the field the Laplacian smooths.

``fold=`` of every smoothing transformation takes ``None`` (the PyTorch ``ladam`` package's
rule for every leaf), a pytree shaped like the parameters whose leaves are
:class:`~ladam_optax.Fold` or ``None``, or a callable that returns one from the parameters
(as ``optax.masked`` takes its mask). :func:`torch_folds` is the callable that gives each Flax
leaf the field the same PyTorch layer's weight has.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax

from ladam_optax import _checks
from ladam_optax._laplacian import Fold, check_fold
from ladam_optax._tree import NamedLeaf, flatten, is_masked, named_leaves, path_names, unwrap

FoldSpec = Any
"""``None``, a pytree of :class:`Fold` / ``None`` leaves shaped like the params, or a callable
of the params returning one."""


def attention_layers(named: list[NamedLeaf]) -> set[tuple[str, ...]]:
    """The paths of Flax ``MultiHeadAttention`` layers: the parents of a ``query`` projection
    (its siblings ``key``, ``value`` and ``out`` belong to it too)."""
    return {leaf.names[:-2] for leaf in named if len(leaf.names) >= 2 and leaf.names[-2] == "query"}


def check_fold_spec(fold: FoldSpec) -> None:
    """Raises ``TypeError`` for a ``fold=`` argument that cannot be a fold spec at all (checked
    at construction; the per-leaf checks come at ``init``, when the params are known)."""
    if fold is None or callable(fold) or isinstance(fold, Fold):
        return
    leaves = jax.tree.leaves(fold, is_leaf=lambda x: isinstance(x, Fold))
    for leaf in leaves:
        if not isinstance(leaf, Fold):
            raise TypeError(
                "fold must be None, a pytree shaped like the params whose leaves are "
                "ladam_optax.Fold or None, or a callable returning one (e.g. "
                f"ladam_optax.torch_folds); found a leaf {leaf!r}"
            )


def _per_leaf(spec: Any, treedef: Any, what: str) -> list:
    """``spec``'s entry for each leaf of ``treedef``; raises ``ValueError`` saying ``what``
    does not match when ``spec`` is not shaped like the params."""
    try:
        return treedef.flatten_up_to(spec)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{what} must be shaped like the params (a pytree with a Fold or None for each "
            f"leaf), or a callable returning such a tree; it does not match: {error}"
        ) from None


def resolve_folds(fold: FoldSpec, tree: Any) -> list[Fold | None]:
    """The checked fold of every array leaf of ``tree`` (in ``jax.tree.leaves`` order).

    ``None`` stands for the reference's rule. Leaves masked out by an enclosing
    ``optax.masked`` / ``optax.partition`` (``optax.MaskedNode``) are skipped, whatever the spec
    holds there. Raises ``ValueError`` naming the leaf's path for a fold that does not fit its
    leaf, or when the spec is not shaped like ``tree``.
    """
    if fold is None:
        return [None] * len(jax.tree.leaves(tree))
    spec = fold(tree) if callable(fold) else fold
    with_paths, treedef, variable = flatten(tree)
    specs = _per_leaf(spec, treedef, "fold")
    folds = []
    for (path, leaf), leaf_fold in zip(with_paths, specs, strict=True):
        # Masked out, as a node or inside an NNX variable (``optax.masked`` maps its mask over
        # the variable's value when the params it is given hold ``nnx.Param`` variables).
        leaf, leaf_fold = unwrap(leaf, variable), unwrap(leaf_fold, variable)
        if is_masked(leaf):
            continue
        if leaf_fold is None:
            folds.append(None)
            continue
        where = jax.tree_util.keystr(path)
        folds.append(check_fold(leaf_fold, len(jax.numpy.shape(leaf)), where))
    return folds


def map_with_folds(fn: Callable, folds: list[Fold | None], tree: Any, *rest: Any) -> Any:
    """``jax.tree.map(fn, tree, *rest)`` with each leaf's fold as ``fn``'s last argument."""
    leaves, treedef = jax.tree.flatten(tree)
    columns = [treedef.flatten_up_to(r) for r in rest]
    results = [fn(*args) for args in zip(leaves, *columns, folds, strict=True)]
    return treedef.unflatten(results)


def _stacked_axes(name: str, axes: Any) -> tuple[int, ...]:
    """The stacked axes of ``stacked``'s entry ``name``: an int or a non-empty tuple of ints."""
    if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
        return (int(axes),)
    if (
        isinstance(axes, tuple | list)
        and axes
        and all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes)
    ):
        return tuple(int(a) for a in axes)
    raise TypeError(
        f"stacked: the stacked axes of {name!r} must be an int or a tuple of ints, got {axes!r}"
    )


@dataclasses.dataclass(frozen=True)
class Stacked:
    """A fold spec for stacked layers: built by :func:`stacked`, passed as ``fold=``."""

    axes: tuple[tuple[str, tuple[int, ...]], ...]
    fold: FoldSpec = None

    def stacked_axes(self, names: tuple[str, ...]) -> tuple[str, tuple[int, ...]] | None:
        """The longest prefix matching a leaf's path names, and its stacked axes."""
        path = "/".join(names)
        best = None
        for prefix, axes in self.axes:
            if (path == prefix or path.startswith(prefix + "/")) and (
                best is None or len(prefix) > len(best[0])
            ):
                best = (prefix, axes)
        return best

    def __call__(self, params: Any) -> Any:
        with_paths, treedef, named = named_leaves(params)
        matched: set[str] = set()
        layer_leaves, stacks = [], []
        for (path, leaf), entry in zip(with_paths, named, strict=True):
            match = self.stacked_axes(path_names(path))
            if match is not None:
                matched.add(match[0])
            if match is None or entry.shape is None:
                layer_leaves.append(leaf)
                stacks.append(None)
                continue
            ndim, where = len(entry.shape), jax.tree_util.keystr(path)
            if any(not -ndim <= a < ndim for a in match[1]):
                raise ValueError(
                    f"stacked: {match[0]!r} stacks along axes {match[1]}, but the leaf at "
                    f"{where} has shape {entry.shape}"
                )
            axes = tuple(a % ndim for a in match[1])
            if len(set(axes)) != len(axes):
                raise ValueError(f"stacked: {match[0]!r} names an axis twice: {match[1]}")
            layer = tuple(n for a, n in enumerate(entry.shape) if a not in axes)
            layer_leaves.append(jax.ShapeDtypeStruct(layer, unwrap(leaf, None).dtype))
            stacks.append(axes)
        missing = [prefix for prefix, _ in self.axes if prefix not in matched]
        if missing:
            raise ValueError(
                f"stacked: no leaf of the params lies under {', '.join(map(repr, missing))}; "
                "a prefix is path names joined by '/', as 'layers' or 'decoder/layers'"
            )
        layers = treedef.unflatten(layer_leaves)
        spec = self.fold(layers) if callable(self.fold) else self.fold
        if spec is None:
            inner = [None] * len(layer_leaves)
        else:
            inner = _per_leaf(spec, treedef, "stacked: the per-layer fold")
        folds = []
        for (path, _), layer, axes, leaf_fold in zip(
            with_paths, layer_leaves, stacks, inner, strict=True
        ):
            if axes is None:
                folds.append(leaf_fold)
                continue
            where = jax.tree_util.keystr(path)
            per_layer = check_fold(unwrap(leaf_fold, None), len(layer.shape), where)
            kept = [a for a in range(len(layer.shape) + len(axes)) if a not in axes]
            folds.append(
                Fold(
                    rows=tuple(kept[a] for a in per_layer.rows),
                    cols=tuple(kept[a] for a in per_layer.cols),
                    batch=axes + tuple(kept[a] for a in per_layer.batch),
                )
            )
        return treedef.unflatten(folds)


def stacked(axes: Mapping[str, int | tuple[int, ...]], fold: FoldSpec = None) -> Stacked:
    """The fold spec of a model whose layers are stacked into one leaf per parameter.

    Scanned models keep a layer's weights stacked along a layer axis: Flax Linen's
    ``nn.scan(variable_axes={"params": 0})`` and NNX's ``nnx.vmap`` + ``nnx.scan`` (axis 0),
    MaxText's ``scan_layers`` (``param_scan_axis = 1``), Equinox's ``filter_vmap``, and
    mixture-of-experts weights ``(experts, d, f)`` (``(layers, experts, d, f)`` once scanned).
    PyTorch's LAdam smooths each of those layers and experts as a tensor of its own; so does
    this spec: every index of the stacked axes is its own field (:class:`Fold`'s ``batch``),
    with the zero rules and ``min_spatial_size`` counting one layer's elements.

    Args:
      axes: maps a path prefix (path names joined by ``/``: ``"layers"``,
        ``"decoder/layers"``) to the stacked axis (an int) or axes (a tuple) of every leaf
        under it; where several prefixes match a leaf, the longest wins
        (``{"layers": 0, "layers/moe": (0, 1)}``).
      fold: the per-layer fold spec, applied to the leaves as one unrolled layer holds them
        (the stacked axes removed): ``None`` (the reference's rule), a pytree like the params
        of :class:`Fold` / ``None`` in per-layer axes, or a callable of the per-layer params
        such as :func:`torch_folds`.

    Returns:
      A callable fold spec for the ``fold=`` of every optimizer, :func:`laplacian`'s callers,
      :func:`analyze_params` and :func:`auto_configure`. It raises ``ValueError`` at ``init``
      for a prefix that matches no leaf (a typo) or an axis a leaf under it does not have,
      naming the prefix or the leaf's path.

    Examples:
      >>> import jax.numpy as jnp
      >>> import ladam_optax
      >>> params = {"layers": {"kernel": jnp.zeros((4, 64, 32)), "bias": jnp.zeros((4, 32))}}
      >>> spec = ladam_optax.stacked({"layers": 0})
      >>> spec(params)
      {'layers': {'bias': Fold(rows=(1,), cols=(), batch=(0,)), 'kernel': Fold(rows=(1,), \
cols=(2,), batch=(0,))}}
      >>> tx = ladam_optax.ladam(1e-3, c2=1e-4, fold=ladam_optax.stacked({"layers": 0}))

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``LAdam`` (one field per weight tensor).
    """
    if not isinstance(axes, Mapping) or not axes:
        raise TypeError(
            "stacked: axes must be a non-empty dict from a path prefix ('layers', "
            f"'decoder/layers') to the stacked axis or axes, got {axes!r}"
        )
    entries = []
    for prefix, stack in axes.items():
        if not isinstance(prefix, str) or not prefix.strip("/"):
            raise TypeError(f"stacked: a path prefix must be a non-empty str, got {prefix!r}")
        entries.append((prefix.strip("/"), _stacked_axes(prefix, stack)))
    check_fold_spec(fold)
    return Stacked(tuple(entries), fold)


def torch_folds(params: Any) -> Any:
    """The folds that give each Flax leaf the field its PyTorch layer's weight is smoothed as.

    The PyTorch ``ladam`` package folds a weight as ``(shape[0], prod(shape[1:]))``, and
    PyTorch's layouts put the output units first. Flax's do not. For Flax Dense kernels
    ``(in, out)``, attention query/key/value kernels ``(in, heads, head_dim)`` and Embed the
    default field is the PyTorch one transposed, and both stencils are transpose-symmetric, so
    those leaves get ``None`` (the default). The rules, from each leaf's path and shape:

    - a convolution kernel (``ndim >= 3``, not under a ``MultiHeadAttention``), Flax
      ``(*spatial, in, out)`` as PyTorch ``(out, in, *spatial)``:
      ``Fold(rows=(n-1,), cols=(n-2, 0, ..., n-3))``;
    - a ``MultiHeadAttention`` ``out`` kernel (a sibling of ``query``), ``(heads, head_dim,
      out)`` as PyTorch's ``out_proj`` ``(out, heads * head_dim)``: rows the last axis, columns
      the head axes;
    - a ``query``/``key``/``value`` bias ``(heads, head_dim)``, PyTorch's ``(heads * head_dim,)``
      slice of ``in_proj_bias``: a periodic line, ``Fold(rows=(0, 1), cols=())``;
    - everything else: ``None``.

    A leaf of 3 or more dimensions outside an attention layer that is not named ``kernel``
    (e.g. a plain dict's ``{"conv": {"w": ...}}``) gets ``None``, the reference's
    ``(shape[0], -1)`` field, with a ``UserWarning`` naming it: its layout cannot be read from
    its name. It is not an error, since such leaves need not be convolutions (a position
    embedding ``(1, tokens, features)``); name a Flax-layout conv kernel ``kernel``, or pass a
    fold tree, and the warning goes away.

    Layers it cannot know from a path: ``ConvTranspose`` (its PyTorch kernel is
    ``(in, out, *spatial)`` and flipped, and its Flax kernel looks like a ``Conv``'s, so it gets
    the conv rule: pass a tree with its own fold), and recurrent cells (PyTorch stacks an
    LSTM's four gates into one ``(4 * hidden, in)`` weight, Flax keeps one Dense per gate, so
    no fold of a Flax leaf gives PyTorch's field).

    Args:
      params: the parameters: ``nnx.state(model, nnx.Param)`` (with or without the ``.value``
        path entries of its variables), a Linen ``variables["params"]`` dict, or the updates
        an optimizer sees. Only paths and shapes are read, so abstract or traced arrays work.

    Returns:
      A pytree shaped like ``params`` with a :class:`Fold` or ``None`` at every leaf (``None``
      too where a leaf is not trained: masked out, integer, or an NNX variable that is not a
      ``Param``).

    Examples:
      >>> import jax.numpy as jnp
      >>> import ladam_optax
      >>> params = {"Conv_0": {"kernel": jnp.zeros((3, 3, 4, 8)), "bias": jnp.zeros(8)}}
      >>> ladam_optax.torch_folds(params)
      {'Conv_0': {'bias': None, 'kernel': Fold(rows=(3,), cols=(2, 0, 1))}}
      >>> tx = ladam_optax.ladam(1e-3, c2=0.1, fold=ladam_optax.torch_folds)

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``LAdam._laplacian`` (its ``(shape[0], -1)`` fold).
    """
    with_paths, treedef, entries = named_leaves(params)
    attention = attention_layers(entries)
    folds = [
        leaf
        if is_masked(leaf)
        else (None if shape is None else _torch_fold(names, shape, attention))
        for (names, shape), (_, leaf) in zip(entries, with_paths, strict=True)
    ]
    unknown = [
        jax.tree_util.keystr(path)
        for (names, shape), (path, _) in zip(entries, with_paths, strict=True)
        if shape is not None
        and len(shape) >= 3
        and names[-1:] != ("kernel",)
        and not (len(names) >= 2 and names[:-2] in attention)
    ]
    if unknown:
        _checks.warn(
            "torch_folds: leaves of 3 or more dimensions not named 'kernel' have no known "
            f"layout and get the reference's (shape[0], -1) field: {', '.join(unknown)}. For "
            "a conv kernel in Flax's (*spatial, in, out) layout, name it 'kernel' or pass "
            "fold= a tree with its ladam_optax.Fold"
        )
    return treedef.unflatten(folds)


def _torch_fold(names: tuple[str, ...], shape: tuple[int, ...], attention: set) -> Fold | None:
    n = len(shape)
    leaf = names[-1] if names else ""
    parent = names[-2] if len(names) >= 2 else ""
    in_attention = bool(parent) and names[:-2] in attention
    if in_attention and parent == "out" and leaf == "kernel" and n >= 3:
        return Fold(rows=(n - 1,), cols=tuple(range(n - 1)))
    if in_attention and parent in ("query", "key", "value") and leaf == "bias" and n >= 2:
        return Fold(rows=tuple(range(n)), cols=())
    if leaf == "kernel" and n >= 3 and not in_attention:
        return Fold(rows=(n - 1,), cols=(n - 2, *range(n - 2)))
    return None
