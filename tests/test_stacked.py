"""Stacked layers: Fold(batch=...) and stacked(), each against the same layers unrolled.

The unrolled layers are separate leaves, which are in parity with PyTorch's LAdam per layer
(test_parity.py, test_model_parity.py); a stacked leaf must give each layer exactly their step.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import NAMES_UNDER_TEST, build
from test_folds import fold_oracle

import ladam_optax
from ladam_optax import Fold, laplacian, stacked, torch_folds

STEPS = 3


def batch_oracle(x: np.ndarray, fold: Fold, stencil: str = "9point") -> np.ndarray:
    """Every slice along ``fold.batch`` through the single-field oracle, put back in place."""
    out = np.zeros_like(x, np.float64)
    inner = [a for a in range(x.ndim) if a not in fold.batch]
    per_slice = Fold(
        rows=tuple(inner.index(a) for a in fold.rows), cols=tuple(inner.index(a) for a in fold.cols)
    )
    for index in itertools.product(*(range(x.shape[a]) for a in fold.batch)):
        where = [slice(None)] * x.ndim
        for a, i in zip(fold.batch, index, strict=True):
            where[a] = i
        out[tuple(where)] = fold_oracle(x[tuple(where)], per_slice, stencil)
    return out


# --- Fold(batch=...) and laplacian -------------------------------------------------------------

BATCH_FOLDS = [
    ((4, 6, 5), Fold(rows=(1,), cols=(2,), batch=(0,))),  # batch first: (L, in, out)
    ((6, 4, 5), Fold(rows=(0,), cols=(2,), batch=(1,))),  # in the middle (MaxText's axis 1)
    ((6, 5, 4), Fold(rows=(1,), cols=(0,), batch=(2,))),  # last, rows and cols swapped
    ((2, 3, 6, 5), Fold(rows=(2,), cols=(3,), batch=(0, 1))),  # two: (L, experts, d, f)
    ((3, 2, 4, 5), Fold(rows=(3,), cols=(0, 2), batch=(1,))),  # a column group of two axes
    ((4, 9), Fold(rows=(1,), cols=(), batch=(0,))),  # 1-D slices: stacked biases
    ((4, 3), Fold(rows=(1,), cols=(), batch=(0,))),  # lines below 4 elements: zero
    ((4, 2, 9), Fold(rows=(1,), cols=(2,), batch=(0,))),  # a side below 3: zero
    ((5,), Fold(rows=(), cols=(), batch=(0,))),  # stacked scalars: zero
]


@pytest.mark.parametrize("stencil", ["9point", "5point"])
@pytest.mark.parametrize(("shape", "fold"), BATCH_FOLDS, ids=lambda v: str(v))
def test_batch_axes_smooth_each_slice_alone(shape, fold, stencil):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = batch_oracle(x, fold, stencil)
    for impl in ("auto", "conv"):
        got = laplacian(jnp.asarray(x), stencil, impl=impl, fold=fold)
        np.testing.assert_allclose(got, expected, atol=2e-6, err_msg=impl)
    assert np.abs(expected).max() > 0 or math.prod(shape[a] for a in fold.rows) < 4


def test_batch_axes_under_vmap_grad_and_eval_shape():
    fold = Fold(rows=(1,), cols=(2,), batch=(0,))
    x = jax.random.normal(jax.random.key(0), (3, 4, 6, 5))
    got = jax.vmap(lambda v: laplacian(v, fold=fold))(x)
    expected = np.stack([batch_oracle(np.asarray(v), fold) for v in x])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    # Linear and self-adjoint, slice by slice: the gradient of <w, lap(v)> is lap(w).
    w = jax.random.normal(jax.random.key(1), x.shape[1:])
    grad = jax.grad(lambda v: jnp.vdot(w, laplacian(v, fold=fold)))(x[0])
    np.testing.assert_allclose(grad, batch_oracle(np.asarray(w), fold), atol=2e-5)
    shaped = jax.eval_shape(lambda v: laplacian(v, fold=fold), x[0])
    assert (shaped.shape, shaped.dtype) == (x.shape[1:], x.dtype)


@pytest.mark.parametrize(
    ("fold", "message"),
    [
        (Fold(rows=(1,), cols=(2,), batch=(1,)), "batch axis and as a row or column axis"),
        (Fold(rows=(1,), cols=(2,), batch=(3,)), "out of range"),
        (Fold(rows=(1,), cols=(), batch=(0,)), "not a permutation"),
    ],
)
def test_bad_batch_axes_name_the_leaf(fold, message):
    with pytest.raises(ValueError, match=message):
        laplacian(jnp.zeros((4, 5, 6)), fold=fold)
    tx = ladam_optax.ladam(1e-3, fold={"layers": {"w": fold}})
    with pytest.raises(ValueError, match=r"\['layers'\]\['w'\]"):
        tx.init({"layers": {"w": jnp.zeros((4, 5, 6))}})
    with pytest.raises(TypeError, match=r"Fold\.batch"):
        laplacian(jnp.zeros((4, 5, 6)), fold=Fold(rows=(1,), cols=(2,), batch=("0",)))


def test_fold_repr_shows_batch_only_when_set():
    assert repr(Fold(rows=(0,), cols=(1,))) == "Fold(rows=(0,), cols=(1,))"
    assert repr(Fold((1,), (2,), (0,))) == "Fold(rows=(1,), cols=(2,), batch=(0,))"


# --- stacked(): the spec -----------------------------------------------------------------------


def test_stacked_longest_prefix_wins_and_per_layer_fold_is_mapped():
    params = {
        "layers": {
            "dense": {"kernel": jnp.zeros((3, 8, 6)), "bias": jnp.zeros((3, 6))},
            "moe": {"w": jnp.zeros((3, 4, 8, 6))},
            "Conv_0": {"kernel": jnp.zeros((3, 3, 3, 4, 8))},
        },
        "head": {"kernel": jnp.zeros((6, 2))},
    }
    folds = stacked({"layers": 0, "layers/moe": (0, 1)}, torch_folds)(params)
    assert folds["layers"]["dense"]["kernel"] == Fold((1,), (2,), (0,))
    assert folds["layers"]["dense"]["bias"] == Fold((1,), (), (0,))
    assert folds["layers"]["moe"]["w"] == Fold((2,), (3,), (0, 1))
    # torch_folds' conv rule on the layer's (3, 3, 4, 8) kernel, in the stacked leaf's axes.
    assert folds["layers"]["Conv_0"]["kernel"] == Fold((4,), (3, 1, 2), (0,))
    assert folds["head"]["kernel"] is None


def test_stacked_keeps_the_per_layer_folds_own_batch_axes_and_whole_names():
    """A per-layer fold tree with batch axes of its own (a layer's experts), in the stacked
    leaf's axes; a prefix matches whole path names only ('layers' is not 'layers_head')."""
    params = {"layers": {"moe": jnp.zeros((3, 4, 8, 6))}, "layers_head": jnp.zeros((8, 6))}
    per_layer = {"layers": {"moe": Fold(rows=(1,), cols=(2,), batch=(0,))}, "layers_head": None}
    folds = stacked({"layers": 0}, per_layer)(params)
    assert folds["layers"]["moe"] == Fold(rows=(2,), cols=(3,), batch=(0, 1))
    assert folds["layers_head"] is None


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"layer": 0}, "no leaf of the params lies under 'layer'"),
        ({"layers": 0, "decoder/layers": 1}, "'decoder/layers'"),
        ({"layers": 2}, r"the leaf at \['layers'\]\['bias'\] has shape \(3, 6\)"),
        ({"layers": (0, 0)}, "names an axis twice"),
    ],
)
def test_stacked_typos_and_missing_axes_fail_at_init(axes, message):
    params = {"layers": {"kernel": jnp.zeros((3, 8, 6)), "bias": jnp.zeros((3, 6))}}
    tx = ladam_optax.ladam(1e-3, fold=stacked(axes))  # constructs: the params come at init
    with pytest.raises(ValueError, match=message):
        tx.init(params)


