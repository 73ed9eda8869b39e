"""The optimizers users call: ``optax.chain`` of the pieces in ``_transform.py``."""

from __future__ import annotations

from typing import Any, cast

import jax
import jax.numpy as jnp
import optax

from ladam_optax import _checks
from ladam_optax._folds import FoldSpec
from ladam_optax._transform import (
    add_weight_diffusion,
    check_mode,
    scale_by_ladagrad,
    scale_by_ladam,
    scale_by_lrmsprop,
    scale_by_wave_ladam,
)


def _chain(*links: optax.GradientTransformation | None) -> optax.GradientTransformationExtraArgs:
    """``optax.chain`` of the links that are not ``None`` (the optional ones left out)."""
    return optax.chain(*(link for link in links if link is not None))


def _coupled_decay(weight_decay: Any) -> optax.GradientTransformation | None:
    """The coupled L2 penalty, first in the chain: ``optax.add_decayed_weights`` that first
    names a gradient leaf shaped unlike its parameter (the moments' own check would come too
    late). ``None`` for a static 0, so the chain has no pass over the tree for it."""
    _checks.non_negative("weight_decay", weight_decay)
    if _checks.is_static_zero(weight_decay):
        return None
    inner = optax.add_decayed_weights(weight_decay)

    def update_fn(updates, state, params=None):
        if params is not None:
            _checks.same_shapes(updates, params, "weight_decay")
        return inner.update(updates, state, params)

    return optax.GradientTransformation(inner.init, update_fn)


def _decoupled_decay(weight_decay: Any, mask: Any) -> optax.GradientTransformation | None:
    """``optax.add_decayed_weights`` after the direction, as in ``optax.adamw``; ``None`` for a
    static 0 (a traced 0 under ``inject_hyperparams`` keeps the link)."""
    _checks.non_negative("weight_decay", weight_decay)
    if _checks.is_static_zero(weight_decay):
        return None
    return optax.add_decayed_weights(cast(float, weight_decay), mask)


