"""ladam_optax.nn against ladam 0.4.1's WaveNorm, WaveNormDamped and ChiNorm; NNX training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import load_reference, require_torch, train_nnx_classifier
from sklearn.datasets import load_digits

import ladam_optax
from ladam_optax.nn import ChiNorm, WaveNorm, WaveNormDamped

C = 6
# Non-default values, so that every parameter matters in the comparison.
PARAMS = {
    "WaveNorm": {"dt": 0.3, "c": 1.7, "chi": 0.8},
    "WaveNormDamped": {"dt": 0.25, "c": 1.3, "chi": 0.9, "damping_raw": -0.4},
    "ChiNorm": {"chi0": 1.2, "g": 0.3},
}
MODULES = {"WaveNorm": WaveNorm, "WaveNormDamped": WaveNormDamped, "ChiNorm": ChiNorm}


def _values(name: str, seed: int) -> dict:
    """Per-channel parameter values: the base values of PARAMS perturbed per channel."""
    rng = np.random.default_rng(seed)
    values = {}
    for key, base in PARAMS[name].items():
        shape = () if key in ("dt", "c") else (C,)
        values[key] = np.float32(base + 0.1 * rng.standard_normal(shape))
    values["gamma"] = np.float32(1 + 0.2 * rng.standard_normal(C))
    values["beta"] = np.float32(0.1 * rng.standard_normal(C))
    return values


def _pair(name: str, seed: int = 0, **kwargs):
    """(ours, reference) with the same parameter values."""
    torch = require_torch()
    reference = getattr(load_reference("0.4.1"), name)(C, **kwargs)
    ours = MODULES[name](C, **kwargs, rngs=nnx.Rngs(0))
    for key, value in _values(name, seed).items():
        getattr(ours, key)[...] = jnp.asarray(value)
        with torch.no_grad():
            getattr(reference, key).copy_(torch.from_numpy(np.array(value)))
    return ours, reference


def _to_torch_layout(x: np.ndarray) -> np.ndarray:
    """NHWC (ours) -> NCHW (the reference's) for images; other ranks are channels-last in both."""
    return np.moveaxis(x, -1, 1) if x.ndim == 4 else x


def _run_reference(reference, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = reference(torch.from_numpy(_to_torch_layout(x))).numpy()
    if x.ndim == 4:
        return np.moveaxis(out, 1, -1)
    return out.reshape(x.shape)  # the reference returns [N, C] for 3-D inputs


SHAPES = [(32, C), (4, 5, 7, C), (3, 9, C)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ["WaveNorm", "WaveNormDamped"])
@pytest.mark.parametrize("n_steps", [0, 1, 3, 5])
def test_wave_norms_match_reference(name, shape, n_steps):
    ours, reference = _pair(name, seed=n_steps, n_steps=n_steps)
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(
        ours(jnp.asarray(x)), _run_reference(reference, x), rtol=2e-5, atol=2e-6
    )


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_chi_norm_matches_reference_in_train_and_eval(shape):
    ours, reference = _pair("ChiNorm", tau=0.2)
    rng = np.random.default_rng(2)
    reference.train()
    for _ in range(3):  # training: batch energy, and the running average advances
        x = (2.0 * rng.normal(size=shape)).astype(np.float32)
        np.testing.assert_allclose(
            ours(jnp.asarray(x)), _run_reference(reference, x), rtol=2e-5, atol=2e-6
        )
    np.testing.assert_allclose(
        ours.running_energy[...], reference.running_energy.numpy(), rtol=1e-6
    )
    assert int(ours.num_batches_tracked[...]) == int(reference.num_batches_tracked) == 3

    reference.eval()
    model = nnx.Sequential(ours)
    model.eval()  # nnx's eval() sets use_running_average on every module that has it
    assert ours.use_running_average
    x = rng.normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(
        model(jnp.asarray(x)), _run_reference(reference, x), rtol=2e-5, atol=2e-6
    )
    np.testing.assert_allclose(
        ours.running_energy[...], reference.running_energy.numpy(), rtol=1e-6
    )
    assert int(ours.num_batches_tracked[...]) == 3  # not advanced in eval
    model.train()
    assert not ours.use_running_average


@pytest.mark.parametrize("name", ["WaveNorm", "WaveNormDamped", "ChiNorm"])
def test_gradients_match_reference(name):
    """Training through the layers: d loss / d (input and every parameter) equal autograd's."""
    torch = require_torch()
    ours, reference = _pair(name)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3, 5, C)).astype(np.float32)
    weights = rng.normal(size=x.shape).astype(np.float32)

    x_torch = torch.from_numpy(_to_torch_layout(x)).requires_grad_(True)
    loss = (reference(x_torch) * torch.from_numpy(_to_torch_layout(weights))).sum()
    loss.backward()

    def our_loss(module, x):
        return jnp.sum(module(x) * weights)

    grads, x_grad = nnx.grad(our_loss, argnums=(0, 1))(ours, jnp.asarray(x))
    np.testing.assert_allclose(
        x_grad, np.moveaxis(x_torch.grad.numpy(), 1, -1), rtol=1e-4, atol=1e-5
    )
    for key in PARAMS[name] | {"gamma": 0, "beta": 0}:
        expected = getattr(reference, key).grad.numpy()
        np.testing.assert_allclose(
            getattr(grads, key)[...], expected, rtol=1e-4, atol=1e-4, err_msg=key
        )