@pytest.mark.parametrize("axes", [{}, {"layers": "0"}, {"layers": ()}, {"": 0}, [("layers", 0)]])
def test_stacked_rejects_what_is_no_spec(axes):
    with pytest.raises(TypeError, match="stacked"):
        stacked(axes)


# --- every optimizer against the same layers unrolled ------------------------------------------


def unroll(tree: dict, prefix: str, axes: tuple[int, ...]) -> dict:
    """``tree`` with its subtree ``prefix`` replaced by one subtree per stacked index, named
    ``f"{prefix}_{i}"``: the layers as separate leaves, as PyTorch holds them."""
    stack = tree[prefix]
    leaf = jax.tree.leaves(stack)[0]
    count = math.prod(leaf.shape[a] for a in axes)

    def layer(x, i):
        moved = jnp.moveaxis(x, axes, tuple(range(len(axes))))
        return moved.reshape(count, *moved.shape[len(axes) :])[i]

    layers = {
        f"{prefix}_{i}": jax.tree.map(lambda x, i=i: layer(x, i), stack) for i in range(count)
    }
    return {**{k: v for k, v in tree.items() if k != prefix}, **layers}


def run(tx, params, grads_list, with_params=True):
    state = tx.init(params)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p if with_params else None))
    for grads in grads_list:
        updates, state = step(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def tree_of(shapes: dict, seed: int) -> dict:
    key = jax.random.key(seed)
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda s: isinstance(s, tuple))
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)])


