"""Does the Laplacian do anything here? How far the smoothing moves each step from c2 = 0's."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import core

from ladam_optax._transform import (
    ScaleByLAdaGradState,
    ScaleByLAdamState,
    ScaleByLRMSPropState,
    ScaleByWaveLAdamState,
    counterfactual,
)
from ladam_optax._tree import unwrap_variables

# The states of the transformations that smooth (add_weight_diffusion has none of its own).
_SMOOTHING_STATES = (
    ScaleByLAdamState,
    ScaleByWaveLAdamState,
    ScaleByLAdaGradState,
    ScaleByLRMSPropState,
)


class SmoothingEffect(NamedTuple):
    """How much the smoothing changes one leaf's step (float32 scalars).

    Attributes:
      median: the median over the leaf's entries of the relative change of the step against
        the same optimizer's step at ``c2 = 0`` from the same state and gradients,
        ``|u - u_0| / |u_0|`` (0 where both are 0, ``inf`` where only ``u_0`` is).
      p99: its 99th percentile.
      max: its maximum.
      clamped_fraction: the fraction of entries whose step the floor that the smoothing
        switches on changes (``variance_lap``: the smoothed variance floored at ``eps``;
        LAdaGrad, LRMSProp: at 0), i.e. where ``c2`` is too large for the leaf's variance
        field. 0 in modes without such a floor (``update_lap``, ``weight_lap``, the wave
        variance, whose floor does not depend on ``c2``).
    """

    median: jax.Array
    p99: jax.Array
    max: jax.Array
    clamped_fraction: jax.Array


def _update(tx, opt_state, grads, params, extra_args, without: str | None):
    """``tx``'s step from ``opt_state`` (its new state discarded), computed without the
    smoothing or its floor when ``without`` says so; and the transformations that obliged."""
    if without is None:
        return tx.update(grads, opt_state, params, **extra_args)[0], None
    with counterfactual(without) as reached:
        return tx.update(grads, opt_state, params, **extra_args)[0], reached


def _smoothing_states(opt_state: Any) -> int:
    """How many of this package's stateful transformations ``opt_state`` holds, wherever a
    wrapper (chain, partition, inject_hyperparams, MultiSteps, ...) keeps them."""

    def is_state(x: Any) -> bool:
        return isinstance(x, _SMOOTHING_STATES)

    return sum(map(is_state, jax.tree.leaves(opt_state, is_leaf=is_state)))


def _first_non_finite(tree: Any) -> str | None:
    """The path of the first leaf of ``tree`` holding a NaN or inf, when every leaf is concrete
    (``None`` when all are finite, or when any is traced: then it cannot be known here)."""
    leaves = [
        (path, leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    if any(isinstance(leaf, core.Tracer) for _, leaf in leaves):
        return None
    for path, leaf in leaves:
        if not bool(jnp.all(jnp.isfinite(leaf))):
            return jax.tree_util.keystr(path)
    return None


def _replicated(x: jax.Array) -> jax.Array:
    """``x`` whole on every device where its type says it is sharded (mesh axes of type
    Explicit): the quantiles sort the leaf, and a sort needs the whole axis."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    if not isinstance(sharding, jax.sharding.NamedSharding):
        return x
    if all(axis is None for axis in sharding.spec):
        return x
    return jax.sharding.reshard(x, sharding.update(spec=jax.sharding.PartitionSpec()))


def _summary(step: jax.Array, plain: jax.Array, unfloored: jax.Array) -> SmoothingEffect:
    if step.size == 0:
        return SmoothingEffect(*[jnp.zeros([], jnp.float32)] * 4)
    wide = jnp.promote_types(step.dtype, jnp.float32)  # bf16 steps subtracted in float32
    change = _replicated(jnp.abs(step.astype(wide) - plain.astype(wide))).ravel()
    size = _replicated(jnp.abs(plain.astype(wide))).ravel()
    dtype = size.dtype
    relative = jnp.where(
        size > 0, change / jnp.where(size > 0, size, 1), jnp.where(change > 0, jnp.inf, 0.0)
    )
    quantiles = jnp.quantile(relative, jnp.asarray([0.5, 0.99], dtype))
    # The two steps are separate computations: on a sharded leaf XLA may round them apart by an
    # ulp or two, so "changed by the floor" means by more than a few of the step's ulps (or to
    # NaN: below the floor the unfloored root is of a negative number).
    slack = 8 * jnp.finfo(step.dtype).eps * jnp.abs(step.astype(wide))
    moved = ~(jnp.abs(unfloored.astype(wide) - step.astype(wide)) <= slack)
    clamped = jnp.mean(_replicated(moved).ravel().astype(dtype))
    finite = jnp.all(jnp.isfinite(step)) & jnp.all(jnp.isfinite(plain))
    summary = (quantiles[0], quantiles[1], jnp.max(relative), clamped)
    return SmoothingEffect(*(jnp.where(finite, s, jnp.nan).astype(jnp.float32) for s in summary))


