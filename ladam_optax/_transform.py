"""The scaling transformations of the LAdam family and their states.

``scale_by_ladam``, ``scale_by_ladagrad`` and ``scale_by_lrmsprop`` turn gradients into update
directions (learning rate not yet applied); ``add_weight_diffusion`` is the link that follows the
learning rate in ``mode="weight_lap"``. The aliases in ``_alias.py`` chain them.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from ladam_optax import _checks
from ladam_optax._laplacian import (
    check_stencil,
    folded_shape,
    periodic_laplacian,
    resolve_implementation,
)

MODES = ("variance_lap", "update_lap", "weight_lap", "wave_variance")

Gate = bool | jax.Array


class ScaleByLAdamState(NamedTuple):
    """State of :func:`scale_by_ladam`: the Adam moments.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment (EMA of gradients), in ``mu_dtype`` or the parameters' dtype.
      nu: second moment (EMA of squared gradients), in the parameters' dtype. The Laplacian
        smoothing is applied to its bias-corrected value on the fly and never stored.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


class ScaleByWaveLAdamState(NamedTuple):
    """State of :func:`scale_by_ladam` with ``mode="wave_variance"``.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment, in ``mu_dtype`` or the parameters' dtype.
      nu: the wave-driven variance field ``v_t`` (no EMA, no bias correction).
      nu_prev: ``v_{t-1}``, for the leapfrog step.
      e0_sq: per leaf, the squared rest energy ``E0^2``: ``wave_E0**2``, or when
        ``wave_E0 == 0`` the first step's ``mean(g^2)`` (array state, no host sync).
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_prev: optax.Updates
    e0_sq: optax.Updates


class ScaleByLAdaGradState(NamedTuple):
    """State of :func:`scale_by_ladagrad`.

    Attributes:
      sum_of_squares: running sum of squared gradients (unsmoothed), in the parameters' dtype.
    """

    sum_of_squares: optax.Updates


class ScaleByLRMSPropState(NamedTuple):
    """State of :func:`scale_by_lrmsprop`.

    Attributes:
      nu: EMA of squared gradients (unsmoothed), in the parameters' dtype.
    """

    nu: optax.Updates


def _compute_dtype(dtype: Any) -> jnp.dtype:
    """At least float32: the ``c2 * lap(v)`` correction rounds away in bf16."""
    return jnp.dtype(dtype) if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)


def _cast(x: Any, dtype: Any) -> jax.Array | np.ndarray:
    """``x`` as a scalar of ``dtype``: a NumPy constant when static, a cast array otherwise.

    Typed constants let the update use ``lax`` ops directly, which trace several times
    faster than ``jnp``'s promoting wrappers (this keeps the first compile cheap).
    """
    value = _checks.static_value(x)
    return np.array(value, dtype) if value is not None else jnp.asarray(x).astype(dtype)


def _one_minus(x: Any, dtype: Any) -> jax.Array | np.ndarray:
    """``1 - x`` as a scalar of ``dtype`` (for a static ``x``, computed in float64 first)."""
    value = _checks.static_value(x)
    if value is not None:
        return np.array(1.0 - value, dtype)
    return lax.sub(np.array(1.0, dtype), _cast(x, dtype))


def _as(x: jax.Array, dtype: Any) -> jax.Array:
    return x if x.dtype == dtype else lax.convert_element_type(x, dtype)


def smoothing_gate(c2: Any, min_spatial_size: Any, size: int) -> Gate:
    """Whether the reference smooths a leaf of ``size`` elements (its ``use_lap`` flag).

    ``c2 > 0 and size >= min_spatial_size``: a Python bool when both are static, so that the
    Laplacian is left out of the compiled program where it is off; a traced bool otherwise.
    """
    c2_value = _checks.static_value(c2)
    min_value = _checks.static_value(min_spatial_size)
    if c2_value is not None and min_value is not None:
        return c2_value > 0 and size >= min_value
    if c2_value == 0.0:
        return False
    return (jnp.asarray(c2) > 0) & (size >= jnp.asarray(min_spatial_size))


def smooth(
    x: jax.Array,
    c2: Any,
    gate: Gate,
    stencil: str,
    impl: str,
    floor: Any = None,
    divisor: Any = None,
) -> jax.Array:
    """``max((x + c2 * lap(x)) / divisor, floor)`` where ``gate`` holds, ``x / divisor`` elsewhere.

    The reference clamps at ``floor`` whenever it smooths a leaf, even one whose Laplacian is
    zero because of its shape, so the clamp follows ``gate`` and not the shape. ``divisor``
    (a scalar) comes after the stencil: the Laplacian is linear, and taking it of ``x`` itself
    (a state leaf that is stored anyway) rather than of ``x / divisor`` spares XLA a full-size
    temporary for the stencil to read.
    """

    def plain():
        return x if divisor is None else lax.div(x, divisor)

    if gate is False:
        return plain()
    smoothed = x
    if folded_shape(x.shape) is not None:
        diffusion = lax.mul(periodic_laplacian(x, stencil, impl), _cast(c2, x.dtype))
        smoothed = lax.add(x, diffusion)
    if divisor is not None:
        smoothed = lax.div(smoothed, divisor)
    if floor is not None:
        smoothed = lax.max(smoothed, _cast(floor, x.dtype))
    if gate is True:
        return smoothed
    return jnp.where(gate, smoothed, plain())


def _bias_correction(decay: Any, count: jax.Array, dtype: Any) -> jax.Array:
    """``1 - decay**count``, as ``-expm1(count * log(decay))``.

    With a static ``decay`` the logarithm is taken in float64 on the host, so the correction is
    accurate to the last bit of ``dtype`` like the reference's (which computes it in float64),
    instead of losing ~1e-5 to the cancellation in ``1 - 0.999**t`` in float32.
    """
    t = count.astype(dtype)
    value = _checks.static_value(decay)
    if value is None:
        # log(decay) as log1p(decay - 1): decay - 1 is exact (Sterbenz) and log1p keeps its
        # digits, where log(x) near 1 loses ~1e-4 relative in float32.
        return -jnp.expm1(t * jnp.log1p(jnp.asarray(decay).astype(dtype) - 1.0))
    if value == 0.0:
        return jnp.ones([], dtype)
    return -jnp.expm1(t * math.log(value))


def _ema(g: jax.Array, moment: jax.Array, decay: Any, square: bool) -> jax.Array:
    """``decay * moment + (1 - decay) * g`` (``g**2`` if ``square``) in >= float32, stored in
    moment's dtype."""
    dtype = _compute_dtype(g.dtype)
    g = _as(g, dtype)
    if square:
        g = lax.mul(g, g)
    new = lax.add(
        lax.mul(_cast(decay, dtype), _as(moment, dtype)), lax.mul(_one_minus(decay, dtype), g)
    )
    return _as(new, moment.dtype)