STACK = {
    "layers": {
        "kernel": (4, 16, 24),
        "bias": (4, 24),  # 1-D slices of 24: smoothed
        "small": (4, 8),  # slices of 8 < min_spatial_size: not smoothed, as unrolled
        "at_min": (4, 4, 4),  # slices of exactly min_spatial_size: smoothed
    },
    "head": (24, 10),
}


def assert_stack_is_unrolled(stacked_params, unrolled_params, prefix="layers", axes=(0,)):
    for got, want in zip(
        jax.tree.leaves(unroll(stacked_params, prefix, axes)),
        jax.tree.leaves(unrolled_params),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES_UNDER_TEST)
def test_every_optimizer_steps_each_layer_as_unrolled(name):
    params = tree_of(STACK, 0)
    grads = [tree_of(STACK, seed) for seed in range(1, STEPS + 1)]
    got, _ = run(build(name, fold=stacked({"layers": 0})), params, grads)
    want, _ = run(
        build(name), unroll(params, "layers", (0,)), [unroll(g, "layers", (0,)) for g in grads]
    )
    assert_stack_is_unrolled(got, want)
    # Without the spec the stack is one field across its layers: a different step.
    across, _ = run(build(name), params, grads)
    assert not np.allclose(across["layers"]["kernel"], got["layers"]["kernel"], rtol=0, atol=1e-6)


def _is_wave(x) -> bool:
    return isinstance(x, ladam_optax.ScaleByWaveLAdamState)


def test_wave_rest_energy_is_one_mean_per_layer():
    params = tree_of(STACK, 0)
    grads = [tree_of(STACK, seed) for seed in range(1, STEPS + 1)]
    _, state = run(build("wave_ladam", fold=stacked({"layers": 0})), params, grads)
    (wave,) = (s for s in jax.tree.leaves(state, is_leaf=_is_wave) if _is_wave(s))
    e0_sq = wave.e0_sq
    assert e0_sq["layers"]["kernel"].shape == (4, 1, 1)
    assert e0_sq["layers"]["bias"].shape == (4, 1)
    assert e0_sq["head"].shape == ()
    first = grads[0]["layers"]["kernel"]
    np.testing.assert_allclose(
        e0_sq["layers"]["kernel"][:, 0, 0], jnp.mean(first**2, axis=(1, 2)), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("ladam", {"c2": jnp.asarray(0.1)}), ("ladam", {"min_spatial_size": jnp.asarray(16)})],
)
def test_traced_gates_count_one_slice(name, overrides):
    """Under inject_hyperparams the gate is traced; it still counts one layer's elements."""
    kwargs = {"learning_rate": 1e-2, "c2": 0.1, "weight_decay": 1e-3, **overrides}
    params = tree_of(STACK, 0)
    grads = [tree_of(STACK, seed) for seed in range(1, STEPS + 1)]
    injected = optax.inject_hyperparams(ladam_optax.ladam, static_args=("fold",))
    got, _ = run(injected(**kwargs, fold=stacked({"layers": 0})), params, grads)
    want, _ = run(
        injected(**kwargs),
        unroll(params, "layers", (0,)),
        [unroll(g, "layers", (0,)) for g in grads],
    )
    assert_stack_is_unrolled(got, want)


