"""The scaling transformations of the LAdam family and their states.

``scale_by_ladam``, ``scale_by_wave_ladam``, ``scale_by_ladagrad`` and ``scale_by_lrmsprop``
turn gradients into update directions (learning rate not yet applied); ``add_weight_diffusion``
is the link that follows the learning rate in ``mode="weight_lap"``. The aliases in
``_alias.py`` chain them.

The updates use ``lax`` ops on typed scalars (:func:`_scalar`): they trace several times faster
than ``jnp``'s promoting wrappers, which keeps the first compile cheap.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from ladam_optax import _checks
from ladam_optax._folds import FoldSpec, check_fold_spec, map_with_folds, resolve_folds
from ladam_optax._laplacian import (
    Fold,
    batch_shape,
    check_implementation,
    check_stencil,
    folded_shape,
    periodic_laplacian,
    slice_size,
)

MODES = ("variance_lap", "update_lap", "weight_lap")

Gate = bool | jax.Array


class ScaleByLAdamState(NamedTuple):
    """State of :func:`scale_by_ladam`: the Adam moments.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment (EMA of gradients), in ``mu_dtype`` or the parameters' dtype.
      nu: second moment (EMA of squared gradients), in the parameters' dtype. The Laplacian
        smoothing is applied to its bias-corrected value on the fly and never stored.
    """

    count: jax.Array  # pyright: ignore[reportIncompatibleMethodOverride]  (optax's name)
    mu: optax.Updates
    nu: optax.Updates


class ScaleByWaveLAdamState(NamedTuple):
    """State of :func:`scale_by_wave_ladam`.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment, in ``mu_dtype`` or the parameters' dtype.
      nu: the wave-driven variance field ``v_t`` (no EMA, no bias correction).
      nu_prev: ``v_{t-1}``, for the leapfrog step.
      e0_sq: per leaf, the squared rest energy ``E0^2``: ``wave_E0**2``, or when
        ``wave_E0 == 0`` the first step's ``mean(g^2)`` (array state, no host sync). A
        scalar, or for a leaf with batch axes (:class:`Fold`'s ``batch``, :func:`stacked`)
        one per field, shaped like the leaf with its other axes 1.
    """

    count: jax.Array  # pyright: ignore[reportIncompatibleMethodOverride]  (optax's name)
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


# --- dtypes and scalars ------------------------------------------------------------------------


def _compute_dtype(dtype: Any) -> jnp.dtype:
    """At least float32 (complex dtypes stay complex): the ``c2 * lap(v)`` correction rounds
    away in bf16."""
    return jnp.dtype(dtype) if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)


def _real_dtype(dtype: Any) -> jnp.dtype:
    """The dtype of the second moment of a leaf of ``dtype``: the real one of a complex dtype."""
    return jnp.dtype(jnp.finfo(dtype).dtype)


def _abs_sq(g: jax.Array) -> jax.Array:
    """``|g|^2``, real: the second moment of a complex gradient, as in optax."""
    if jnp.issubdtype(g.dtype, jnp.complexfloating):
        re, im = lax.real(g), lax.imag(g)
        return lax.add(lax.mul(re, re), lax.mul(im, im))
    return lax.mul(g, g)


def _zeros_real(params: Any) -> Any:
    """Zeros like ``params`` in each leaf's real dtype (second-moment state)."""
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=_real_dtype(p.dtype)), params)


def _mu_zeros(params: Any, mu_dtype: Any) -> Any:
    """First-moment state: ``mu_dtype`` (its complex counterpart for complex leaves) or the
    leaf's own dtype."""
    if mu_dtype is None:
        return optax.tree.zeros_like(params)

    def zeros(p):
        dtype = mu_dtype
        if jnp.issubdtype(p.dtype, jnp.complexfloating):
            dtype = jnp.complex128 if jnp.finfo(mu_dtype).bits > 32 else jnp.complex64
        return jnp.zeros_like(p, dtype=dtype)

    return jax.tree.map(zeros, params)


def _scalar(x: Any, dtype: Any) -> jax.Array | np.ndarray:
    """The hyperparameter ``x`` as a scalar of ``dtype``: a NumPy constant when static, a cast
    array when traced (``lax`` ops need both operands of one dtype)."""
    value = _checks.static_value(x)
    if value is not None:
        return np.array(value, dtype)
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x) and not jnp.issubdtype(dtype, jnp.complexfloating):
        x = jnp.real(x)  # inject_hyperparams stores hyperparameters in complex params' dtype
    return x.astype(dtype)


