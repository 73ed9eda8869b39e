"""Construction-time checks of hyperparameters, shared by every factory.

A hyperparameter is *static* when it is a Python or NumPy number; then it is checked here, and
the transformations may take shortcuts on its value (``c2 == 0`` skips the Laplacian). Anything
else (a jax array, possibly traced by ``optax.inject_hyperparams``) is *dynamic*: it cannot be
checked on the host without a sync, and the transformations handle every value with
``jnp.where``.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from typing import Any

import jax
import jax.numpy as jnp

from ladam_optax._tree import flatten, is_masked, unwrap


def static_value(x: Any) -> float | None:
    """The value of a static (Python or NumPy) number, or ``None`` for a dynamic one."""
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    return None


def is_static_zero(x: Any) -> bool:
    """True only for a static number equal to zero (a traced value is never 'statically zero')."""
    return static_value(x) == 0.0


def _check_number(name: str, x: Any) -> float | None:
    if isinstance(x, bool) or not (isinstance(x, numbers.Real) or isinstance(x, jax.Array)):
        raise TypeError(f"{name} must be a real number or a jax array, got {type(x).__name__}")
    value = static_value(x)
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    return value


def non_negative(name: str, x: Any) -> None:
    """Raises unless ``x`` is a number >= 0 (dynamic values are accepted unchecked)."""
    value = _check_number(name, x)
    if value is not None and not value >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {x!r}")


def unit_interval(name: str, x: Any) -> None:
    """Raises unless ``x`` is a number in [0, 1) (dynamic values are accepted unchecked)."""
    value = _check_number(name, x)
    if value is not None and not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {x!r}")


def learning_rate(x: Any) -> None:
    """Raises unless ``x`` is a number >= 0, a jax array or an optax schedule (a callable)."""
    if callable(x):
        return
    if isinstance(x, bool) or not (isinstance(x, numbers.Real) or isinstance(x, jax.Array)):
        raise TypeError(
            "learning_rate must be a float or an optax schedule (a callable of the step count), "
            f"got {type(x).__name__}"
        )
    non_negative("learning_rate", x)


def min_spatial_size(x: Any) -> None:
    """Raises unless ``x`` is an integer >= 0 or an integer jax array."""
    if isinstance(x, jax.Array):
        if not jnp.issubdtype(x.dtype, jnp.integer) and not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"min_spatial_size must be an integer, got an array of {x.dtype}")
        return
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"min_spatial_size must be an integer >= 0, got {x!r}")
    if x < 0:
        raise ValueError(f"min_spatial_size must be >= 0, got {x!r}")


def choice(name: str, x: Any, allowed: tuple[str, ...]) -> str:
    """Returns ``x`` if it is one of ``allowed``, else raises ``ValueError`` naming them."""
    if x not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {names}, got {x!r}")
    return x


def mu_dtype(dtype: Any) -> jnp.dtype | None:
    """``dtype`` canonicalised, or ``None``; raises unless it is a floating dtype."""
    if dtype is None:
        return None
    try:
        canonical = jax.dtypes.canonicalize_dtype(dtype)
    except TypeError:
        raise TypeError(f"mu_dtype must be a floating dtype or None, got {dtype!r}") from None
    if not jnp.issubdtype(canonical, jnp.floating):
        raise ValueError(
            f"mu_dtype must be a floating dtype (e.g. jnp.bfloat16 or jnp.float32), got {dtype!r}"
        )
    return canonical


def inexact_leaves(params: Any, who: str) -> None:
    """Raises ``TypeError`` naming the first leaf of ``params`` that is not floating or
    complex (an integer step counter, a boolean mask): they have no gradient to follow."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{who}: the parameter at {jax.tree_util.keystr(path)} has dtype {dtype}; "
                "only floating and complex leaves can be optimized. Leave the others out, "
                "e.g. optax.masked(tx, mask) with False for them, or pass only the trainable "
                "collection (nnx.state(model, nnx.Param))"
            )


def same_shapes(updates: Any, state_tree: Any, who: str) -> None:
    """Raises ``ValueError`` when ``updates`` is not shaped like ``state_tree`` (a tree built
    from the params): the params' structure is the one expected, the updates' the one present.
    Masked-out leaves (``optax.MaskedNode``) and NNX variables count as leaves of the state."""
    with_paths, treedef, variable = flatten(state_tree)
    try:
        columns = treedef.flatten_up_to(updates)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{who}: the updates (present) are not shaped like the params the state was built "
            f"for (expected): {error}"
        ) from None
    for (path, s), u in zip(with_paths, columns, strict=True):
        s, u = unwrap(s, variable), unwrap(u, variable)
        if is_masked(s) or is_masked(u):
            continue
        if jnp.shape(u) != jnp.shape(s):
            raise ValueError(
                f"{who}: the update at {jax.tree_util.keystr(path)} has shape {jnp.shape(u)}, "
                f"but its parameter has shape {jnp.shape(s)}"
            )


def warn(message: str) -> None:
    """A ``UserWarning`` attributed to the first caller outside this package."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2  # level 2 is the caller of warn()
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == (
        package
    ):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)