def smoothing_effect(
    tx: optax.GradientTransformation | optax.MultiSteps,
    opt_state: Any,
    grads: Any,
    params: Any = None,
    **extra_args: Any,
) -> Any:
    """How far the Laplacian smoothing moves each leaf's step from the step at ``c2 = 0``.

    Takes the step ``u = tx.update(grads, opt_state, params)`` would take, and the step
    ``u_0`` the same optimizer takes at ``c2 = 0`` from the same state and gradients (every
    LAdam-family transformation inside ``tx`` run without its smoothing: the same update
    rule, hyperparameters and folds, so nothing has to be repeated and nothing can disagree),
    and summarises per leaf the relative change

    .. math::

      e = \\frac{|u - u_0|}{|u_0|}

    by :class:`SmoothingEffect` (median, 99th percentile, max, and the fraction of entries
    whose step the smoothing's floor changes). This is the measure for every optimizer and
    mode: :func:`ladam`, :func:`ladamw` (``variance_lap``, ``update_lap``, ``weight_lap``),
    :func:`wave_ladam`, :func:`wave_ladamw`, :func:`ladagrad`, :func:`lrmsprop`, and chains
    holding their transformations, inside ``optax.chain``, ``optax.MultiSteps`` (between
    its boundaries both steps are zero: 0), ``optax.inject_hyperparams`` (the ``c2`` in the
    state is the one measured), ``optax.partition`` or ``nnx.Optimizer``. A median of
    ``1e-4`` means half of a leaf's entries step within 1e-4 (relative) of Adam's (or
    AdaGrad's, RMSProp's) step; the 99th percentile and the max say how far the rest move, and
    they can be far larger (near the ``eps`` floor a few entries' steps change by O(1)). Leaves
    that are not smoothed report zeros. A stacked leaf (a fold with batch axes,
    :func:`stacked`) reports one summary over all its layers' entries together, each layer
    smoothed as its own field; for one layer's figures, slice the steps yourself. The state is
    not advanced.

    Jittable (``jax.jit(lambda s, g, p: smoothing_effect(tx, s, g, p))``) and as costly as
    three updates: log it every N steps.

    Args:
      tx: the transformation ``opt_state`` belongs to (``nnx.Optimizer.tx`` for NNX).
      opt_state: its state (``nnx.Optimizer.opt_state`` works as it is).
      grads: the gradients of the step to measure, shaped like the params.
      params: the params, where ``tx`` needs them (weight decay, ``weight_lap``, a callable
        ``fold``): for NNX, ``nnx.state(model, nnx.Param)``.
      **extra_args: passed on to ``tx.update``.

    Returns:
      A pytree shaped like the updates with a :class:`SmoothingEffect` at each leaf.

    Raises:
      TypeError: when ``tx`` is not an optax transformation (e.g. the state passed first, as
        the old ``smoothing_effect(opt_state, c2)`` did).
      ValueError: when ``tx`` holds none of this package's transformations (nothing to
        measure), when any of those ``opt_state`` holds is hidden behind an ``update``
        compiled apart (its change cannot be measured), or, with concrete
        inputs, when the state, the gradients or a step is not finite (a diverged run). Under
        ``jax.jit`` a leaf whose step is not finite reports NaN in every field instead.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ladam_optax
      >>> params = {"w": jnp.ones((32, 32))}
      >>> tx = ladam_optax.ladam(1e-3, c2=1e-2)
      >>> grads = {"w": jax.random.normal(jax.random.key(0), (32, 32))}
      >>> _, state = tx.update(grads, tx.init(params), params)
      >>> effect = ladam_optax.smoothing_effect(tx, state, grads, params)
      >>> bool(0.0 < effect["w"].median < 0.1), float(effect["w"].clamped_fraction)
      (True, 0.0)
    """
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            "smoothing_effect(tx, opt_state, grads, params): tx must be the optax "
            "transformation opt_state belongs to (e.g. ladam_optax.ladam(...), or "
            f"nnx.Optimizer.tx), got {type(tx).__name__}"
        )
    opt_state, grads, params = unwrap_variables((opt_state, grads, params))
    for what, tree in (("optimizer state is", opt_state), ("gradients are", grads)):
        where = _first_non_finite(tree)
        if where is not None:
            raise ValueError(
                f"smoothing_effect: the {what} not finite at {where} (NaN or inf): the run "
                "has diverged, and no step change can be measured from it"
            )
    step, _ = _update(tx, opt_state, grads, params, extra_args, None)
    plain, reached = _update(tx, opt_state, grads, params, extra_args, "smoothing")
    if not reached:
        raise ValueError(
            "smoothing_effect: tx.update ran none of ladam_optax's transformations (ladam, "
            "ladamw, wave_ladam, wave_ladamw, ladagrad, lrmsprop or their scale_by_* and "
            "add_weight_diffusion links), so there is no smoothing to measure; pass the "
            "transformation the state belongs to, with an update that is not compiled apart "
            "(jit the call to smoothing_effect instead)"
        )
    ran = sum(who != "add_weight_diffusion" for who in reached)
    held = _smoothing_states(opt_state)
    if ran < held:
        raise ValueError(
            f"smoothing_effect: opt_state holds {held} of ladam_optax's transformations but "
            f"tx.update ran {ran} of them while measuring: the others are hidden behind an "
            "update compiled apart (e.g. jax.jit(tx.update) inside a chain or partition), and "
            "their leaves would read as unchanged; jit the call to smoothing_effect instead"
        )
    unfloored, _ = _update(tx, opt_state, grads, params, extra_args, "floor")
    where = _first_non_finite(step) or _first_non_finite(plain)
    if where is not None:
        raise ValueError(
            f"smoothing_effect: the step is not finite at {where} (NaN or inf), with or "
            "without the smoothing: no step change can be measured there"
        )
    return jax.tree.map(_summary, step, plain, unfloored)