def _one_minus(x: Any, dtype: Any) -> jax.Array | np.ndarray:
    """``1 - x`` as a scalar of ``dtype`` (for a static ``x``, computed in float64 first)."""
    value = _checks.static_value(x)
    if value is not None:
        return np.array(1.0 - value, dtype)
    return lax.sub(np.array(1.0, dtype), _scalar(x, dtype))


def _astype(x: jax.Array, dtype: Any) -> jax.Array:
    """The array ``x`` converted to ``dtype``, with no op when it already has it."""
    return x if x.dtype == dtype else lax.convert_element_type(x, dtype)


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
        return -jnp.expm1(t * jnp.log1p(_scalar(decay, dtype) - 1.0))
    if value == 0.0:
        return jnp.ones([], dtype)
    return -jnp.expm1(t * math.log(value))


def _ema(g: jax.Array, moment: jax.Array, decay: Any, square: bool) -> jax.Array:
    """``decay * moment + (1 - decay) * g`` (``|g|**2`` if ``square``) in >= float32, stored
    in moment's dtype."""
    g = _astype(g, _compute_dtype(g.dtype))
    if square:
        g = _abs_sq(g)
    dtype = g.dtype
    new = lax.add(
        lax.mul(_scalar(decay, dtype), _astype(moment, dtype)),
        lax.mul(_one_minus(decay, dtype), g),
    )
    return _astype(new, moment.dtype)


# --- the Laplacian term ------------------------------------------------------------------------


def smoothing_gate(c2: Any, min_spatial_size: Any, size: int) -> Gate:
    """Whether the reference smooths a leaf of ``size`` elements (its ``use_lap`` flag).

    ``c2 > 0 and size >= min_spatial_size``: a Python bool when both are static, so that the
    Laplacian is left out of the compiled program where it is off; a traced bool otherwise.
    """
    c2_value = _checks.static_value(c2)
    min_value = _checks.static_value(min_spatial_size)
    if (min_value is not None and size < min_value) or c2_value == 0.0:
        return False
    if c2_value is not None and min_value is not None:
        return c2_value > 0
    return (jnp.real(jnp.asarray(c2)) > 0) & (size >= jnp.real(jnp.asarray(min_spatial_size)))


def _laplacian_term(
    x: jax.Array, c2: Any, gate: Gate, stencil: str, impl: str, fold: Fold | None
) -> jax.Array | None:
    """``c2 * lap(x)`` on the field ``fold`` names where ``gate`` holds, zeros where it does
    not; ``None`` when it is zero for every value (``gate`` statically off, or a field too
    small for the stencil), so that the caller leaves it out of the program."""
    if gate is False or folded_shape(x.shape, fold) is None:
        return None
    term = lax.mul(periodic_laplacian(x, stencil, impl, fold), _scalar(c2, x.dtype))
    return term if gate is True else jnp.where(gate, term, jnp.zeros_like(term))


