"""Per-leaf folds: which axes of each parameter form the field the Laplacian smooths.

``fold=`` of every smoothing transformation takes ``None`` (the PyTorch ``ladam`` package's
rule for every leaf), a pytree shaped like the parameters whose leaves are
:class:`~ladam_optax.Fold` or ``None``, or a callable that returns one from the parameters
(as ``optax.masked`` takes its mask). :func:`torch_folds` is the callable that gives each Flax
leaf the field the same PyTorch layer's weight has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from ladam_optax import _checks
from ladam_optax._laplacian import Fold, check_fold
from ladam_optax._tree import (
    NamedLeaf,
    flatten,
    is_masked,
    named_leaves,
    unwrap,
)

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
    try:
        specs = treedef.flatten_up_to(spec)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "fold must be shaped like the params (a pytree with a Fold or None for each leaf), "
            f"or a callable returning such a tree; it does not match: {error}"
        ) from None
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