def ladam(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    c2: jax.typing.ArrayLike = 1e-4,
    mode: str = "variance_lap",
    stencil: str = "9point",
    min_spatial_size: int = 16,
    mu_dtype: Any | None = None,
    *,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """LAdam: Adam whose second moment is smoothed by a periodic Laplacian.

    .. math::

      \\tilde g_t = g_t + \\lambda p_t, \\quad
      p_{t+1} = p_t - \\eta\\, \\hat m_t / (\\sqrt{\\max(\\hat v_t + c_2 \\Delta \\hat v_t,
      \\epsilon)} + \\epsilon)

    with Adam's bias-corrected moments :math:`\\hat m_t, \\hat v_t` of :math:`\\tilde g_t`
    (``mode="variance_lap"``, the default). ``mode="update_lap"`` smooths the Adam direction
    instead, and ``mode="weight_lap"`` takes the Adam step and then diffuses the parameters,
    :math:`p_{t+1} = p' + c_2 \\Delta p'`. The wave variance (``mode="wave_variance"`` in
    ``ladam`` 0.4.1) is :func:`wave_ladam`. ``weight_decay`` is the coupled L2 penalty of 0.2.0
    (added to the gradient before the moments); for decoupled decay use :func:`ladamw`.
    With ``c2=0`` this is ``optax.adam`` with PyTorch's eps convention, to float32 rounding
    (optax's float32 bias correction ``1 - 0.999**t`` is ~1.3e-5 relative off; ours is exact).

    Args:
      learning_rate: a float or an optax schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment; also the floor of the smoothed variance.
      weight_decay: coupled L2 coefficient, >= 0. Left out of the chain when statically 0.
      c2: Laplacian coupling strength, >= 0. The default 1e-4 is the reference's; it changes
        the steps by ~1e-4 relative. Stable up to 0.3 (``variance_lap``, 9-point); measured
        response curves: :func:`suggest_c2` and the docs' "Choosing c2".
      mode: ``"variance_lap"``, ``"update_lap"`` or ``"weight_lap"`` (see
        :func:`scale_by_ladam`). Static.
      stencil: ``"9point"`` or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements are not smoothed.
      mu_dtype: dtype of the first moment; ``None`` keeps the parameters'. Static.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: which axes of each leaf form the smoothed field: ``None`` (the PyTorch package's
        rule), a pytree of :class:`Fold` / ``None`` like the params, or a callable returning
        one, e.g. :func:`torch_folds` for Flax models (the field PyTorch's LAdam gives each
        layer), or :func:`stacked` for scanned layers and stacked experts (each layer its own
        field: ``stacked({"layers": 0}, torch_folds)``). Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs``. With ``weight_decay`` or
      ``mode="weight_lap"`` its ``update`` needs ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> import ladam_optax
      >>> params = {"w": jnp.ones((16, 16))}
      >>> loss = lambda p: jnp.sum(p["w"] ** 2)
      >>> tx = ladam_optax.ladam(1e-1, c2=1e-4)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> bool(loss(params) < 256.0)
      True

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``LAdam``, https://pypi.org/project/ladam/;
      S. Osher et al., Laplacian smoothing gradient descent, 2018, arXiv:1806.06317.
    """
    _checks.learning_rate(learning_rate)
    check_mode(mode)
    weight_lap = mode == "weight_lap"
    return _chain(
        _coupled_decay(weight_decay),
        scale_by_ladam(
            b1=b1,
            b2=b2,
            eps=eps,
            c2=0.0 if weight_lap else c2,
            mode="variance_lap" if weight_lap else mode,
            stencil=stencil,
            min_spatial_size=min_spatial_size,
            mu_dtype=mu_dtype,
            laplacian_impl=laplacian_impl,
            fold=fold,
        ),
        optax.scale_by_learning_rate(learning_rate),
        add_weight_diffusion(
            c2=c2,
            stencil=stencil,
            min_spatial_size=min_spatial_size,
            laplacian_impl=laplacian_impl,
            fold=fold,
        )
        if weight_lap
        else None,
    )


def ladamw(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 1e-4,
    c2: jax.typing.ArrayLike = 1e-4,
    mode: str = "variance_lap",
    stencil: str = "9point",
    min_spatial_size: int = 16,
    mu_dtype: Any | None = None,
    mask: Any | None = None,
    *,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """LAdamW: LAdam with decoupled weight decay, as ``ladam`` 0.4.1's ``LAdamW``.

    .. math::

      p_{t+1} = p_t - \\eta \\left(u_t + \\lambda p_t\\right)

    where :math:`u_t` is the :func:`ladam` direction of the raw gradient, i.e. the parameters
    shrink by ``1 - lr * weight_decay`` each step, as in ``optax.adamw`` and ``torch.optim.AdamW``.
    In ``mode="weight_lap"`` the diffusion acts on the decayed and stepped parameters. The wave
    variance (``LAdamW(mode="wave_variance")``) is :func:`wave_ladamw`.

    Args:
      learning_rate: a float or an optax schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment; also the floor of the smoothed variance.
      weight_decay: decoupled decay coefficient, >= 0. Left out of the chain when statically 0.
      c2: Laplacian coupling strength, >= 0.
      mode: ``"variance_lap"``, ``"update_lap"`` or ``"weight_lap"`` (see
        :func:`scale_by_ladam`). Static.
      stencil: ``"9point"`` or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements are not smoothed.
      mu_dtype: dtype of the first moment; ``None`` keeps the parameters'. Static.
      mask: a pytree of bools like the params, or a callable returning one: which leaves decay
        (as in ``optax.adamw``). Static.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: the per-leaf fields, as in :func:`ladam` (e.g. :func:`torch_folds`). Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs ``params`` (unless
      ``weight_decay`` is statically 0 and ``mode`` is not ``"weight_lap"``).

    Examples:
      >>> import jax.numpy as jnp
      >>> import ladam_optax
      >>> params = {"w": jnp.ones((4, 4))}
      >>> tx = ladam_optax.ladamw(0.1, weight_decay=0.5)
      >>> updates, _ = tx.update({"w": jnp.zeros((4, 4))}, tx.init(params), params)
      >>> round(float(updates["w"][0, 0]), 6)
      -0.05

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``LAdamW``; I. Loshchilov and F. Hutter, Decoupled
      weight decay regularization, ICLR 2019.
    """
    _checks.learning_rate(learning_rate)
    check_mode(mode)
    weight_lap = mode == "weight_lap"
    return _chain(
        scale_by_ladam(
            b1=b1,
            b2=b2,
            eps=eps,
            c2=0.0 if weight_lap else c2,
            mode="variance_lap" if weight_lap else mode,
            stencil=stencil,
            min_spatial_size=min_spatial_size,
            mu_dtype=mu_dtype,
            laplacian_impl=laplacian_impl,
            fold=fold,
        ),
        _decoupled_decay(weight_decay, mask),
        optax.scale_by_learning_rate(learning_rate),
        add_weight_diffusion(
            c2=c2,
            stencil=stencil,
            min_spatial_size=min_spatial_size,
            laplacian_impl=laplacian_impl,
            fold=fold,
        )
        if weight_lap
        else None,
    )


def wave_ladam(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
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
    """Wave LAdam: Adam's first moment over a variance field that follows a damped wave equation.

    .. math::

      \\tilde g_t = g_t + \\lambda p_t, \\quad p_{t+1} = p_t - \\eta\\, u_t

    where :math:`u_t` is the :func:`scale_by_wave_ladam` direction of :math:`\\tilde g_t`
    (``ladam`` 0.4.1's ``mode="wave_variance"``, with the coupled L2 penalty of :func:`ladam`;
    the reference's own optimizer, with decoupled decay, is :func:`wave_ladamw`). With
    ``weight_decay=0`` the two are the same.

    Args:
      learning_rate: a float or an optax schedule.
      b1: decay of the first moment, in [0, 1).
      eps: added to the root of the variance, and its floor.
      weight_decay: coupled L2 coefficient, >= 0. Left out of the chain when statically 0.
      c2: wave speed squared (the Laplacian's coupling), >= 0.
      wave_dt: the leapfrog time step, >= 0.
      wave_kappa: the source strength, >= 0.
      wave_E0: the rest level, >= 0; 0 takes each leaf's first-step RMS gradient.
      wave_damping: the damping, in [0, 1].
      stencil: ``"9point"`` or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements get no Laplacian term.
      mu_dtype: dtype of the first moment; ``None`` keeps the parameters'. Static.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: the per-leaf fields, as in :func:`ladam` (e.g. :func:`torch_folds`). Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a :class:`ScaleByWaveLAdamState`
      inside. With ``weight_decay`` its ``update`` needs ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> import ladam_optax
      >>> params = {"w": jnp.ones((16, 16))}
      >>> loss = lambda p: jnp.sum(p["w"] ** 2)
      >>> tx = ladam_optax.wave_ladam(1e-1, c2=0.1, wave_dt=0.2)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> bool(loss(params) < 256.0)
      True

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``LAdamW(mode="wave_variance")``.
    """
    _checks.learning_rate(learning_rate)
    return _chain(
        _coupled_decay(weight_decay),
        scale_by_wave_ladam(
            b1=b1,
            eps=eps,
            c2=c2,
            wave_dt=wave_dt,
            wave_kappa=wave_kappa,
            wave_E0=wave_E0,
            wave_damping=wave_damping,
            stencil=stencil,
            min_spatial_size=min_spatial_size,
            mu_dtype=mu_dtype,
            laplacian_impl=laplacian_impl,
            fold=fold,
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


def wave_ladamw(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 1e-4,
    c2: jax.typing.ArrayLike = 1e-4,
    wave_dt: jax.typing.ArrayLike = 0.1,
    wave_kappa: jax.typing.ArrayLike = 0.1,
    wave_E0: jax.typing.ArrayLike = 0.0,
    wave_damping: jax.typing.ArrayLike = 0.5,
    *,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    mu_dtype: Any | None = None,
    mask: Any | None = None,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """Wave LAdamW: ``ladam`` 0.4.1's ``LAdamW(mode="wave_variance")``.

    .. math::

      p_{t+1} = p_t - \\eta \\left(u_t + \\lambda p_t\\right)

    where :math:`u_t` is the :func:`scale_by_wave_ladam` direction of the raw gradient
    (decoupled decay, as in :func:`ladamw`).

    Args:
      learning_rate: a float or an optax schedule.
      b1: decay of the first moment, in [0, 1).
      eps: added to the root of the variance, and its floor.
      weight_decay: decoupled decay coefficient, >= 0. Left out of the chain when statically 0.
      c2: wave speed squared (the Laplacian's coupling), >= 0.
      wave_dt: the leapfrog time step, >= 0.
      wave_kappa: the source strength, >= 0.
      wave_E0: the rest level, >= 0; 0 takes each leaf's first-step RMS gradient.
      wave_damping: the damping, in [0, 1].
      stencil: ``"9point"`` or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements get no Laplacian term.
      mu_dtype: dtype of the first moment; ``None`` keeps the parameters'. Static.
      mask: a pytree of bools like the params, or a callable returning one: which leaves decay
        (as in ``optax.adamw``). Static.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: the per-leaf fields, as in :func:`ladam` (e.g. :func:`torch_folds`). Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a :class:`ScaleByWaveLAdamState`
      inside, whose ``update`` needs ``params`` (unless ``weight_decay`` is statically 0).

    Examples:
      >>> import jax.numpy as jnp
      >>> import ladam_optax
      >>> params = {"w": jnp.ones((4, 4))}
      >>> tx = ladam_optax.wave_ladamw(0.1, weight_decay=0.5)
      >>> updates, _ = tx.update({"w": jnp.zeros((4, 4))}, tx.init(params), params)
      >>> round(float(updates["w"][0, 0]), 6)
      -0.05

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``LAdamW(mode="wave_variance")``; I. Loshchilov and
      F. Hutter, Decoupled weight decay regularization, ICLR 2019.
    """
    _checks.learning_rate(learning_rate)
    return _chain(
        scale_by_wave_ladam(
            b1=b1,
            eps=eps,
            c2=c2,
            wave_dt=wave_dt,
            wave_kappa=wave_kappa,
            wave_E0=wave_E0,
            wave_damping=wave_damping,
            stencil=stencil,
            min_spatial_size=min_spatial_size,
            mu_dtype=mu_dtype,
            laplacian_impl=laplacian_impl,
            fold=fold,
        ),
        _decoupled_decay(weight_decay, mask),
        optax.scale_by_learning_rate(learning_rate),
    )


def ladagrad(
    learning_rate: optax.ScalarOrSchedule = 1e-2,
    lr_decay: jax.typing.ArrayLike = 0.0,
    eps: jax.typing.ArrayLike = 1e-10,
    weight_decay: jax.typing.ArrayLike = 0.0,
    c2: jax.typing.ArrayLike = 1e-4,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    *,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """LAdaGrad: AdaGrad whose accumulator of squared gradients is Laplacian-smoothed.

    .. math::

      s_t = s_{t-1} + \\tilde g_t^2, \\quad
      p_{t+1} = p_t - \\frac{\\eta_t\\, \\tilde g_t}{\\sqrt{\\max(s_t + c_2 \\Delta s_t, 0)}
      + \\epsilon}, \\quad \\eta_t = \\frac{\\eta}{1 + (t - 1)\\,\\text{lr\\_decay}}

    with :math:`\\tilde g_t = g_t + \\lambda p_t` (coupled weight decay, as in ``ladam`` 0.2.0).

    Args:
      learning_rate: a float or an optax schedule (then divided by the decay factor).
      lr_decay: PyTorch's learning-rate decay, >= 0.
      eps: added to the root of the accumulator.
      weight_decay: coupled L2 coefficient, >= 0.
      c2: Laplacian coupling strength, >= 0.
      stencil: ``"9point"`` or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements are not smoothed.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: the per-leaf fields, as in :func:`ladam` (e.g. :func:`torch_folds`). Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import ladam_optax
      >>> params = {"w": jnp.ones(3)}
      >>> tx = ladam_optax.ladagrad(0.5)
      >>> updates, _ = tx.update({"w": jnp.full(3, 4.0)}, tx.init(params))
      >>> updates["w"]
      Array([-0.5, -0.5, -0.5], dtype=float32)

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``LAdaGrad``; ``torch.optim.Adagrad``.
    """
    _checks.learning_rate(learning_rate)
    _checks.non_negative("lr_decay", lr_decay)
    if not _checks.is_static_zero(lr_decay):
        learning_rate = _inverse_time_decay(learning_rate, lr_decay)
    return _chain(
        _coupled_decay(weight_decay),
        scale_by_ladagrad(
            eps=eps,
            c2=c2,
            stencil=stencil,
            min_spatial_size=min_spatial_size,
            laplacian_impl=laplacian_impl,
            fold=fold,
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


def _inverse_time_decay(learning_rate: optax.ScalarOrSchedule, lr_decay: Any) -> optax.Schedule:
    """PyTorch Adagrad's ``lr / (1 + (step - 1) * lr_decay)``; optax counts from 0 = step - 1."""

    def schedule(count):
        base = learning_rate(count) if callable(learning_rate) else learning_rate
        return base / (1.0 + jnp.asarray(count).astype(jnp.float32) * lr_decay)

    return schedule


def lrmsprop(
    learning_rate: optax.ScalarOrSchedule = 1e-2,
    decay: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    momentum: jax.typing.ArrayLike = 0.0,
    c2: jax.typing.ArrayLike = 1e-4,
    stencil: str = "9point",
    min_spatial_size: int = 16,
    *,
    laplacian_impl: str = "auto",
    fold: FoldSpec = None,
) -> optax.GradientTransformationExtraArgs:
    """LRMSProp: RMSProp whose running average of squared gradients is Laplacian-smoothed.

    .. math::

      \\nu_t = d\\, \\nu_{t-1} + (1 - d)\\, \\tilde g_t^2, \\quad
      b_t = \\mu\\, b_{t-1} + \\frac{\\tilde g_t}{\\sqrt{\\max(\\nu_t + c_2 \\Delta \\nu_t, 0)}
      + \\epsilon}, \\quad p_{t+1} = p_t - \\eta\\, b_t

    with :math:`\\tilde g_t = g_t + \\lambda p_t` (coupled weight decay, as in ``ladam`` 0.2.0).
    The momentum buffer (``optax.trace``) is in the chain unless ``momentum`` is statically 0.

    Args:
      learning_rate: a float or an optax schedule.
      decay: EMA decay (PyTorch's ``alpha``), in [0, 1).
      eps: added to the root of the average.
      weight_decay: coupled L2 coefficient, >= 0.
      momentum: momentum ``mu``, in [0, 1).
      c2: Laplacian coupling strength, >= 0.
      stencil: ``"9point"`` or ``"5point"``. Static.
      min_spatial_size: leaves with fewer elements are not smoothed.
      laplacian_impl: ``"auto"`` (default) or ``"conv"`` (the reference's convolution, the
        same numbers); see :func:`laplacian`. Static.
      fold: the per-leaf fields, as in :func:`ladam` (e.g. :func:`torch_folds`). Static.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import ladam_optax
      >>> params = {"w": jnp.ones(2)}
      >>> tx = ladam_optax.lrmsprop(0.1, decay=0.75, eps=0.0)
      >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params))
      >>> updates["w"]
      Array([-0.2, -0.2], dtype=float32)

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``LRMSProp``; ``torch.optim.RMSprop``.
    """
    _checks.learning_rate(learning_rate)
    _checks.unit_interval("momentum", momentum)
    return _chain(
        _coupled_decay(weight_decay),
        scale_by_lrmsprop(
            decay=decay,
            eps=eps,
            c2=c2,
            stencil=stencil,
            min_spatial_size=min_spatial_size,
            laplacian_impl=laplacian_impl,
            fold=fold,
        ),
        None if _checks.is_static_zero(momentum) else optax.trace(decay=momentum),
        optax.scale_by_learning_rate(learning_rate),
    )