def _laplacian_smoothed(
    x: jax.Array,
    c2: Any,
    gate: Gate,
    stencil: str,
    impl: str,
    fold: Fold | None,
    floor: Any = None,
    divisor: Any = None,
) -> jax.Array:
    """``max((x + c2 * lap(x)) / divisor, floor)`` where ``gate`` holds, ``x / divisor``
    elsewhere.

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
    term = _laplacian_term(x, c2, gate, stencil, impl, fold)
    smoothed = x if term is None else lax.add(x, term)
    if divisor is not None:
        smoothed = lax.div(smoothed, divisor)
    if floor is not None:
        smoothed = lax.max(smoothed, _scalar(floor, x.dtype))
    if gate is True:
        return smoothed
    return jnp.where(gate, smoothed, plain())


# --- smoothing_effect's counterfactual steps ---------------------------------------------------


class _Counterfactual(NamedTuple):
    without: str  # "smoothing" or "floor"
    reached: list[str]  # the transformations whose update honoured it


_COUNTERFACTUAL: contextvars.ContextVar[_Counterfactual | None] = contextvars.ContextVar(
    "ladam_optax_counterfactual", default=None
)
_COUNTERFACTUALS = ("smoothing", "floor")


@contextlib.contextmanager
def counterfactual(without: str) -> Iterator[list[str]]:
    """While tracing inside it, the transformations of this module compute their update
    without the smoothing (as at ``c2 = 0``) or without the floor that the smoothing switches
    on; it yields the list of those that did. The states they return are not the optimizer's:
    :func:`ladam_optax.smoothing_effect` discards them."""
    _checks.choice("without", without, _COUNTERFACTUALS)
    record = _Counterfactual(without, [])
    token = _COUNTERFACTUAL.set(record)
    try:
        yield record.reached
    finally:
        _COUNTERFACTUAL.reset(token)


def _in_effect(who: str, c2: Any, floor: Any) -> tuple[Any, Any]:
    """The ``c2`` and smoothing floor an update uses: as built, or as a counterfactual asks."""
    record = _COUNTERFACTUAL.get()
    if record is None:
        return c2, floor
    record.reached.append(who)
    if record.without == "floor":
        return c2, None
    # A traced c2 (inject_hyperparams) becomes a traced 0: the program of that optimizer with
    # 0 in its state, where a static 0 would drop its gates.
    return (0.0 if _checks.static_value(c2) is not None else jnp.zeros_like(c2)), floor


# --- hyperparameter checks ---------------------------------------------------------------------

# The most negative eigenvalue of each stencil (the line is [1, -2, 1]).
_LAMBDA_MIN = {"9point": -16.0 / 3.0, "5point": -8.0, "line": -4.0}
# The largest stable c2 of each mode, from the stencil's centre weight or its spectrum.
_CENTRE_WEIGHT = {"9point": 20.0 / 6.0, "5point": 4.0, "line": 2.0}


def c2_limit(mode: str, stencil: str) -> tuple[float, str]:
    """The largest c2 that ``mode`` is safe for with ``stencil``, and why (a phrase).

    - ``variance_lap``, LAdaGrad, LRMSProp: ``v + c2 lap(v)`` stays >= 0 for every ``v >= 0``
      only while the stencil's centre weight ``1 - c2 * w`` is >= 0;
    - ``update_lap``: ``a + c2 lap(a)`` keeps the sign of every mode only for
      ``c2 <= 1 / |lambda_min|``;
    - ``weight_lap``: ``p + c2 lap(p)`` is a stable diffusion only for
      ``c2 <= 2 / |lambda_min|``.
    """
    if mode == "update_lap":
        return -1.0 / _LAMBDA_MIN[stencil], "the smoothed direction keeps the sign of every mode"
    if mode == "weight_lap":
        return -2.0 / _LAMBDA_MIN[stencil], "the weight diffusion is stable"
    return 1.0 / _CENTRE_WEIGHT[stencil], "the smoothed variance stays non-negative"


def _warn_if_unstable(c2: Any, mode: str, stencil: str) -> None:
    """A ``UserWarning`` for a static ``c2`` above its mode's limit (see :func:`c2_limit`)."""
    value = _checks.static_value(c2)
    if value is None:
        return
    limit, why = c2_limit(mode, stencil)
    if value > limit:
        _checks.warn(
            f"c2={value!r} is above {limit:.4g}, the largest c2 for which {why} with the "
            f"{stencil} stencil in mode {mode!r}. Beyond it training can diverge or collapse "
            "(variance_lap: negative variances floored at eps take steps up to "
            "sqrt(v / eps) times Adam's). The c2 that change training measurably are far "
            "smaller: see the docs' 'Choosing c2' page."
        )


def check_mode(mode: str) -> None:
    """Raises unless ``mode`` is one of :data:`MODES`; ``"wave_variance"`` is told where it
    went."""
    if mode == "wave_variance":
        raise ValueError(
            "mode='wave_variance' has hyperparameters and a state of its own: use "
            "ladam_optax.wave_ladamw(...) (the reference's LAdamW(mode='wave_variance')), "
            "wave_ladam(...) (coupled weight decay) or scale_by_wave_ladam(...)"
        )
    _checks.choice("mode", mode, MODES)


def _check_smoothing(c2: Any, stencil: str, min_spatial_size: Any, fold: Any) -> None:
    _checks.non_negative("c2", c2)
    check_stencil(stencil)
    _checks.min_spatial_size(min_spatial_size)
    check_fold_spec(fold)


