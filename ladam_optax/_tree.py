"""Walking parameter trees: path names, NNX variables, masked nodes, trained leaves.

Pure functions of pytrees, shared by the fold specs, the checks and the diagnostics. Flax is
never imported: an NNX variable is recognised when ``flax.nnx`` is already loaded.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

_VARIABLE_ATTRIBUTES = ("value", "raw_value")


def path_names(path: tuple) -> tuple[str, ...]:
    """The names along a pytree path; the trailing ``.value`` of an ``nnx.Variable`` is dropped."""
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey):
        if path[-1].name in _VARIABLE_ATTRIBUTES:
            path = path[:-1]
    names = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            names.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            names.append(entry.name)
        elif isinstance(entry, jax.tree_util.SequenceKey):
            names.append(str(entry.idx))
        elif isinstance(entry, jax.tree_util.FlattenedIndexKey):
            names.append(str(entry.key))
        else:
            names.append(str(entry))
    return tuple(names)


def is_masked(x: Any) -> bool:
    """Whether ``x`` is an ``optax.MaskedNode`` (a leaf masked out by ``optax.masked``)."""
    return isinstance(x, optax.MaskedNode)


def _variable_type() -> type | None:
    """``flax.nnx.Variable`` if flax.nnx is loaded (never imported here), else ``None``."""
    nnx = sys.modules.get("flax.nnx")
    return None if nnx is None else nnx.Variable


def flatten(tree: Any) -> tuple[list, Any, type | None]:
    """``tree``'s (path, leaf) pairs and treedef, with ``MaskedNode`` and NNX variables as
    leaves: ``nnx.Optimizer`` hands ``init`` a state of ``nnx.Param`` variables and ``update`` the
    same state with plain arrays, and both must find the same folds."""
    variable = _variable_type()

    def is_leaf(x):
        return is_masked(x) or (variable is not None and isinstance(x, variable))

    with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    return with_paths, treedef, variable


def unwrap(x: Any, variable: type | None) -> Any:
    """The value inside an NNX variable; anything else as it is."""
    if variable is not None and isinstance(x, variable):
        return x.get_value() if hasattr(x, "get_value") else x.value
    return x


class NamedLeaf(NamedTuple):
    """A leaf's lower-cased path names and its shape, ``None`` where the leaf is not trained."""

    names: tuple[str, ...]
    shape: tuple[int, ...] | None


def named_leaves(tree: Any) -> tuple[list, Any, list[NamedLeaf]]:
    """``tree``'s (path, leaf) pairs and treedef (as :func:`flatten`), and each leaf's
    :class:`NamedLeaf`: the one place that decides which leaves are trained. Not trained (shape
    ``None``): an ``optax.MaskedNode`` (masked out by an enclosing ``optax.masked``), an integer,
    boolean or PRNG-key leaf (a step counter), and a Flax NNX variable that is not an
    ``nnx.Param`` (``BatchStat``, ``RngState``), so a whole ``nnx.state(model)`` works. Raises
    ``TypeError``, naming the leaf, for a leaf that is not an array."""
    with_paths, treedef, variable = flatten(tree)
    param = getattr(sys.modules.get("flax.nnx"), "Param", None)
    named = []
    for path, leaf in with_paths:
        names = tuple(n.lower() for n in path_names(path))
        if is_masked(leaf) or (
            variable is not None and isinstance(leaf, variable) and not isinstance(leaf, param)  # type: ignore[arg-type]
        ):
            named.append(NamedLeaf(names, None))
            continue
        value = unwrap(leaf, variable)
        if is_masked(value):  # masked out inside an NNX variable
            named.append(NamedLeaf(names, None))
            continue
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise TypeError(
                "params must be a pytree of arrays (e.g. nnx.state(model, nnx.Param) or a Linen "
                f"variables['params'] dict); the leaf at {jax.tree_util.keystr(path)} is a "
                f"{type(value).__name__}"
            )
        trained = jax.numpy.issubdtype(value.dtype, np.inexact)
        named.append(NamedLeaf(names, tuple(value.shape) if trained else None))
    return with_paths, treedef, named


def unwrap_variables(tree: Any) -> Any:
    """``tree`` with every NNX variable replaced by its value (``nnx.Optimizer.opt_state``
    holds its arrays in ``OptArray`` variables)."""
    variable = _variable_type()
    if variable is None:
        return tree
    return jax.tree.map(
        lambda x: unwrap(x, variable), tree, is_leaf=lambda x: isinstance(x, variable)
    )