def test_parameter_names_shapes_and_initial_values_match_reference():
    reference = load_reference("0.4.1")
    for name, module in MODULES.items():
        ours = nnx.state(module(C, rngs=nnx.Rngs(0)), nnx.Param)
        theirs = {k: v.detach().numpy() for k, v in getattr(reference, name)(C).named_parameters()}
        assert sorted(ours) == sorted(theirs), name
        for key, value in theirs.items():
            np.testing.assert_allclose(ours[key][...], value, rtol=1e-6, err_msg=f"{name}.{key}")
    chi = ChiNorm(C, rngs=nnx.Rngs(0))
    stats = nnx.state(chi, nnx.BatchStat)
    assert sorted(stats) == ["num_batches_tracked", "running_energy"]


def test_damping_is_clamped_like_the_reference():
    for init, expected in [(0.0, 0.001), (1.0, 0.999), (0.3, 0.3)]:
        layer = WaveNormDamped(4, init_damping=init, rngs=nnx.Rngs(0))
        np.testing.assert_allclose(jax.nn.sigmoid(layer.damping_raw[...]), expected, rtol=1e-5)


def test_dtypes():
    x = jnp.ones((2, 8), jnp.bfloat16)
    for module in MODULES.values():
        assert module(8, rngs=nnx.Rngs(0))(x).dtype == jnp.float32  # promoted with float32 params
        layer = module(8, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
        assert layer(x).dtype == jnp.bfloat16
        assert module(8, dtype=jnp.float16, rngs=nnx.Rngs(0))(x).dtype == jnp.float16


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: WaveNorm(0, rngs=nnx.Rngs(0)),
            ValueError,
            "num_features must be a positive integer",
        ),
        (
            lambda: WaveNorm(4, n_steps=-1, rngs=nnx.Rngs(0)),
            ValueError,
            "n_steps must be a non-negative integer",
        ),
        (lambda: WaveNorm(4, dt="0.1", rngs=nnx.Rngs(0)), TypeError, "dt must be a real number"),
        (
            lambda: WaveNormDamped(4, init_damping=1.5, rngs=nnx.Rngs(0)),
            ValueError,
            r"init_damping must be in \[0, 1\]",
        ),
        (lambda: ChiNorm(4, tau=2.0, rngs=nnx.Rngs(0)), ValueError, r"tau must be in \[0, 1\]"),
        (lambda: ChiNorm(4, eps=0.0, rngs=nnx.Rngs(0)), ValueError, "eps must be > 0"),
        (
            lambda: ChiNorm(4, use_running_average=1, rngs=nnx.Rngs(0)),
            TypeError,
            "use_running_average must be a bool",
        ),
        (
            lambda: WaveNorm(4, rngs=nnx.Rngs(0))(jnp.ones((2, 5))),
            ValueError,
            r"channels-last inputs \[..., 4\]",
        ),
        (lambda: ChiNorm(4, rngs=nnx.Rngs(0))(jnp.ones(4)), ValueError, "at least 2 dimension"),
    ],
)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


class _Net(nnx.Module):
    """Conv -> norm -> ReLU -> Linear on 8x8 images, channels-last."""

    def __init__(self, norm, rngs):
        self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.norm = norm(8, rngs=rngs)
        self.head = nnx.Linear(8 * 8 * 8, 10, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.norm(self.conv(x)))
        return self.head(h.reshape(h.shape[0], -1))


@pytest.mark.parametrize("name", ["WaveNorm", "WaveNormDamped", "ChiNorm"])
def test_trains_under_nnx_jit_with_ladam(name):
    """A small CNN on scikit-learn's digits: the training loss falls, every norm parameter moves."""
    digits = load_digits()
    x = jnp.asarray(digits.images[:512, :, :, None] / 16.0, jnp.float32)
    y = jnp.asarray(digits.target[:512])
    model = _Net(MODULES[name], nnx.Rngs(0))
    before = jax.tree.map(jnp.copy, nnx.state(model.norm, nnx.Param))
    losses, _ = train_nnx_classifier(model, ladam_optax.ladam(1e-2, c2=1e-4), x, y, steps=60)
    assert losses[-1] < 0.6 * losses[0], losses[::10]
    after = nnx.state(model.norm, nnx.Param)
    for key in before:
        assert not np.allclose(before[key][...], after[key][...]), key
    if name == "ChiNorm":
        assert int(model.norm.num_batches_tracked[...]) == 60
        model.eval()
        accuracy = float((model(x).argmax(-1) == y).mean())
        assert accuracy > 0.5


def test_nn_is_an_attribute_and_says_which_extra_without_flax(monkeypatch):
    import sys

    import ladam_optax as package

    assert package.nn.WaveNorm is WaveNorm
    monkeypatch.setitem(sys.modules, "flax", None)  # as if flax were not installed
    with pytest.raises(ImportError, match=r"ladam-optax\[flax\]"):
        package.__getattr__("nn")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.__getattr__("nope")