def _check_params(params: Any, fold: FoldSpec, who: str) -> None:
    """At ``init``: only floating and complex leaves, and a fold that fits every leaf."""
    _checks.inexact_leaves(params, who)
    resolve_folds(fold, params)


def _folds_for(fold: FoldSpec, updates: Any, params: Any) -> list[Fold | None]:
    """Each leaf's fold, resolved from the params (from the updates where none are passed)."""
    return resolve_folds(fold, updates if params is None else params)


# --- the transformations -----------------------------------------------------------------------


def scale_by_ladam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    c2: jax.typing.ArrayLike = 1e-4,
    mode: str = "variance_lap",
    stencil: str = "9point",
    min_spatial_size: int = 16,
    mu_dtype: Any | None = None,
    *,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescales updates by Adam's moments, with the second moment smoothed by a Laplacian.

    .. math::

      m_t = \\beta_1 m_{t-1} + (1 - \\beta_1) g_t, \\quad
      v_t = \\beta_2 v_{t-1} + (1 - \\beta_2) |g_t|^2, \\quad
      \\hat m_t = m_t / (1 - \\beta_1^t), \\quad \\hat v_t = v_t / (1 - \\beta_2^t)

    ``mode="variance_lap"``:
    :math:`u_t = \\hat m_t / (\\sqrt{\\max(\\hat v_t + c_2 \\Delta \\hat v_t, \\epsilon)}
    + \\epsilon)`;
    ``mode="update_lap"``: :math:`a_t = \\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)`,
    :math:`u_t = a_t + c_2 \\Delta a_t`. ``\\Delta`` is :func:`ladam_optax.laplacian`, applied
    only to leaves with at least ``min_spatial_size`` elements and only when ``c2 > 0``;
    elsewhere the update is Adam's (``optax.scale_by_adam``'s to float32 rounding: the bias
    corrections here are exact where optax's lose ~1e-5 relative). Complex parameters work as
    in ``optax.adam``: the second moment is the real ``|g|^2`` (stored in the real dtype), the
    first moment and the updates are complex.

    ``mode="weight_lap"`` diffuses the *parameters* after the learning-rate step, so it cannot
    live in a transformation that runs before the learning rate: use
    ``ladam(..., mode="weight_lap")``, which chains :func:`add_weight_diffusion` after it. The
    wave variance of ``ladam`` 0.4.1 is :func:`scale_by_wave_ladam`.

    A static ``c2`` above the mode's stability limit (0.3 for ``variance_lap`` with the
    9-point stencil, 3/16 for ``update_lap``; the docs' "Choosing c2" page has the table)
    warns at construction.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment, and the floor of the smoothed variance.
      c2: Laplacian coupling strength, >= 0.
      mode: ``"variance_lap"`` (default) or ``"update_lap"``. Static.
      stencil: ``"9point"`` (default) or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements (per slice of a leaf with batch axes)
        are not smoothed. Under
        ``optax.inject_hyperparams`` pass ``static_args=("min_spatial_size",)`` to keep it
        static (otherwise every small leaf runs the stencil behind a ``where``).
      mu_dtype: dtype of the first moment; ``None`` keeps the parameters' dtype. Static.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: which axes of each leaf form the smoothed field: ``None`` (the PyTorch package's
        ``(shape[0], prod(shape[1:]))`` for every leaf), a pytree like the params with a
        :class:`Fold` or ``None`` per leaf, or a callable returning one from the params (e.g.
        :func:`torch_folds`; under ``optax.inject_hyperparams`` name it in ``static_args``).
        Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByLAdamState`.

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
    _checks.non_negative("eps", eps)
    _check_smoothing(c2, stencil, min_spatial_size, fold)
    check_mode(mode)
    if mode == "weight_lap":
        raise ValueError(
            "mode='weight_lap' diffuses the parameters after the learning-rate step, so "
            "scale_by_ladam cannot apply it: use ladam(..., mode='weight_lap'), or chain "
            "scale_by_ladam(c2=0.0), optax.scale_by_learning_rate(lr) and "
            "add_weight_diffusion(c2)"
        )
    _warn_if_unstable(c2, mode, stencil)
    impl = check_implementation(laplacian_impl)
    mu_dtype = _checks.mu_dtype(mu_dtype)

    def init_fn(params):
        _check_params(params, fold, "scale_by_ladam")
        return ScaleByLAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_mu_zeros(params, mu_dtype),
            nu=_zeros_real(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.same_shapes(updates, state.nu, "scale_by_ladam")
        folds = _folds_for(fold, updates, params)
        c2_, floor = _in_effect("scale_by_ladam", c2, eps if mode == "variance_lap" else None)
        count = jnp.asarray(optax.safe_increment(state.count))

        @functools.cache
        def corrections(dtype):  # once per dtype, not per leaf
            return _bias_correction(b1, count, dtype), _bias_correction(b2, count, dtype)

        def direction(g, m, v, leaf_fold):
            dtype = _compute_dtype(g.dtype)
            bc1, bc2 = corrections(_real_dtype(dtype))
            m_hat, v = lax.div(_astype(m, dtype), _astype(bc1, dtype)), _astype(v, bc2.dtype)
            gate = smoothing_gate(c2_, min_spatial_size, slice_size(g.shape, leaf_fold))
            eps_ = _scalar(eps, v.dtype)
            if mode == "variance_lap":
                v_hat = _laplacian_smoothed(
                    v, c2_, gate, stencil, impl, leaf_fold, floor=floor, divisor=bc2
                )
                u = lax.div(m_hat, _astype(lax.add(lax.sqrt(v_hat), eps_), dtype))
            else:
                root = lax.add(lax.sqrt(lax.div(v, bc2)), eps_)
                adam = lax.div(m_hat, _astype(root, dtype))
                u = _laplacian_smoothed(adam, c2_, gate, stencil, impl, leaf_fold)
            return _astype(u, g.dtype)

        mu = jax.tree.map(lambda g, m: _ema(g, m, b1, False), updates, state.mu)
        nu = jax.tree.map(lambda g, v: _ema(g, v, b2, True), updates, state.nu)
        updates = map_with_folds(direction, folds, updates, mu, nu)
        return updates, ScaleByLAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_wave_ladam(
    b1: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    c2: jax.typing.ArrayLike = 1e-4,
    wave_dt: jax.typing.ArrayLike = 0.1,
    wave_kappa: jax.typing.ArrayLike = 0.1,
    wave_E0: jax.typing.ArrayLike = 0.0,
    wave_damping: jax.typing.ArrayLike = 0.5,
    *,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    mu_dtype: Any | None = None,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescales updates by Adam's first moment over a variance field that follows a wave equation.

    The wave variance of ``ladam`` 0.4.1 (``mode="wave_variance"``): instead of an EMA, the
    variance ``v`` is a damped wave driven by the squared gradients, leapfrogged,

    .. math::

      v_1 = \\max(|g_1|^2, \\epsilon), \\quad
      v_{t+1} = \\max\\big((2 - d) v_t - (1 - d) v_{t-1}
        + \\Delta t^2 (c_2 \\Delta v_t - \\kappa (|g_t|^2 - E_0^2)), \\epsilon\\big), \\quad
      u_t = \\hat m_t / (\\sqrt{v_t} + \\epsilon)

    with Adam's bias-corrected first moment :math:`\\hat m_t`. ``\\Delta`` is
    :func:`ladam_optax.laplacian`, on leaves with at least ``min_spatial_size`` elements.

    Args:
      b1: decay of the first moment, in [0, 1).
      eps: added to the root of the variance, and its floor.
      c2: wave speed squared (the Laplacian's coupling), >= 0.
      wave_dt: the leapfrog time step :math:`\\Delta t`, >= 0.
      wave_kappa: the source strength :math:`\\kappa`, >= 0.
      wave_E0: the rest level :math:`E_0`, >= 0; 0 takes each leaf's first-step RMS gradient.
      wave_damping: the damping :math:`d`, in [0, 1].
      stencil: ``"9point"`` (default) or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements get no Laplacian term.
      mu_dtype: dtype of the first moment; ``None`` keeps the parameters' dtype. Static.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: the per-leaf fields, as in :func:`scale_by_ladam`. Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByWaveLAdamState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import ladam_optax
      >>> tx = ladam_optax.scale_by_wave_ladam(b1=0.0, eps=0.0)
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.full(3, 2.0)}, tx.init(params))
      >>> updates["w"], state.nu["w"]
      (Array([1., 1., 1.], dtype=float32), Array([4., 4., 4.], dtype=float32))

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``LAdamW(mode="wave_variance")``.
    """
    _checks.unit_interval("b1", b1)
    _checks.non_negative("eps", eps)
    _check_smoothing(c2, stencil, min_spatial_size, fold)
    for name, value in (("wave_dt", wave_dt), ("wave_kappa", wave_kappa), ("wave_E0", wave_E0)):
        _checks.non_negative(name, value)
    _checks.non_negative("wave_damping", wave_damping)
    if (_checks.static_value(wave_damping) or 0.0) > 1.0:
        raise ValueError(f"wave_damping must be in [0, 1], got {wave_damping!r}")
    impl = check_implementation(laplacian_impl)
    mu_dtype = _checks.mu_dtype(mu_dtype)
    rest_level = _checks.static_value(wave_E0)

    def init_fn(params):
        _check_params(params, fold, "scale_by_wave_ladam")
        e0_sq = map_with_folds(
            lambda p, f: jnp.zeros(batch_shape(p.shape, f), _real_dtype(p.dtype)),
            resolve_folds(fold, params),
            params,
        )
        return ScaleByWaveLAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_mu_zeros(params, mu_dtype),
            nu=_zeros_real(params),
            nu_prev=_zeros_real(params),
            e0_sq=e0_sq,
        )

    def e0_sq_now(updates, state, first, folds):
        """Each leaf's ``E0^2`` in its compute dtype: ``wave_E0**2``, or for ``wave_E0 == 0``
        the mean squared gradient of step 1 (per field: per slice of a stacked leaf, shaped
        as :func:`batch_shape`), kept in the state."""
        real = jax.tree.map(lambda g: _real_dtype(_compute_dtype(g.dtype)), updates)
        if rest_level:  # static and nonzero: a constant, no reduction
            square = rest_level * rest_level
            return jax.tree.map(lambda r: jnp.asarray(square, r), real)

        def at_step_one(updates):
            def leaf(g, r, leaf_fold):
                g2 = _abs_sq(_astype(g, _compute_dtype(g.dtype)))
                shape = batch_shape(g.shape, leaf_fold)
                if not g.size:
                    mean = jnp.zeros(shape, r)
                elif shape:  # one mean per field of a stacked leaf
                    field = tuple(a for a in range(g.ndim) if a not in leaf_fold.batch)
                    mean = jnp.mean(g2, axis=field, keepdims=True)
                else:
                    mean = jnp.mean(g2)
                if rest_level is not None:
                    return mean
                level = _scalar(wave_E0, r)
                return jnp.where(level != 0, level * level, mean)

            return map_with_folds(leaf, folds, updates, real)

        def later(updates):
            del updates
            return jax.tree.map(lambda e, r: e.astype(r), state.e0_sq, real)

        # E0^2 is fixed at step 1: one cond for the tree keeps the reductions out of later steps.
        return lax.cond(first, at_step_one, later, updates)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.same_shapes(updates, state.nu, "scale_by_wave_ladam")
        folds = _folds_for(fold, updates, params)
        c2_, _ = _in_effect("scale_by_wave_ladam", c2, None)
        count = jnp.asarray(optax.safe_increment(state.count))
        first = count == 1
        e0_sq = e0_sq_now(updates, state, first, folds)
        correction = functools.cache(lambda dtype: _bias_correction(b1, count, dtype))

        def leaf(g, m, v, v_prev, e0_sq, leaf_fold):
            dtype, store = _compute_dtype(g.dtype), v.dtype
            real = _real_dtype(dtype)
            g2 = _abs_sq(_astype(g, dtype))
            v, v_prev = _astype(v, real), _astype(v_prev, real)
            rest = lax.broadcast_in_dim(_astype(e0_sq, real), g2.shape, tuple(range(e0_sq.ndim)))
            accel = lax.mul(-_scalar(wave_kappa, real), lax.sub(g2, rest))
            gate = smoothing_gate(c2_, min_spatial_size, slice_size(g.shape, leaf_fold))
            term = _laplacian_term(v, c2_, gate, stencil, impl, leaf_fold)
            if term is not None:
                accel = lax.add(accel, term)
            d, step = _scalar(wave_damping, real), _scalar(wave_dt, real)
            leapfrog = (2.0 - d) * v - (1.0 - d) * v_prev + step * step * accel
            # Step 1 seeds v with max(g^2, eps): the same floor as every later step.
            v_new = lax.max(jnp.where(first, g2, leapfrog), _scalar(eps, real))
            v_prev_new = jnp.where(first, v_new, v)
            m_hat = lax.div(_astype(m, dtype), _astype(correction(real), dtype))
            u = lax.div(m_hat, _astype(lax.add(lax.sqrt(v_new), _scalar(eps, real)), dtype))
            return _astype(u, g.dtype), _astype(v_new, store), _astype(v_prev_new, store)

        mu = jax.tree.map(lambda g, m: _ema(g, m, b1, False), updates, state.mu)
        results = map_with_folds(leaf, folds, updates, mu, state.nu, state.nu_prev, e0_sq)
        treedef = jax.tree.structure(updates)
        u, nu, nu_prev = (
            treedef.unflatten([r[i] for r in treedef.flatten_up_to(results)]) for i in range(3)
        )
        e0_sq = jax.tree.map(
            lambda e, old: jnp.broadcast_to(e.astype(old.dtype), old.shape), e0_sq, state.e0_sq
        )
        state = ScaleByWaveLAdamState(count=count, mu=mu, nu=nu, nu_prev=nu_prev, e0_sq=e0_sq)
        return u, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def add_weight_diffusion(
    c2: jax.typing.ArrayLike = 1e-4,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    *,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """Diffuses the parameters the update would produce: the ``weight_lap`` step of LAdam.

    .. math::

      p' = p + u, \\quad u_{\\text{new}} = u + c_2 \\Delta p'

    so that ``optax.apply_updates`` yields ``p' + c2 * lap(p')``. (No clamp: the reference
    diffuses weights without one.) Place it *after* the
    learning rate (``u`` must already be the full step). Leaves with fewer than
    ``min_spatial_size`` elements, or every leaf when ``c2 == 0``, pass through unchanged.
    A static ``c2`` above ``2 / |lambda_min|`` (3/8 with the 9-point stencil), where the
    diffusion is unstable, warns at construction.

    Args:
      c2: diffusion strength, >= 0.
      stencil: ``"9point"`` (default) or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements are not diffused.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: the per-leaf fields, as in :func:`scale_by_ladam`. Static.

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
    _check_smoothing(c2, stencil, min_spatial_size, fold)
    _warn_if_unstable(c2, "weight_lap", stencil)
    impl = check_implementation(laplacian_impl)

    def init_fn(params):
        _check_params(params, fold, "add_weight_diffusion")
        return optax.EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "mode='weight_lap' (add_weight_diffusion) diffuses the parameters and needs "
                "them: call tx.update(grads, opt_state, params)"
            )
        _checks.same_shapes(updates, params, "add_weight_diffusion")
        c2_, _ = _in_effect("add_weight_diffusion", c2, None)

        def diffuse(u, p, leaf_fold):
            dtype = _compute_dtype(u.dtype)
            moved = lax.add(_astype(p, dtype), _astype(u, dtype))
            gate = smoothing_gate(c2_, min_spatial_size, slice_size(u.shape, leaf_fold))
            # u + c2 lap(p + u), not (p + u + c2 lap(p + u)) - p: no cancellation against p.
            term = _laplacian_term(moved, c2_, gate, stencil, impl, leaf_fold)
            return u if term is None else _astype(lax.add(_astype(u, dtype), term), u.dtype)

        return map_with_folds(diffuse, resolve_folds(fold, params), updates, params), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _rescale(g, second_moment, eps, c2, stencil, min_spatial_size, impl, fold, floor):
    """``g / (sqrt(max(s + c2 lap s, floor)) + eps)``, the step of LAdaGrad and LRMSProp."""
    dtype = _compute_dtype(g.dtype)
    real = _real_dtype(dtype)
    gate = smoothing_gate(c2, min_spatial_size, slice_size(g.shape, fold))
    smoothed = _laplacian_smoothed(
        _astype(second_moment, real), c2, gate, stencil, impl, fold, floor=floor
    )
    root = lax.add(lax.sqrt(smoothed), _scalar(eps, real))
    return _astype(lax.div(_astype(g, dtype), _astype(root, dtype)), g.dtype)


def _scale_by_smoothed_second_moment(
    who: str,
    state_type: Callable[[Any], Any],
    accumulate: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    eps: Any,
    c2: Any,
    stencil: str,
    min_spatial_size: Any,
    laplacian_impl: str,
    fold: FoldSpec,
) -> optax.GradientTransformationExtraArgs:
    """LAdaGrad's and LRMSProp's transformation: a state of one second-moment tree, advanced
    by ``accumulate(g, s)``, and the step ``g / (sqrt(max(s + c2 lap s, 0)) + eps)``."""
    _checks.non_negative("eps", eps)
    _check_smoothing(c2, stencil, min_spatial_size, fold)
    _warn_if_unstable(c2, "variance_lap", stencil)
    impl = check_implementation(laplacian_impl)

    def init_fn(params):
        _check_params(params, fold, who)
        return state_type(_zeros_real(params))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        (moment,) = state
        _checks.same_shapes(updates, moment, who)
        c2_, floor = _in_effect(who, c2, 0.0)
        moment = jax.tree.map(accumulate, updates, moment)
        updates = map_with_folds(
            lambda g, s, f: _rescale(g, s, eps, c2_, stencil, min_spatial_size, impl, f, floor),
            _folds_for(fold, updates, params),
            updates,
            moment,
        )
        return updates, state_type(moment)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_ladagrad(
    eps: jax.typing.ArrayLike = 1e-10,
    c2: jax.typing.ArrayLike = 1e-4,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    *,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescales updates by the root of a Laplacian-smoothed sum of squared gradients.

    .. math::

      s_t = s_{t-1} + |g_t|^2, \\quad
      u_t = g_t / (\\sqrt{\\max(s_t + c_2 \\Delta s_t, 0)} + \\epsilon)

    The accumulator starts at zero, as in PyTorch (``optax.adagrad`` starts at 0.1). A static
    ``c2`` above 0.3 (9-point; 0.25 for 5-point), where the smoothed sum can go negative,
    warns at construction.

    Args:
      eps: added to the root of the accumulator.
      c2: Laplacian coupling strength, >= 0.
      stencil: ``"9point"`` (default) or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements (per slice of a leaf with batch axes)
        are not smoothed.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: the per-leaf fields, as in :func:`scale_by_ladam`. Static.

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

    def accumulate(g, s):
        g2 = _abs_sq(_astype(g, _compute_dtype(g.dtype)))
        return _astype(lax.add(_astype(s, g2.dtype), g2), s.dtype)

    return _scale_by_smoothed_second_moment(
        "scale_by_ladagrad",
        ScaleByLAdaGradState,
        accumulate,
        eps=eps,
        c2=c2,
        stencil=stencil,
        min_spatial_size=min_spatial_size,
        laplacian_impl=laplacian_impl,
        fold=fold,
    )


def scale_by_lrmsprop(
    decay: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    c2: jax.typing.ArrayLike = 1e-4,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    *,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescales updates by the root of a Laplacian-smoothed EMA of squared gradients.

    .. math::

      \\nu_t = d\\, \\nu_{t-1} + (1 - d) |g_t|^2, \\quad
      u_t = g_t / (\\sqrt{\\max(\\nu_t + c_2 \\Delta \\nu_t, 0)} + \\epsilon)

    ``eps`` is added outside the root, as in PyTorch's RMSprop. A static ``c2`` above 0.3
    (9-point; 0.25 for 5-point), where the smoothed average can go negative, warns at
    construction.

    Args:
      decay: EMA decay ``d`` (PyTorch's ``alpha``), in [0, 1).
      eps: added to the root of the average.
      c2: Laplacian coupling strength, >= 0.
      stencil: ``"9point"`` (default) or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements (per slice of a leaf with batch axes)
        are not smoothed.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: the per-leaf fields, as in :func:`scale_by_ladam`. Static.

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
    return _scale_by_smoothed_second_moment(
        "scale_by_lrmsprop",
        ScaleByLRMSPropState,
        lambda g, v: _ema(g, v, decay, True),
        eps=eps,
        c2=c2,
        stencil=stencil,
        min_spatial_size=min_spatial_size,
        laplacian_impl=laplacian_impl,
        fold=fold,
    )