def test_maxtext_scan_axis_one_and_moe_experts():
    """MaxText scans on ``param_scan_axis = 1``: ``(embed, layers, mlp)``; an MoE layer's
    experts ``(layers, experts, d, f)`` are fields of their own too."""
    shapes = {"decoder": {"mlp": (16, 3, 24), "norm": (16, 3)}, "moe": (3, 2, 8, 12)}
    params, grads = tree_of(shapes, 0), [tree_of(shapes, s) for s in range(1, STEPS + 1)]
    spec = stacked({"decoder": 1, "moe": (0, 1)})
    got, _ = run(build("ladamw", fold=spec), params, grads)

    def split(tree):  # decoder layers along axis 1, moe along (0, 1), as separate leaves
        layers = unroll({"decoder": tree["decoder"]}, "decoder", (1,))
        return {**layers, **unroll({"moe": tree["moe"]}, "moe", (0, 1))}

    want, _ = run(build("ladamw"), split(params), [split(g) for g in grads])
    for got_leaf, want_leaf in zip(jax.tree.leaves(split(got)), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-6, atol=1e-7)


def test_smoothing_effect_of_a_stack_pools_its_layers():
    """smoothing_effect reports one summary per leaf: for a stack, over all its layers'
    entries, each layer smoothed as its own field."""
    params = tree_of(STACK, 0)
    grads = tree_of(STACK, 1)
    tx = build("ladam", fold=stacked({"layers": 0}))
    state = tx.init(params)
    effect = ladam_optax.smoothing_effect(tx, state, grads, params)
    plain = build("ladam", c2=0.0)
    u0, _ = plain.update(grads, plain.init(params), params)
    u, _ = tx.update(grads, state, params)
    change = np.abs(u["layers"]["kernel"] - u0["layers"]["kernel"]) / np.abs(u0["layers"]["kernel"])
    np.testing.assert_allclose(effect["layers"]["kernel"].median, np.median(change), rtol=1e-4)
    assert float(effect["layers"]["small"].max) == 0.0  # slices below min_spatial_size


# --- Flax, Equinox and the toolkit -------------------------------------------------------------


