"""Does the Laplacian do anything here? How far LAdam's smoothing moves each step from Adam's."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ladam_optax import _checks
from ladam_optax._folds import (
    FoldSpec,
    check_fold_spec,
    map_with_folds,
    resolve_folds,
    unwrap_variables,
)
from ladam_optax._laplacian import check_stencil, folded_shape, periodic_laplacian
from ladam_optax._transform import ScaleByLAdamState, _bias_correction, smoothing_gate


class SmoothingEffect(NamedTuple):
    """How much the Laplacian changes one leaf's steps (float32 scalars).

    Attributes:
      median: the median over the leaf's entries of the relative change of the effective step
        against Adam's on the same moments, ``|(sqrt(v) + eps) / (sqrt(max(v + c2 lap(v),
        eps)) + eps) - 1|`` with ``v`` the bias-corrected second moment.
      p99: its 99th percentile.
      max: its maximum.
      clamped_fraction: the fraction of entries whose smoothed variance is at or below the
        ``eps`` floor (where ``c2`` is too large for the leaf's variance field).
    """

    median: jax.Array
    p99: jax.Array
    max: jax.Array
    clamped_fraction: jax.Array


def _is_ladam_state(x: Any) -> bool:
    return isinstance(x, ScaleByLAdamState)


def _find_state(opt_state: Any) -> ScaleByLAdamState:
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_ladam_state) if _is_ladam_state(s)]
    if not found:
        raise ValueError(
            "opt_state holds no ScaleByLAdamState: pass the state of ladam, ladamw or "
            "scale_by_ladam (variance_lap or update_lap; wave_variance keeps another state)"
        )
    if len(found) > 1:
        raise ValueError(
            f"opt_state holds {len(found)} ScaleByLAdamState (e.g. optax.partition with several "
            "LAdam groups): pass the one wanted, e.g. opt_state.inner_states['group']"
        )
    return found[0]


def smoothing_effect(
    opt_state: Any,
    c2: jax.typing.ArrayLike,
    *,
    b2: float = 0.999,
    eps: float = 1e-8,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    fold: FoldSpec = None,
) -> Any:
    """How far LAdam's variance smoothing moves each step from Adam's, per leaf.

    Reads the moments in ``opt_state`` and compares the effective step size LAdam takes,
    :math:`1 / (\\sqrt{\\max(\\hat v + c_2 \\Delta \\hat v, \\epsilon)} + \\epsilon)`, with
    Adam's on the same moments, :math:`1 / (\\sqrt{\\hat v} + \\epsilon)`:

    .. math::

      e = \\left| \\frac{\\sqrt{\\hat v} + \\epsilon}
        {\\sqrt{\\max(\\hat v + c_2 \\Delta \\hat v, \\epsilon)} + \\epsilon} - 1 \\right|

    summarised per leaf by :class:`SmoothingEffect` (median, 99th percentile, max, and the
    fraction of entries clamped at the ``eps`` floor). A median of ``1e-4`` means LAdam is Adam
    to four digits there; a clamped fraction above zero means ``c2`` is large enough to
    drive the smoothed variance to its floor. Leaves that are not smoothed (below
    ``min_spatial_size``, or whose field is too small) report zeros.

    Jittable, with no host sync; cheap enough to log every N steps. Pass the hyperparameters
    the optimizer was built with (the defaults are :func:`ladam`'s).

    Args:
      opt_state: an optimizer state holding exactly one :class:`ScaleByLAdamState` (of
        ``ladam``, ``ladamw`` or ``scale_by_ladam``, inside ``optax.chain``,
        ``inject_hyperparams``, ``MultiSteps``, ...), or ``nnx.Optimizer.opt_state``.
      c2: the optimizer's ``c2``.
      b2: the optimizer's ``b2``.
      eps: the optimizer's ``eps``.
      stencil: the optimizer's stencil. Static.
      min_spatial_size: the optimizer's ``min_spatial_size``.
      fold: the optimizer's ``fold`` (a callable sees the second-moment tree, which has the
        params' paths and shapes). Static.

    Returns:
      A pytree shaped like the parameters with a :class:`SmoothingEffect` at each leaf.

    Raises:
      ValueError: when ``opt_state`` holds no ``ScaleByLAdamState``, or more than one.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ladam_optax
      >>> params = {"w": jnp.ones((32, 32))}
      >>> tx = ladam_optax.ladam(1e-3, c2=1e-2)
      >>> grads = {"w": jax.random.normal(jax.random.key(0), (32, 32))}
      >>> _, state = tx.update(grads, tx.init(params), params)
      >>> effect = ladam_optax.smoothing_effect(state, c2=1e-2)
      >>> bool(0.0 < effect["w"].median < 0.1), float(effect["w"].clamped_fraction)
      (True, 0.0)
    """
    _checks.non_negative("c2", c2)
    _checks.unit_interval("b2", b2)
    _checks.non_negative("eps", eps)
    check_stencil(stencil)
    _checks.min_spatial_size(min_spatial_size)
    check_fold_spec(fold)
    state = unwrap_variables(_find_state(opt_state))
    nu = state.nu

    def leaf(v: jax.Array, leaf_fold) -> SmoothingEffect:
        zero = jnp.zeros([], jnp.float32)
        gate = smoothing_gate(c2, min_spatial_size, v.size)
        if gate is False or v.size == 0 or folded_shape(v.shape, leaf_fold) is None:
            return SmoothingEffect(zero, zero, zero, zero)
        dtype = jnp.promote_types(v.dtype, jnp.float32)
        correction = _bias_correction(b2, state.count, dtype)
        started = state.count > 0
        v_hat = v.astype(dtype) / jnp.where(started, correction, 1.0).astype(dtype)
        c2_ = jnp.asarray(c2, dtype)
        smoothed = v_hat + c2_ * periodic_laplacian(v_hat, stencil, "auto", leaf_fold)
        eps_ = jnp.asarray(eps, dtype)
        ratio = (jnp.sqrt(v_hat) + eps_) / (jnp.sqrt(jnp.maximum(smoothed, eps_)) + eps_)
        effect = jnp.abs(ratio - 1.0).ravel()
        clamped = jnp.mean((smoothed <= eps_).astype(jnp.float32))
        stats = jnp.quantile(effect, jnp.asarray([0.5, 0.99], dtype))
        summary = SmoothingEffect(stats[0], stats[1], jnp.max(effect), clamped)
        on = jnp.asarray(gate) & started
        return SmoothingEffect(*(jnp.where(on, s, 0.0).astype(jnp.float32) for s in summary))

    folds = resolve_folds(fold, nu)
    return map_with_folds(leaf, folds, nu)
