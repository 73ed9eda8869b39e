"""Step-for-step parity with the real PyTorch ``ladam`` package (0.2.0 and 0.4.1).

Both sides see the same gradients, ``g_t = noise_t + p_t`` (so a parameter that drifts changes
its later gradients), on a tree of every leaf kind the Laplacian distinguishes, for 20 steps.
Parity per layer of a Flax model is in test_model_parity.py.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import (
    AWKWARD_SHAPES,
    jax_trajectory,
    load_reference,
    random_tree,
    require_torch,
    torch_trajectory,
)
from test_laplacian import oracle

import ladam_optax

STEPS = 20
C2_VALUES = (1e-4, 0.2)  # barely smoothing, and strong enough to hit the clamps


def _noises(dtype=np.float32) -> list[dict]:
    return [random_tree(AWKWARD_SHAPES, seed=1000 + step, dtype=dtype) for step in range(STEPS)]


def _torch_trajectory(optimizer_class, kwargs: dict, dtype=np.float32) -> list[dict]:
    start = random_tree(AWKWARD_SHAPES, 0, dtype)
    return torch_trajectory(optimizer_class, kwargs, start, _noises(dtype))


def _jax_trajectory(tx: optax.GradientTransformation, dtype=np.float32) -> list[dict]:
    return jax_trajectory(tx, random_tree(AWKWARD_SHAPES, 0, dtype), _noises(dtype))


def _assert_same_trajectory(ours, reference, rtol=1e-5, atol=1e-6) -> None:
    for step, (a, b) in enumerate(zip(ours, reference, strict=True)):
        for name in AWKWARD_SHAPES:
            np.testing.assert_allclose(
                a[name], b[name], rtol=rtol, atol=atol, err_msg=f"leaf {name!r}, step {step + 1}"
            )


LADAM_CASES = list(
    itertools.product(
        ("variance_lap", "update_lap", "weight_lap"), ("9point", "5point"), C2_VALUES, (0.0, 0.05)
    )
)


# Parity holds beyond the stability limits too (update_lap at 0.2 warns at construction).
BEYOND_LIMIT = pytest.mark.filterwarnings("ignore:c2=0.2 is above:UserWarning")


@BEYOND_LIMIT
@pytest.mark.parametrize(("mode", "stencil", "c2", "weight_decay"), LADAM_CASES)
def test_ladam_matches_ladam_0_2_0(mode, stencil, c2, weight_decay):
    reference = load_reference("0.2.0")
    hyper = dict(weight_decay=weight_decay, c2=c2, mode=mode, stencil=stencil)
    expected = _torch_trajectory(reference.LAdam, dict(lr=1e-2, betas=(0.9, 0.99), **hyper))
    ours = _jax_trajectory(ladam_optax.ladam(1e-2, b1=0.9, b2=0.99, **hyper))
    _assert_same_trajectory(ours, expected)


@BEYOND_LIMIT
@pytest.mark.parametrize(
    ("mode", "c2", "weight_decay"),
    list(itertools.product(("variance_lap", "update_lap", "weight_lap"), C2_VALUES, (0.0, 0.1))),
)
def test_ladamw_matches_ladam_0_4_1(mode, c2, weight_decay):
    reference = load_reference("0.4.1")
    hyper = dict(weight_decay=weight_decay, c2=c2, mode=mode)
    expected = _torch_trajectory(reference.LAdamW, dict(lr=1e-2, **hyper))
    _assert_same_trajectory(_jax_trajectory(ladam_optax.ladamw(1e-2, **hyper)), expected)


def test_ladam_0_4_0_optimizer_is_the_seed():
    """0.4.1 without weight decay equals 0.2.0: both versions give the same numbers."""
    hyper = dict(lr=1e-2, c2=0.2, mode="variance_lap")
    old = _torch_trajectory(load_reference("0.2.0").LAdam, hyper)
    new = _torch_trajectory(load_reference("0.4.1").LAdamW, hyper)
    _assert_same_trajectory(new, old)


@pytest.mark.parametrize(
    ("stencil", "c2", "lr_decay", "weight_decay"),
    list(itertools.product(("9point", "5point"), C2_VALUES, (0.0, 0.05), (0.0, 0.05))),
)
def test_ladagrad_matches_ladam_0_2_0(stencil, c2, lr_decay, weight_decay):
    reference = load_reference("0.2.0")
    hyper = dict(lr_decay=lr_decay, weight_decay=weight_decay, c2=c2, stencil=stencil)
    expected = _torch_trajectory(reference.LAdaGrad, dict(lr=5e-2, **hyper))
    _assert_same_trajectory(_jax_trajectory(ladam_optax.ladagrad(5e-2, **hyper)), expected)


@pytest.mark.parametrize(
    ("stencil", "c2", "momentum", "weight_decay"),
    list(itertools.product(("9point", "5point"), C2_VALUES, (0.0, 0.9), (0.0, 0.05))),
)
def test_lrmsprop_matches_ladam_0_2_0(stencil, c2, momentum, weight_decay):
    reference = load_reference("0.2.0")
    hyper = dict(momentum=momentum, weight_decay=weight_decay, c2=c2, stencil=stencil)
    expected = _torch_trajectory(reference.LRMSProp, dict(lr=1e-2, alpha=0.95, **hyper))
    ours = _jax_trajectory(ladam_optax.lrmsprop(1e-2, decay=0.95, **hyper))
    _assert_same_trajectory(ours, expected)


@pytest.mark.parametrize("min_spatial_size", [2, 5, 200])
def test_min_spatial_size_matches_reference(min_spatial_size):
    """The threshold decides which leaves are smoothed (and clamped), exactly as in PyTorch.

    Not below 2: the reference crashes on the 0-d leaf then (its 2-D branch unpacks ``()``);
    ours gives a 0-d leaf a zero Laplacian (test_laplacian.py, degenerate shapes).
    """
    reference = load_reference("0.2.0")
    hyper = dict(c2=0.2, min_spatial_size=min_spatial_size)
    expected = _torch_trajectory(reference.LAdam, dict(lr=1e-2, **hyper))
    _assert_same_trajectory(_jax_trajectory(ladam_optax.ladam(1e-2, **hyper)), expected)


@pytest.mark.parametrize("impl", ["conv", "auto"])
@pytest.mark.parametrize("stencil", ["9point", "5point"])
def test_laplacian_matches_reference_operator(impl, stencil):
    torch = require_torch()
    reference = load_reference("0.2.0").LAdam
    k2d = reference._get_lap_kernel_2d(torch.device("cpu"), torch.float32, stencil)
    k1d = reference._get_lap_kernel_1d(torch.device("cpu"), torch.float32)
    for name, x in random_tree(AWKWARD_SHAPES, seed=3).items():
        if x.ndim == 0:
            continue  # the reference's 2-D branch cannot fold a 0-d tensor
        expected = reference._laplacian(torch.tensor(x), k2d, k1d).numpy()
        ours = np.asarray(ladam_optax.laplacian(jnp.asarray(x), stencil, impl=impl))
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5, err_msg=name)


WAVE_CASES = list(itertools.product(C2_VALUES, (0.0, 0.5), (0.0, 0.1)))


def _wave_trajectories(c2, wave_E0, weight_decay, dtype):
    reference = load_reference("0.4.1")
    hyper = dict(c2=c2, wave_E0=wave_E0, wave_dt=0.2, wave_damping=0.3)
    expected = _torch_trajectory(
        reference.LAdamW,
        dict(lr=1e-2, weight_decay=weight_decay, mode="wave_variance", **hyper),
        dtype,
    )
    wave_ladamw = ladam_optax.wave_ladamw(1e-2, weight_decay=weight_decay, **hyper)
    ours = [_jax_trajectory(wave_ladamw, dtype)]
    if weight_decay == 0.0:  # wave_ladam (coupled decay) is the same optimizer without decay
        ours.append(_jax_trajectory(ladam_optax.wave_ladam(1e-2, **hyper), dtype))
    return ours, expected


@pytest.mark.parametrize(("c2", "wave_E0", "weight_decay"), WAVE_CASES)
def test_wave_variance_matches_ladam_0_4_1_in_float64(c2, wave_E0, weight_decay, x64):
    """The same computation: in float64 both agree to rounding."""
    ours, expected = _wave_trajectories(c2, wave_E0, weight_decay, np.float64)
    for trajectory in ours:
        _assert_same_trajectory(trajectory, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("c2", "wave_E0", "weight_decay"), WAVE_CASES)
def test_wave_variance_matches_ladam_0_4_1_in_float32(c2, wave_E0, weight_decay):
    """In float32 the leapfrog (1.7 v - 0.7 v_prev + ...) cancels heavily where v is driven to
    its eps floor (then u = m / 1e-4), and XLA's fused multiply-adds round differently from
    PyTorch's separate operations: ~1e-4 apart after a few steps, growing chaotically after
    ~6 in those cases. The 20-step proof is the float64 test above (1e-10)."""
    ours, expected = _wave_trajectories(c2, wave_E0, weight_decay, np.float32)
    for trajectory in ours:
        _assert_same_trajectory(trajectory[:5], expected[:5], rtol=1e-3, atol=1e-5)


# --- the variance floor max(v_hat + c2 lap(v_hat), eps) --------------------------------------

# A leaf whose lower half gets ~1e-6 gradients (v_hat ~ 1e-12, far below eps = 1e-8) next to an
# upper half of order-one gradients, and a line of tiny gradients only. A small lr keeps the tiny
# parameters (and so the gradients noise + p) tiny for all the steps.
FLOOR_SHAPES = {"mixed": (32, 32), "tiny_line": (64,)}
FLOOR_LR = 1e-5


def _floor_tree(seed: int) -> dict:
    tree = random_tree(FLOOR_SHAPES, seed)
    tree["mixed"][16:] *= 1e-6
    tree["tiny_line"] *= 1e-6
    return tree


def _floor_trajectories(reference_class, ours, kwargs):
    noises = [_floor_tree(1000 + step) for step in range(STEPS)]
    expected = torch_trajectory(
        reference_class, dict(lr=FLOOR_LR, **kwargs), _floor_tree(0), noises
    )
    return jax_trajectory(ours, _floor_tree(0), noises), expected


def _floored_fraction(c2: float, stencil: str) -> tuple[float, float]:
    """After the first step (v_hat = g^2, m_hat = g), the fraction of the mixed leaf's entries
    where v_hat + c2 lap(v_hat) <= eps, and the smallest |m_hat| among them (the NumPy oracle)."""
    g = (_floor_tree(1000)["mixed"] + _floor_tree(0)["mixed"]).astype(np.float64)
    smoothed = g**2 + c2 * oracle(g**2, stencil)
    floored = smoothed <= 1e-8
    return float(floored.mean()), float(np.abs(g[floored]).min())


# c2 = 0.5 is above the limit (0.3): the smoothed variance goes negative beside the large half.
@pytest.mark.filterwarnings("ignore:c2=0.5 is above:UserWarning")
@pytest.mark.parametrize(
    ("stencil", "c2"), list(itertools.product(("9point", "5point"), (1e-4, 0.5)))
)
def test_the_variance_floor_binds_with_a_nonzero_first_moment_as_in_the_reference(stencil, c2):
    fraction, smallest_m = _floored_fraction(c2, stencil)
    assert 0.4 < fraction < 1.0 and smallest_m > 0.0  # the floor binds where m is not zero
    hyper = dict(c2=c2, stencil=stencil)
    ours, expected = _floor_trajectories(
        load_reference("0.2.0").LAdam, ladam_optax.ladam(FLOOR_LR, **hyper), hyper
    )
    _assert_same_floor_trajectory(ours, expected)
    if stencil == "9point":  # 0.4.1's LAdamW has only the 9-point stencil
        hyper = dict(c2=c2, weight_decay=0.0)
        ours, expected = _floor_trajectories(
            load_reference("0.4.1").LAdamW, ladam_optax.ladamw(FLOOR_LR, **hyper), hyper
        )
        _assert_same_floor_trajectory(ours, expected)


def test_the_wave_variance_is_floored_from_its_first_step_as_in_the_reference(x64):
    """0.4.1 seeds v with max(g^2, eps): on the ~1e-6 gradients (g^2 ~ 1e-12) a seed without
    the floor steps ~100x further. Float64, where the two leapfrogs agree to rounding."""
    hyper = dict(c2=0.1, wave_dt=0.2, wave_damping=0.3)

    def tree(seed):
        return {k: v.astype(np.float64) for k, v in _floor_tree(seed).items()}

    noises = [tree(1000 + step) for step in range(3)]
    expected = torch_trajectory(
        load_reference("0.4.1").LAdamW,
        dict(lr=FLOOR_LR, weight_decay=0.0, mode="wave_variance", **hyper),
        tree(0),
        noises,
    )
    tx = ladam_optax.wave_ladamw(FLOOR_LR, weight_decay=0.0, **hyper)
    _assert_same_floor_trajectory(jax_trajectory(tx, tree(0), noises), expected)


def _assert_same_floor_trajectory(ours, reference) -> None:
    """The order-one half as the other parity tests; the tiny entries (~1e-6) to 1e-12, far
    below them: a step without the floor is ~100x larger there."""
    for step, (a, b) in enumerate(zip(ours, reference, strict=True)):
        where = f"step {step + 1}"
        np.testing.assert_allclose(
            a["mixed"][:16], b["mixed"][:16], rtol=1e-5, atol=1e-6, err_msg=where
        )
        np.testing.assert_allclose(
            a["mixed"][16:], b["mixed"][16:], rtol=1e-5, atol=1e-12, err_msg=where
        )
        np.testing.assert_allclose(
            a["tiny_line"], b["tiny_line"], rtol=1e-5, atol=1e-12, err_msg=where
        )