def test_nnx_vmap_model_through_nnx_optimizer_and_plain_optax():
    nnx = pytest.importorskip("flax.nnx")
    layers = 3

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(8, 8, rngs=rngs)
            self.conv = nnx.Conv(4, 4, kernel_size=(3, 3), rngs=rngs)
            self.attn = nnx.MultiHeadAttention(
                num_heads=2, in_features=8, qkv_features=8, decode=False, rngs=rngs
            )
            self.norm = nnx.LayerNorm(8, rngs=rngs)

    @nnx.vmap(in_axes=0, out_axes=0)
    def make(key):
        return Block(nnx.Rngs(key))

    model = make(jax.random.split(jax.random.key(0), layers))
    state = nnx.state(model, nnx.Param)
    assert state["linear"]["kernel"].shape == (layers, 8, 8)
    pure = nnx.to_pure_dict(state)
    spec = stacked({"linear": 0, "conv": 0, "attn": 0, "norm": 0}, torch_folds)
    grads = [
        jax.tree.map(lambda x, s=s: jax.random.normal(jax.random.key(s), x.shape), pure)
        for s in range(1, STEPS + 1)
    ]

    def by_layer(tree):
        return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(layers)]

    # The unrolled reference: each layer's params as a model of its own, torch_folds per layer.
    want = [
        run(build("ladamw", fold=torch_folds), p, [by_layer(g)[i] for g in grads])[0]
        for i, p in enumerate(by_layer(pure))
    ]
    plain, _ = run(build("ladamw", fold=spec), pure, grads)
    optimizer = nnx.Optimizer(model, build("ladamw", fold=spec), wrt=nnx.Param)
    for g in grads:
        grad_state = nnx.state(model, nnx.Param)
        nnx.replace_by_pure_dict(grad_state, g)
        optimizer.update(model, grad_state)
    through_nnx = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    for got in (plain, through_nnx):
        for i, layer in enumerate(by_layer(got)):
            for a, b in zip(jax.tree.leaves(layer), jax.tree.leaves(want[i]), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_linen_scan_model():
    nn = pytest.importorskip("flax.linen")

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            return nn.tanh(nn.Dense(8)(x)), None

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            scan = nn.scan(
                Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3
            )
            return scan(name="blocks")(x, None)[0]

    params = Model().init(jax.random.key(0), jnp.ones((2, 8)))["params"]
    assert params["blocks"]["Dense_0"]["kernel"].shape == (3, 8, 8)
    grads = [
        jax.tree.map(lambda x, s=s: jax.random.normal(jax.random.key(s), x.shape), params)
        for s in range(1, STEPS + 1)
    ]
    got, _ = run(build("ladam", fold=stacked({"blocks": 0}, torch_folds)), params, grads)
    want, _ = run(
        build("ladam", fold=torch_folds),
        unroll(params, "blocks", (0,)),
        [unroll(g, "blocks", (0,)) for g in grads],
    )
    assert_stack_is_unrolled(got, want, "blocks")


def test_equinox_filter_vmap_stack():
    eqx = pytest.importorskip("equinox")
    linears = eqx.filter_vmap(lambda k: eqx.nn.Linear(8, 8, key=k))(
        jax.random.split(jax.random.key(0), 3)
    )
    params = eqx.filter(linears, eqx.is_array)
    assert params.weight.shape == (3, 8, 8)
    grads = [
        jax.tree.map(lambda x, s=s: jax.random.normal(jax.random.key(s), x.shape), params)
        for s in range(1, STEPS + 1)
    ]
    got, _ = run(build("ladam", fold=stacked({"weight": 0, "bias": 0})), params, grads)
    for i in range(3):
        layer = {"weight": params.weight[i], "bias": params.bias[i]}
        layer_grads = [{"weight": g.weight[i], "bias": g.bias[i]} for g in grads]
        want, _ = run(build("ladam"), layer, layer_grads)
        np.testing.assert_allclose(got.weight[i], want["weight"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got.bias[i], want["bias"], rtol=1e-6, atol=1e-7)


def test_auto_configure_and_analyze_params_classify_a_stack_by_its_layer():
    params = {
        "layers": {
            "Dense_0": {"kernel": jnp.ones((4, 16, 8)), "bias": jnp.ones((4, 8))},
            "LayerNorm_0": {"scale": jnp.ones((4, 8)), "bias": jnp.ones((4, 8))},
        }
    }
    spec = stacked({"layers": 0}, torch_folds)
    report = ladam_optax.analyze_params(params, fold=spec)
    unrolled = ladam_optax.analyze_params(unroll(params, "layers", (0,)))
    assert report["layer_counts"] == unrolled["layer_counts"] == {"bias": 4, "linear": 4, "norm": 8}
    assert report["layer_params"] == unrolled["layer_params"]
    # Without the spec a stacked Dense kernel looks like a conv kernel, its bias like a matrix.
    assert ladam_optax.analyze_params(params)["layer_counts"] != report["layer_counts"]
    grads = [
        jax.tree.map(lambda x, s=s: jax.random.normal(jax.random.key(s), x.shape), params)
        for s in range(1, STEPS + 1)
    ]
    got, _ = run(ladam_optax.auto_configure(params, 1e-2, fold=spec), params, grads)
    flat = unroll(params, "layers", (0,))
    want, _ = run(
        ladam_optax.auto_configure(flat, 1e-2), flat, [unroll(g, "layers", (0,)) for g in grads]
    )
    assert_stack_is_unrolled(got, want)
