"""chi_anneal_schedule against ladam 0.4.1's ChiAnnealScheduler, over every step."""

import jax
import numpy as np
import pytest
from helpers import load_reference, require_torch

from ladam_optax import chi_anneal_schedule

CONFIGS = [(100, 0.05, 0.30), (1000, 0.1, 0.5), (37, 0.0, 0.0), (10, 0.5, 0.5), (7, 0.2, 0.3)]


@pytest.mark.parametrize(("total", "warmup", "settle"), CONFIGS)
def test_matches_reference_for_every_step(total, warmup, settle):
    torch = require_torch()
    reference = load_reference("0.4.1")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=3e-3)
    scheduler = reference.ChiAnnealScheduler(optimizer, total, warmup, settle)
    schedule = jax.jit(chi_anneal_schedule(3e-3, total, warmup, settle))
    repeating = jax.jit(chi_anneal_schedule(3e-3, total, warmup, settle, repeat=True))
    assert float(schedule(0)) == pytest.approx(3e-3)  # the first step runs at the base rate
    climbed = 0.0
    for t in range(1, 3 * total + 6):
        scheduler.step()
        expected = scheduler.get_last_lr()[0]
        # float32 schedule: 1e-6 of the peak absolute (the decay's tail is tiny)
        # beyond total_steps a larger float32 phase: 1e-5 relative
        rtol = 2e-6 if t <= total else 1e-5
        np.testing.assert_allclose(float(repeating(t)), expected, rtol=rtol, atol=3e-9)
        if t <= total:
            np.testing.assert_allclose(float(schedule(t)), expected, rtol=2e-6, atol=3e-9)
        else:  # the reference climbs back; by default the rate holds at 0
            assert float(schedule(t)) == 0.0
            climbed = max(climbed, expected)
    assert climbed > 0.2 * 3e-3  # the reference does climb: the two differ after total_steps


def test_the_reference_climbs_back_to_the_peak_after_total_steps_unless_held():
    held = chi_anneal_schedule(1.0, 100)
    repeating = chi_anneal_schedule(1.0, 100, repeat=True)
    np.testing.assert_allclose(
        [float(repeating(t)) for t in (100, 115, 130)], [0, 0.25, 1.0], atol=1e-6
    )
    assert [float(held(t)) for t in (100, 101, 115, 130, 10_000)] == [0.0] * 5


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"total_steps": 0}, ValueError, "total_steps must be positive"),
        ({"total_steps": 10.5}, TypeError, "total_steps must be an integer"),
        ({"warmup_frac": 1.0}, ValueError, r"warmup_frac must be in \[0, 1\)"),
        ({"settle_frac": -0.1}, ValueError, r"settle_frac must be in \[0, 1\)"),
        ({"warmup_frac": 0.6, "settle_frac": 0.5}, ValueError, "warmup_frac \\+ settle_frac"),
        ({"peak_value": -1.0}, ValueError, "peak_value must be >= 0"),
        ({"repeat": 1}, TypeError, "repeat must be True or False"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    arguments = {"peak_value": 1e-3, "total_steps": 100, **kwargs}
    with pytest.raises(error, match=message):
        chi_anneal_schedule(**arguments)
