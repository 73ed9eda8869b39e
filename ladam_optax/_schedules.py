"""Learning-rate schedules of the LAdam toolkit."""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp
import optax

from ladam_optax import _checks


def chi_anneal_schedule(
    peak_value: float,
    total_steps: int,
    warmup_frac: float = 0.05,
    settle_frac: float = 0.30,
    *,
    repeat: bool = False,
) -> optax.Schedule:
    """Linear warmup, constant, then cosine-squared decay to 0: ``ladam``'s ChiAnnealScheduler.

    .. math::

      \\eta(t) = \\begin{cases}
        \\eta_{\\max}\\, t / \\max(W, 1) & 1 \\le t \\le W \\\\
        \\eta_{\\max} & W < t < S \\\\
        \\eta_{\\max} \\left(\\tfrac12 (1 + \\cos(\\pi (t - S) / \\max(T - S, 1)))\\right)^2
          & S \\le t \\le T \\\\
        0 & t > T
      \\end{cases}

    with ``W = int(T * warmup_frac)`` and ``S = int(T * (1 - settle_frac))``. For ``t >= 1``,
    ``schedule(t)`` is the learning rate the PyTorch scheduler sets after its ``t``-th
    ``step()``, and ``schedule(0) = peak_value``: PyTorch takes the first optimizer step at the
    base rate, before the scheduler has stepped. With optax counting updates from 0, the
    trajectories match step for step up to ``T``.

    After ``T`` the two part ways unless ``repeat=True``. The reference keeps evaluating its
    cosine-squared, which is periodic: the rate climbs back (with ``T = 100``, a quarter of the
    peak at step 115, the full peak at 130) and oscillates for as long as training goes on. A
    run that outlasts its planned ``T`` would silently train at the peak rate again, so here the
    rate holds at its floor, 0, after ``T``, as optax's decay schedules hold their end value.
    ``repeat=True`` gives the reference's rate at every step.

    Args:
      peak_value: the base (peak) learning rate, >= 0.
      total_steps: ``T``, a positive integer.
      warmup_frac: fraction of ``T`` for the linear warmup, in [0, 1).
      settle_frac: fraction of ``T`` for the final decay, in [0, 1); with ``warmup_frac`` at
        most 1.
      repeat: after ``T``, ``False`` holds the rate at 0; ``True`` continues the reference's
        periodic cosine-squared (back up to the peak). Static.

    Returns:
      An optax schedule (a function of the step count).

    Examples:
      >>> from ladam_optax import chi_anneal_schedule
      >>> schedule = chi_anneal_schedule(1e-3, total_steps=100)
      >>> [round(float(schedule(t)), 6) for t in (1, 5, 50, 85, 100, 115, 130)]
      [0.0002, 0.001, 0.001, 0.00025, 0.0, 0.0, 0.0]
      >>> reference = chi_anneal_schedule(1e-3, total_steps=100, repeat=True)
      >>> [round(float(reference(t)), 6) for t in (100, 115, 130)]
      [0.0, 0.00025, 0.001]

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``ChiAnnealScheduler``.
    """
    _checks.non_negative("peak_value", peak_value)
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral):
        raise TypeError(f"total_steps must be an integer, got {total_steps!r}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    _checks.unit_interval("warmup_frac", warmup_frac)
    _checks.unit_interval("settle_frac", settle_frac)
    if warmup_frac + settle_frac > 1.0:
        raise ValueError(
            "warmup_frac + settle_frac must be <= 1, "
            f"got {warmup_frac} + {settle_frac} = {warmup_frac + settle_frac}"
        )
    if not isinstance(repeat, bool):
        raise TypeError(f"repeat must be True or False, got {repeat!r}")
    warmup = int(total_steps * warmup_frac)
    settle_start = int(total_steps * (1.0 - settle_frac))
    decay_steps = max(total_steps - settle_start, 1)

    def schedule(count):
        t = jnp.asarray(count)
        time = t.astype(jnp.float32)
        warm = peak_value * time / max(warmup, 1)
        progress = (time - settle_start) / decay_steps
        settle = peak_value * (0.5 * (1.0 + jnp.cos(math.pi * progress))) ** 2
        if not repeat:
            settle = jnp.where(t > total_steps, jnp.zeros_like(settle), settle)
        rate = jnp.where(t <= warmup, warm, jnp.where(t < settle_start, peak_value, settle))
        return jnp.where(t == 0, jnp.asarray(peak_value, rate.dtype), rate)

    return schedule
