"""Flax NNX normalization layers of the LAdam toolkit: WaveNorm, WaveNormDamped and ChiNorm.

Inputs are channels-last, ``[..., C]`` (``[B, C]`` after a Linear, ``[B, H, W, C]`` after a
Conv): the Flax layout. The PyTorch originals take NCHW images; with the same parameter values
the outputs are the same up to that transpose.

This is the only module of ``ladam_optax`` that imports flax (``pip install ladam-optax[flax]``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["ChiNorm", "WaveNorm", "WaveNormDamped"]


def _positive_int(name: str, x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x <= 0:
        raise ValueError(f"{name} must be a positive integer, got {x!r}")
    return int(x)


def _number(name: str, x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    return float(x)


def _check_features(module: str, x: jax.Array, num_features: int, min_ndim: int) -> None:
    if x.ndim < min_ndim or x.shape[-1] != num_features:
        raise ValueError(
            f"{module} expects channels-last inputs [..., {num_features}] with at least "
            f"{min_ndim} dimension(s), got shape {x.shape}"
        )


def _channel_laplacian(x: jax.Array) -> jax.Array:
    """Periodic 1-D Laplacian along the channel (last) axis."""
    return jnp.roll(x, 1, axis=-1) - 2 * x + jnp.roll(x, -1, axis=-1)


class WaveNorm(nnx.Module):
    """Normalization by a few leapfrog steps of a discrete Klein-Gordon wave across channels.

    .. math::

      E_{k+1} = 2 E_k - E_{k-1} + \\Delta t^2 \\left(c^2 \\Delta_C E_k - \\chi^2 E_k\\right),
      \\qquad E_0 = E_{-1} = x, \\qquad y = \\gamma E_n + \\beta

    where :math:`\\Delta_C` is the periodic second difference along the channel axis. ``dt``
    and ``c`` are learnable scalars, ``chi``, ``gamma`` and ``beta`` learnable per channel.

    Args:
      num_features: the number of channels ``C`` (the last axis of the input).
      n_steps: leapfrog steps, a non-negative int. Static.
      dt: initial time step.
      c: initial wave speed.
      chi: initial mass, per channel.
      dtype: the computation dtype; ``None`` promotes the input's with the parameters'.
      param_dtype: the parameters' dtype.
      rngs: required by the NNX constructor convention (the initialization is deterministic).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from ladam_optax.nn import WaveNorm
      >>> norm = WaveNorm(8, rngs=nnx.Rngs(0))
      >>> norm(jnp.ones((2, 4, 4, 8))).shape
      (2, 4, 4, 8)

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``ladam.WaveNorm``.
    """

    def __init__(
        self,
        num_features: int,
        n_steps: int = 3,
        dt: float = 0.1,
        c: float = 1.0,
        chi: float = 1.0,
        *,
        dtype: Any | None = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        del rngs
        self.num_features = _positive_int("num_features", num_features)
        if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 0:
            raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
        self.n_steps = int(n_steps)
        self.dtype = dtype
        self.dt = nnx.Param(jnp.asarray(_number("dt", dt), param_dtype))
        self.c = nnx.Param(jnp.asarray(_number("c", c), param_dtype))
        self.chi = nnx.Param(jnp.full((self.num_features,), _number("chi", chi), param_dtype))
        self.gamma = nnx.Param(jnp.ones((self.num_features,), param_dtype))
        self.beta = nnx.Param(jnp.zeros((self.num_features,), param_dtype))

    def _damping(self) -> jax.Array | None:
        return None

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_features(type(self).__name__, x, self.num_features, min_ndim=1)
        damping = self._damping()
        values = [self.dt[...], self.c[...], self.chi[...], self.gamma[...], self.beta[...]]
        dtype = jnp.result_type(x, *values) if self.dtype is None else self.dtype
        x, dt, c, chi, gamma, beta = (jnp.asarray(v, dtype) for v in (x, *values))
        if damping is not None:
            damping = damping.astype(dtype)
        e_prev, e_curr = x, x
        for _ in range(self.n_steps):
            accel = dt**2 * (c**2 * _channel_laplacian(e_curr) - chi**2 * e_curr)
            e_next = 2 * e_curr - e_prev + accel
            if damping is not None:
                e_next = e_next - damping * (e_curr - e_prev)
            e_prev, e_curr = e_curr, e_next
        return gamma * e_curr + beta


class WaveNormDamped(WaveNorm):
    """:class:`WaveNorm` with a learnable per-channel friction that suppresses ringing.

    .. math::

      E_{k+1} = 2 E_k - E_{k-1} + \\Delta t^2 \\left(c^2 \\Delta_C E_k - \\chi^2 E_k\\right)
        - \\sigma(d)\\,(E_k - E_{k-1})

    with ``damping_raw`` :math:`d` initialised to ``logit(init_damping)``, ``init_damping``
    clamped to [0.001, 0.999] as in the reference.

    Args:
      num_features: the number of channels ``C``.
      n_steps: leapfrog steps. Static.
      dt: initial time step.
      c: initial wave speed.
      chi: initial mass, per channel.
      init_damping: initial damping strength in [0, 1].
      dtype: the computation dtype; ``None`` promotes the input's with the parameters'.
      param_dtype: the parameters' dtype.
      rngs: required by the NNX constructor convention (unused).

    Examples:
      >>> import jax
      >>> from flax import nnx
      >>> from ladam_optax.nn import WaveNormDamped
      >>> norm = WaveNormDamped(16, init_damping=0.3, rngs=nnx.Rngs(0))
      >>> round(float(jax.nn.sigmoid(norm.damping_raw[...])[0]), 6)
      0.3

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``ladam.WaveNormDamped``.
    """

    def __init__(
        self,
        num_features: int,
        n_steps: int = 3,
        dt: float = 0.1,
        c: float = 1.0,
        chi: float = 1.0,
        init_damping: float = 0.5,
        *,
        dtype: Any | None = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            num_features, n_steps, dt, c, chi, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        damping = _number("init_damping", init_damping)
        if not 0.0 <= damping <= 1.0:
            raise ValueError(f"init_damping must be in [0, 1], got {init_damping!r}")
        damping = min(max(damping, 0.001), 0.999)
        raw = math.log(damping / (1.0 - damping))
        self.damping_raw = nnx.Param(jnp.full((self.num_features,), raw, param_dtype))

    def _damping(self) -> jax.Array:
        return jax.nn.sigmoid(self.damping_raw[...])


class ChiNorm(nnx.Module):
    """Adaptive gain from the channel energy: :math:`\\chi^2 = \\chi_0^2 - g \\langle x^2 \\rangle`.

    .. math::

      y = \\gamma \\frac{x}{\\sqrt{\\max(\\chi_0^2 - g\\, E, \\epsilon)}} + \\beta

    where :math:`E` is the mean of :math:`x^2` over every axis but the channels in training, and
    the running average ``running_energy`` (an ``nnx.BatchStat``, updated in training as
    ``(1 - tau) * running + tau * E``) under ``use_running_average=True`` (set by
    ``model.eval()``, cleared by ``model.train()``). Unlike BatchNorm it does not centre the
    activations; strong activations lower :math:`\\chi` and are amplified.

    Args:
      num_features: the number of channels ``C``.
      chi0_init: initial vacuum :math:`\\chi_0`, per channel.
      g_init: initial coupling :math:`g`, per channel.
      tau: running-average momentum in [0, 1].
      eps: floor of :math:`\\chi^2`, > 0.
      use_running_average: use ``running_energy`` instead of the batch's energy (and do not
        update it). Can be overridden per call.
      dtype: the computation dtype; ``None`` promotes the input's with the parameters'.
      param_dtype: the parameters' dtype (also the running energy's).
      rngs: required by the NNX constructor convention (unused).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from ladam_optax.nn import ChiNorm
      >>> norm = ChiNorm(4, rngs=nnx.Rngs(0))
      >>> _ = norm(jnp.full((8, 4), 2.0))
      >>> norm.running_energy[...].tolist()
      [0.4000000059604645, 0.4000000059604645, 0.4000000059604645, 0.4000000059604645]

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``ladam.ChiNorm``.
    """

    def __init__(
        self,
        num_features: int,
        chi0_init: float = 1.0,
        g_init: float = 0.1,
        tau: float = 0.1,
        eps: float = 1e-5,
        use_running_average: bool = False,
        *,
        dtype: Any | None = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        del rngs
        self.num_features = _positive_int("num_features", num_features)
        self.tau = _number("tau", tau)
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {tau!r}")
        self.eps = _number("eps", eps)
        if not self.eps > 0.0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if not isinstance(use_running_average, bool):
            raise TypeError(
                f"use_running_average must be a bool, got {type(use_running_average).__name__}"
            )
        self.use_running_average = use_running_average
        self.dtype = dtype
        shape = (self.num_features,)
        self.chi0 = nnx.Param(jnp.full(shape, _number("chi0_init", chi0_init), param_dtype))
        self.g = nnx.Param(jnp.full(shape, _number("g_init", g_init), param_dtype))
        self.gamma = nnx.Param(jnp.ones(shape, param_dtype))
        self.beta = nnx.Param(jnp.zeros(shape, param_dtype))
        self.running_energy = nnx.BatchStat(jnp.zeros(shape, param_dtype))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """Normalizes ``x`` (``[batch, ..., C]``, at least 2-D)."""
        _check_features("ChiNorm", x, self.num_features, min_ndim=2)
        if use_running_average is None:
            use_running_average = self.use_running_average
        values = [self.chi0[...], self.g[...], self.gamma[...], self.beta[...]]
        dtype = jnp.result_type(x, *values) if self.dtype is None else self.dtype
        x, chi0, g, gamma, beta = (jnp.asarray(v, dtype) for v in (x, *values))
        if use_running_average:
            energy = self.running_energy[...].astype(dtype)
        else:
            energy = jnp.mean(x**2, axis=tuple(range(x.ndim - 1)))
            running = self.running_energy[...]
            update = jax.lax.stop_gradient(energy).astype(running.dtype)
            self.running_energy[...] = running * (1 - self.tau) + self.tau * update
            self.num_batches_tracked[...] += 1
        chi = jnp.sqrt(jnp.maximum(chi0**2 - g * energy, self.eps))
        return gamma * (x / chi) + beta
