"""Construction-time checks of hyperparameters, shared by every factory.

A hyperparameter is *static* when it is a Python or NumPy number; then it is checked here, and
the transformations may take shortcuts on its value (``c2 == 0`` skips the Laplacian). Anything
else (a jax array, possibly traced by ``optax.inject_hyperparams``) is *dynamic*: it cannot be
checked on the host without a sync, and the transformations handle every value with
``jnp.where``.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp


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
    return static_value(x)


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
