"""Parity per layer: a Flax model's leaves, converted into the PyTorch layers' layouts, step for
step against the PyTorch reference with ``fold=torch_folds``.

The models (NNX and Linen) hold two convolutions (3x3 and 1x1), a multi-head attention, an
embedding, a LayerNorm and a Dense layer. Each Flax leaf and gradient is converted to the layout
of the PyTorch layer that holds the same weights (``Conv2d`` ``(out, in, kh, kw)``, ``Linear``
``(out, in)``, separate q/k/v projections ``(heads * head_dim, in)``, ``out_proj``
``(out, heads * head_dim)``); the reference steps those tensors, and every leaf converted back
must equal ours. The conversions here are written from the layouts, independently of
``torch_folds``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import jax_trajectory, load_reference, require, torch_trajectory

import ladam_optax

flax = require("flax", "for the model-level parity tests")
from flax import linen, nnx  # noqa: E402

STEPS = 15
C2 = 0.1  # strong enough to matter, and within every mode's stability limit
FEATURES, HEADS, QKV = 8, 4, 32


class NNXModel(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(4, FEATURES, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(FEATURES, FEATURES, (1, 1), rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            HEADS, FEATURES, QKV, FEATURES, decode=False, rngs=rngs
        )
        self.embed = nnx.Embed(50, FEATURES, rngs=rngs)
        self.norm = nnx.LayerNorm(FEATURES, rngs=rngs)
        self.head = nnx.Linear(FEATURES, 16, rngs=rngs)


class LinenModel(linen.Module):
    @linen.compact
    def __call__(self, images, tokens):
        x = linen.Conv(FEATURES, (3, 3))(images)
        x = linen.Conv(FEATURES, (1, 1))(x).mean(axis=(1, 2))
        t = linen.Embed(50, FEATURES)(tokens)
        t = linen.MultiHeadDotProductAttention(HEADS, qkv_features=QKV, out_features=FEATURES)(t)
        t = linen.LayerNorm()(t)
        return linen.Dense(16)(t.mean(axis=1) + x)


def _nnx_params() -> dict:
    model = NNXModel(nnx.Rngs(0))
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _linen_params() -> dict:
    variables = LinenModel().init(
        jax.random.key(0), jnp.zeros((1, 6, 6, 4)), jnp.zeros((1, 5), jnp.int32)
    )
    return jax.tree.map(np.asarray, variables["params"])


def _layout(names: tuple[str, ...], ndim: int) -> str:
    """How a leaf converts to PyTorch, from its path (the oracle's own rules)."""
    leaf, parent = names[-1], names[-2] if len(names) > 1 else ""
    if parent in ("query", "key", "value"):
        return "qkv_kernel" if leaf == "kernel" else "qkv_bias"
    if parent == "out" and leaf == "kernel":
        return "out_kernel"
    if leaf == "kernel":
        return "conv" if ndim == 4 else "dense"
    return "same"


def _to_torch(layout: str, x: np.ndarray) -> np.ndarray:
    if layout == "conv":  # (kh, kw, in, out) -> (out, in, kh, kw)
        return np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)))
    if layout == "dense":  # (in, out) -> (out, in)
        return np.ascontiguousarray(x.T)
    if layout == "qkv_kernel":  # (in, heads, head_dim) -> (heads * head_dim, in)
        return np.ascontiguousarray(x.reshape(x.shape[0], -1).T)
    if layout == "qkv_bias":  # (heads, head_dim) -> (heads * head_dim,)
        return x.reshape(-1)
    if layout == "out_kernel":  # (heads, head_dim, out) -> (out, heads * head_dim)
        return np.ascontiguousarray(x.reshape(-1, x.shape[-1]).T)
    return x


def _flat(tree: dict) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = tuple(str(p.key) for p in path)
        out["/".join(names)] = (names, leaf)
    return out


def _torch_layout(tree: dict) -> dict[str, np.ndarray]:
    return {k: _to_torch(_layout(n, x.ndim), x) for k, (n, x) in _flat(tree).items()}


def _noises(params: dict) -> list[dict]:
    rng = np.random.default_rng(7)
    return [
        jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
        for _ in range(STEPS)
    ]


MODELS = {"nnx": _nnx_params, "linen": _linen_params}
CASES = {
    **{
        f"LAdam-{mode}-{stencil}": (
            "0.2.0",
            "LAdam",
            dict(lr=1e-2, c2=C2, mode=mode, stencil=stencil),
            lambda fold, mode=mode, stencil=stencil: ladam_optax.ladam(
                1e-2, c2=C2, mode=mode, stencil=stencil, fold=fold
            ),
        )
        for mode in ("variance_lap", "update_lap", "weight_lap")
        for stencil in ("9point", "5point")
    },
    "LAdamW": (
        "0.4.1",
        "LAdamW",
        dict(lr=1e-2, c2=C2, weight_decay=0.05),
        lambda fold: ladam_optax.ladamw(1e-2, c2=C2, weight_decay=0.05, fold=fold),
    ),
    "LAdaGrad": (
        "0.2.0",
        "LAdaGrad",
        dict(lr=5e-2, c2=C2),
        lambda fold: ladam_optax.ladagrad(5e-2, c2=C2, fold=fold),
    ),
    "LRMSProp": (
        "0.2.0",
        "LRMSProp",
        dict(lr=1e-2, c2=C2),
        lambda fold: ladam_optax.lrmsprop(1e-2, c2=C2, fold=fold),
    ),
}
# The leaves whose field differs between the layouts unless folded.
FOLDED_LAYOUTS = ("conv", "out_kernel", "qkv_bias")


def _trajectories(model: str, case: str, fold):
    version, name, kwargs, factory = CASES[case]
    params = MODELS[model]()
    noises = _noises(params)
    reference = getattr(load_reference(version), name)
    expected = torch_trajectory(
        reference, kwargs, _torch_layout(params), [_torch_layout(n) for n in noises]
    )
    ours = [_torch_layout(p) for p in jax_trajectory(factory(fold), params, noises)]
    return params, ours, expected


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("model", list(MODELS))
def test_every_layer_matches_the_pytorch_reference_with_torch_folds(model, case):
    _, ours, expected = _trajectories(model, case, ladam_optax.torch_folds)
    for step, (a, b) in enumerate(zip(ours, expected, strict=True)):
        for key in b:
            np.testing.assert_allclose(
                a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=f"{key}, step {step + 1}"
            )


@pytest.mark.parametrize("model", list(MODELS))
def test_without_folds_conv_and_attention_leaves_differ(model):
    params, ours, expected = _trajectories(model, "LAdam-variance_lap-9point", None)
    layouts = {k: _layout(n, x.ndim) for k, (n, x) in _flat(params).items()}
    for key, layout in layouts.items():
        gap = np.abs(ours[-1][key] - expected[-1][key]).max()
        if layout in FOLDED_LAYOUTS:
            assert gap > 1e-4, (key, gap)  # a different neighbourhood: far beyond rounding
        else:
            np.testing.assert_allclose(ours[-1][key], expected[-1][key], rtol=1e-5, atol=1e-6)
    assert set(layouts.values()) >= set(FOLDED_LAYOUTS)