def _check_common(eps: Any, c2: Any, stencil: str, min_spatial_size: Any) -> None:
    _checks.non_negative("eps", eps)
    _checks.non_negative("c2", c2)
    check_stencil(stencil)
    _checks.min_spatial_size(min_spatial_size)


def scale_by_ladam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    c2: float = 1e-4,
    mode: str = "variance_lap",
    stencil: str = "9point",
    min_spatial_size: int = 16,
    mu_dtype: Any | None = None,
    *,
    wave_dt: float = 0.1,
    wave_kappa: float = 0.1,
    wave_E0: float = 0.0,
    wave_damping: float = 0.5,
    laplacian_impl: str = "auto",
) -> optax.GradientTransformationExtraArgs:
    """Rescales updates by Adam's moments, with the second moment smoothed by a Laplacian.

    .. math::

      m_t = \\beta_1 m_{t-1} + (1 - \\beta_1) g_t, \\quad
      v_t = \\beta_2 v_{t-1} + (1 - \\beta_2) g_t^2, \\quad
      \\hat m_t = m_t / (1 - \\beta_1^t), \\quad \\hat v_t = v_t / (1 - \\beta_2^t)

    ``mode="variance_lap"``:
    :math:`u_t = \\hat m_t / (\\sqrt{\\max(\\hat v_t + c_2 \\Delta \\hat v_t, \\epsilon)}
    + \\epsilon)`;
    ``mode="update_lap"``: :math:`a_t = \\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)`,
    :math:`u_t = a_t + c_2 \\Delta a_t`. ``\\Delta`` is :func:`ladam_optax.laplacian`, applied
    only to leaves with at least ``min_spatial_size`` elements and only when ``c2 > 0``;
    elsewhere the update is exactly Adam's.

    ``mode="wave_variance"`` (``ladam`` 0.4.1) replaces the EMA of ``v`` by a damped wave
    equation, leapfrogged: :math:`v_1 = \\max(g_1^2, \\epsilon)` and
    :math:`v_{t+1} = \\max((2 - d) v_t - (1 - d) v_{t-1} + \\Delta t^2 (c_2 \\Delta v_t
    - \\kappa (g^2 - E_0^2)), \\epsilon)`, then :math:`u_t = \\hat m_t / (\\sqrt{v_t} + \\epsilon)`
    (state :class:`ScaleByWaveLAdamState`; ``b2`` is unused).

    ``mode="weight_lap"`` diffuses the *parameters* after the learning-rate step, so it cannot
    live in a transformation that runs before the learning rate: use
    ``ladam(..., mode="weight_lap")``, which chains :func:`add_weight_diffusion` after it.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment, and the floor of the smoothed variance.
      c2: Laplacian coupling strength, >= 0.
      mode: ``"variance_lap"`` (default) or ``"update_lap"``. Static.
      stencil: ``"9point"`` (default) or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements are not smoothed.
      mu_dtype: dtype of the first moment; ``None`` keeps the parameters' dtype. Static.
      wave_dt: ``wave_variance`` time step, >= 0.
      wave_kappa: ``wave_variance`` source strength, >= 0.
      wave_E0: ``wave_variance`` rest level (0: the first step's RMS gradient), >= 0.
      wave_damping: ``wave_variance`` damping ``d``, in [0, 1].
      laplacian_impl: ``"auto"``, ``"slices"``, ``"shifts"``, ``"padded"`` or ``"conv"``; see
        :func:`laplacian`. Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByLAdamState`
      (:class:`ScaleByWaveLAdamState` for ``wave_variance``).

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> import ladam_optax
      >>> tx = optax.chain(ladam_optax.scale_by_ladam(c2=1e-4), optax.scale(-1e-3))
      >>> params = {"w": jnp.ones((8, 8))}
      >>> updates, state = tx.update(params, tx.init(params))
      >>> updates["w"].shape
      (8, 8)

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``LAdam``, https://pypi.org/project/ladam/;
      S. Osher et al., Laplacian smoothing gradient descent, 2018, arXiv:1806.06317.
    """
    _checks.unit_interval("b1", b1)
    _checks.unit_interval("b2", b2)
    _check_common(eps, c2, stencil, min_spatial_size)
    _checks.choice("mode", mode, MODES)
    if mode == "weight_lap":
        raise ValueError(
            "mode='weight_lap' diffuses the parameters after the learning-rate step, so "
            "scale_by_ladam cannot apply it: use ladam(..., mode='weight_lap'), or chain "
            "scale_by_ladam(c2=0.0), optax.scale_by_learning_rate(lr) and "
            "add_weight_diffusion(c2)"
        )
    impl = resolve_implementation(laplacian_impl)
    mu_dtype = None if mu_dtype is None else jax.dtypes.canonicalize_dtype(mu_dtype)
    if mode == "wave_variance":
        for name, value in (("wave_dt", wave_dt), ("wave_kappa", wave_kappa), ("wave_E0", wave_E0)):
            _checks.non_negative(name, value)
        _checks.non_negative("wave_damping", wave_damping)
        if (_checks.static_value(wave_damping) or 0.0) > 1.0:
            raise ValueError(f"wave_damping must be in [0, 1], got {wave_damping!r}")
        wave = (wave_dt, wave_kappa, wave_E0, wave_damping)
        return _scale_by_wave_ladam(b1, eps, c2, stencil, min_spatial_size, mu_dtype, wave, impl)

    def init_fn(params):
        return ScaleByLAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params, dtype=mu_dtype),
            nu=optax.tree.zeros_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = optax.safe_increment(state.count)

        @functools.cache
        def corrections(dtype):  # once per dtype, not per leaf
            return _bias_correction(b1, count, dtype), _bias_correction(b2, count, dtype)

        def direction(g, m, v):
            dtype = _compute_dtype(g.dtype)
            bc1, bc2 = corrections(dtype)
            m_hat, v = lax.div(_as(m, dtype), bc1), _as(v, dtype)
            gate = smoothing_gate(c2, min_spatial_size, g.size)
            eps_ = _cast(eps, dtype)
            if mode == "variance_lap":
                v_hat = smooth(v, c2, gate, stencil, impl, floor=eps, divisor=bc2)
                u = lax.div(m_hat, lax.add(lax.sqrt(v_hat), eps_))
            else:
                u = lax.div(m_hat, lax.add(lax.sqrt(lax.div(v, bc2)), eps_))
                u = smooth(u, c2, gate, stencil, impl)
            return _as(u, g.dtype)

        mu = jax.tree.map(lambda g, m: _ema(g, m, b1, False), updates, state.mu)
        nu = jax.tree.map(lambda g, v: _ema(g, v, b2, True), updates, state.nu)
        updates = jax.tree.map(direction, updates, mu, nu)
        return updates, ScaleByLAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _scale_by_wave_ladam(b1, eps, c2, stencil, min_spatial_size, mu_dtype, wave, impl):
    """``scale_by_ladam(mode="wave_variance")``: see its docstring."""
    dt, kappa, rest_level, damping = wave

    def init_fn(params):
        return ScaleByWaveLAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params, dtype=mu_dtype),
            nu=optax.tree.zeros_like(params),
            nu_prev=optax.tree.zeros_like(params),
            e0_sq=jax.tree.map(lambda p: jnp.zeros([], p.dtype), params),
        )

    def leaf(g, m, v, v_prev, e0_sq, count):
        dtype, store = _compute_dtype(g.dtype), v.dtype
        first = count == 1
        g2 = jnp.square(g.astype(dtype))
        v, v_prev = v.astype(dtype), v_prev.astype(dtype)
        seeded = jnp.maximum(g2, _cast(eps, dtype))
        level = _checks.static_value(rest_level)
        mean_g2 = jnp.mean(g2) if g.size else jnp.zeros([], dtype)
        if level is not None:
            e0_first = level * level if level else mean_g2
        else:
            level_ = jnp.asarray(rest_level).astype(dtype)
            e0_first = jnp.where(level_ != 0, level_ * level_, mean_g2)
        e0_sq = jnp.where(first, e0_first, e0_sq.astype(dtype))
        gate = smoothing_gate(c2, min_spatial_size, g.size)
        accel = -_cast(kappa, dtype) * (g2 - e0_sq)
        if gate is not False and folded_shape(g.shape) is not None:
            diffusion = _cast(c2, dtype) * periodic_laplacian(v, stencil, impl)
            accel = accel + (diffusion if gate is True else jnp.where(gate, diffusion, 0.0))
        d, step = _cast(damping, dtype), _cast(dt, dtype)
        leapfrog = (2.0 - d) * v - (1.0 - d) * v_prev + step * step * accel
        v_new = jnp.where(first, seeded, jnp.maximum(leapfrog, _cast(eps, dtype)))
        v_prev_new = jnp.where(first, seeded, v)
        m_hat = m.astype(dtype) / _bias_correction(b1, count, dtype)
        u = m_hat / (jnp.sqrt(v_new) + _cast(eps, dtype))
        return u.astype(g.dtype), v_new.astype(store), v_prev_new.astype(store), e0_sq

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = optax.safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: _ema(g, m, b1, False), updates, state.mu)
        treedef = jax.tree.structure(updates)
        trees = (updates, mu, state.nu, state.nu_prev, state.e0_sq)
        columns = zip(*(treedef.flatten_up_to(t) for t in trees), strict=True)
        results = [leaf(*column, count) for column in columns]
        u, nu, nu_prev, e0_sq = (treedef.unflatten([r[i] for r in results]) for i in range(4))
        e0_sq = jax.tree.map(lambda e, old: e.astype(old.dtype), e0_sq, state.e0_sq)
        return u, ScaleByWaveLAdamState(count, mu, nu, nu_prev, e0_sq)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def add_weight_diffusion(
    c2: float = 1e-4,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    *,
    laplacian_impl: str = "auto",
) -> optax.GradientTransformationExtraArgs:
    """Diffuses the parameters the update would produce: the ``weight_lap`` step of LAdam.

    .. math::

      p' = p + u, \\quad u_{\\text{new}} = u + c_2 \\Delta p'

    so that ``optax.apply_updates`` yields ``p' + c2 * lap(p')``. (No clamp: the reference
    diffuses weights without one.) Place it *after* the
    learning rate (``u`` must already be the full step). Leaves with fewer than
    ``min_spatial_size`` elements, or every leaf when ``c2 == 0``, pass through unchanged.

    Args:
      c2: diffusion strength, >= 0.
      stencil: ``"9point"`` (default) or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements are not diffused.
      laplacian_impl: ``"auto"``, ``"slices"``, ``"padded"`` or ``"conv"``. Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with an empty state; its ``update`` needs
      ``params``.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> import ladam_optax
      >>> tx = ladam_optax.add_weight_diffusion(c2=0.1)
      >>> params = {"w": jnp.eye(4)}
      >>> updates, _ = tx.update({"w": jnp.zeros((4, 4))}, tx.init(params), params)
      >>> round(float(updates["w"][0, 0]), 6)
      -0.3

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``LAdam(mode="weight_lap")``.
    """
    _checks.non_negative("c2", c2)
    check_stencil(stencil)
    _checks.min_spatial_size(min_spatial_size)
    impl = resolve_implementation(laplacian_impl)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "mode='weight_lap' (add_weight_diffusion) diffuses the parameters and needs "
                "them: call tx.update(grads, opt_state, params)"
            )

        def diffuse(u, p):
            gate = smoothing_gate(c2, min_spatial_size, u.size)
            if gate is False or folded_shape(u.shape) is None:
                return u
            dtype = _compute_dtype(u.dtype)
            moved = p.astype(dtype) + u.astype(dtype)
            # u + c2 lap(p + u), not (p + u + c2 lap(p + u)) - p: no cancellation against p.
            diffused = u.astype(dtype) + _cast(c2, dtype) * periodic_laplacian(moved, stencil, impl)
            if gate is not True:
                diffused = jnp.where(gate, diffused, u.astype(dtype))
            return diffused.astype(u.dtype)

        return jax.tree.map(diffuse, updates, params), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_ladagrad(
    eps: float = 1e-10,
    c2: float = 1e-4,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    *,
    laplacian_impl: str = "auto",
) -> optax.GradientTransformationExtraArgs:
    """Rescales updates by the root of a Laplacian-smoothed sum of squared gradients.

    .. math::

      s_t = s_{t-1} + g_t^2, \\quad
      u_t = g_t / (\\sqrt{\\max(s_t + c_2 \\Delta s_t, 0)} + \\epsilon)

    The accumulator starts at zero, as in PyTorch (``optax.adagrad`` starts at 0.1).

    Args:
      eps: added to the root of the accumulator.
      c2: Laplacian coupling strength, >= 0.
      stencil: ``"9point"`` (default) or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements are not smoothed.
      laplacian_impl: ``"auto"``, ``"slices"``, ``"padded"`` or ``"conv"``. Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByLAdaGradState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import ladam_optax
      >>> tx = ladam_optax.scale_by_ladagrad()
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.full(3, 2.0)}, tx.init(params))
      >>> updates["w"]
      Array([1., 1., 1.], dtype=float32)

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``LAdaGrad``.
    """
    _check_common(eps, c2, stencil, min_spatial_size)
    impl = resolve_implementation(laplacian_impl)

    def init_fn(params):
        return ScaleByLAdaGradState(sum_of_squares=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def accumulate(g, s):
            g = g.astype(_compute_dtype(g.dtype))
            return (s.astype(g.dtype) + g * g).astype(s.dtype)

        sum_of_squares = jax.tree.map(accumulate, updates, state.sum_of_squares)
        updates = jax.tree.map(
            lambda g, s: _rescale(g, s, eps, c2, stencil, min_spatial_size, impl),
            updates,
            sum_of_squares,
        )
        return updates, ScaleByLAdaGradState(sum_of_squares=sum_of_squares)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _rescale(g, second_moment, eps, c2, stencil, min_spatial_size, impl):
    """``g / (sqrt(max(s + c2 lap s, 0)) + eps)``, the shared step of LAdaGrad and LRMSProp."""
    dtype = _compute_dtype(g.dtype)
    gate = smoothing_gate(c2, min_spatial_size, g.size)
    smoothed = smooth(_as(second_moment, dtype), c2, gate, stencil, impl, floor=0.0)
    u = lax.div(_as(g, dtype), lax.add(lax.sqrt(smoothed), _cast(eps, dtype)))
    return _as(u, g.dtype)


def scale_by_lrmsprop(
    decay: float = 0.99,
    eps: float = 1e-8,
    c2: float = 1e-4,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    *,
    laplacian_impl: str = "auto",
) -> optax.GradientTransformationExtraArgs:
    """Rescales updates by the root of a Laplacian-smoothed EMA of squared gradients.

    .. math::

      \\nu_t = d\\, \\nu_{t-1} + (1 - d) g_t^2, \\quad
      u_t = g_t / (\\sqrt{\\max(\\nu_t + c_2 \\Delta \\nu_t, 0)} + \\epsilon)

    ``eps`` is added outside the root, as in PyTorch's RMSprop.

    Args:
      decay: EMA decay ``d`` (PyTorch's ``alpha``), in [0, 1).
      eps: added to the root of the average.
      c2: Laplacian coupling strength, >= 0.
      stencil: ``"9point"`` (default) or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements are not smoothed.
      laplacian_impl: ``"auto"``, ``"slices"``, ``"padded"`` or ``"conv"``. Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByLRMSPropState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import ladam_optax
      >>> tx = ladam_optax.scale_by_lrmsprop(decay=0.75, eps=0.0)
      >>> params = {"w": jnp.ones(2)}
      >>> updates, state = tx.update({"w": jnp.ones(2)}, tx.init(params))
      >>> updates["w"]
      Array([2., 2.], dtype=float32)

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``LRMSProp``.
    """
    _checks.unit_interval("decay", decay)
    _check_common(eps, c2, stencil, min_spatial_size)
    impl = resolve_implementation(laplacian_impl)

    def init_fn(params):
        return ScaleByLRMSPropState(nu=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        nu = jax.tree.map(lambda g, v: _ema(g, v, decay, True), updates, state.nu)
        updates = jax.tree.map(
            lambda g, v: _rescale(g, v, eps, c2, stencil, min_spatial_size, impl), updates, nu
        )
        return updates, ScaleByLRMSPropState(nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
