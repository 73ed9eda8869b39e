"""Folds: the Laplacian on a leaf's chosen field, fold= on every optimizer, torch_folds' rules."""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import NAMES_UNDER_TEST, OPTIMIZERS_UNDER_TEST, build, require
from test_laplacian import oracle

import ladam_optax
from ladam_optax import Fold, laplacian, torch_folds

IMPLS = ["auto", "conv"]


def fold_oracle(x: np.ndarray, fold: Fold, stencil: str) -> np.ndarray:
    """Transpose to ``rows + cols``, reshape to the field, the np.roll stencil, and back."""
    order = tuple(a % max(x.ndim, 1) for a in (*fold.rows, *fold.cols))
    moved = np.transpose(x, order)
    rows = int(np.prod([x.shape[a] for a in fold.rows]))
    cols = int(np.prod([x.shape[a] for a in fold.cols]))
    field = moved.reshape((rows,) if not fold.cols else (rows, cols))
    if field.ndim == 2:
        # oracle() folds (shape[0], -1): a 2-D field is its own fold.
        out = oracle(field, stencil)
    else:
        out = oracle(field, stencil) if field.size >= 4 else np.zeros_like(field)
    return np.transpose(out.reshape(moved.shape), np.argsort(order))


def random_fold(rng: np.random.Generator, ndim: int) -> Fold:
    axes = list(rng.permutation(ndim))
    split = int(rng.integers(0, ndim + 1))
    return Fold(rows=tuple(int(a) for a in axes[:split]), cols=tuple(int(a) for a in axes[split:]))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("stencil", ["9point", "5point"])
def test_random_folds_match_the_numpy_oracle(stencil, impl, x64):
    rng = np.random.default_rng(0)
    for _ in range(12):
        ndim = int(rng.integers(1, 5))
        shape = tuple(int(n) for n in rng.integers(1, 7, ndim))
        fold = random_fold(rng, ndim)
        x = rng.standard_normal(shape)
        got = np.asarray(laplacian(jnp.asarray(x), stencil, impl=impl, fold=fold))
        np.testing.assert_allclose(
            got, fold_oracle(x, fold, stencil), atol=1e-12, err_msg=f"{shape} {fold}"
        )


def test_the_reference_fold_is_the_default():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((5, 4, 3)), jnp.float32)
    np.testing.assert_array_equal(
        laplacian(x, fold=Fold(rows=(0,), cols=(1, 2))), np.asarray(laplacian(x))
    )


def test_negative_axes_count_from_the_end():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((3, 3, 4, 8)), jnp.float32)
    np.testing.assert_array_equal(
        laplacian(x, fold=Fold(rows=(-1,), cols=(-2, 0, 1))),
        laplacian(x, fold=Fold(rows=(3,), cols=(2, 0, 1))),
    )


def test_a_one_by_one_conv_is_smoothed_only_when_folded():
    x = jnp.asarray(np.random.default_rng(3).standard_normal((1, 1, 6, 8)), jnp.float32)
    np.testing.assert_array_equal(laplacian(x), 0.0)  # the (1, 48) field: a side below 3
    folded = laplacian(x, fold=Fold(rows=(3,), cols=(2, 0, 1)))
    expected = fold_oracle(np.asarray(x, np.float64), Fold((3,), (2, 0, 1)), "9point")
    np.testing.assert_allclose(folded, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(folded)).max() > 0.1


@pytest.mark.parametrize(
    ("fold", "error", "message"),
    [
        (Fold((0,), (1,)), ValueError, "not a permutation"),
        (Fold((0, 1), (1, 2)), ValueError, "not a permutation"),
        (Fold((0,), (1, 5)), ValueError, "out of range"),
        (Fold((0,), (1, 3)), ValueError, "out of range"),  # ndim itself
        (Fold((-4,), (1, 2)), ValueError, "out of range"),
        (Fold((0,), ("a", 1)), TypeError, "tuple of ints"),
        ((0, 1, 2), TypeError, "ladam_optax.Fold"),
    ],
)
def test_bad_folds_raise(fold, error, message):
    with pytest.raises(error, match=message):
        laplacian(jnp.zeros((3, 4, 5)), fold=fold)


def test_a_bad_fold_raises_at_init_naming_the_leaf():
    params = {"block": {"kernel": jnp.zeros((3, 4, 5))}, "bias": jnp.zeros(5)}
    tx = ladam_optax.ladam(fold={"block": {"kernel": Fold((0,), (1,))}, "bias": None})
    with pytest.raises(ValueError, match=r"\['block'\]\['kernel'\]"):
        tx.init(params)


def test_a_fold_tree_of_the_wrong_shape_raises_at_init():
    tx = ladam_optax.ladam(fold={"other": None})
    with pytest.raises(ValueError, match="fold must be shaped like the params"):
        tx.init({"w": jnp.zeros((4, 4))})


def test_a_fold_spec_with_foreign_leaves_raises_at_construction():
    with pytest.raises(TypeError, match="fold must be None, a pytree"):
        ladam_optax.ladam(fold={"w": "rows"})


CONV_TREE = {
    "conv": {"kernel": (3, 3, 4, 8), "bias": (8,)},
    "dense": {"kernel": (32, 16)},
}


def _tree(seed):
    key = jax.random.key(seed)
    return {
        layer: {
            name: jax.random.normal(jax.random.fold_in(key, hash((layer, name)) % 1000), shape)
            for name, shape in leaves.items()
        }
        for layer, leaves in CONV_TREE.items()
    }


def _steps(tx, steps=4, params=None):
    params = _tree(0) if params is None else params
    state = tx.init(params)
    update = jax.jit(tx.update)
    out = []
    for seed in range(1, steps + 1):
        updates, state = update(_tree(seed), state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out


def _folded_tree_of(tree):
    return {
        "conv": {"kernel": Fold((3,), (2, 0, 1)), "bias": None},
        "dense": {"kernel": None},
    }


@pytest.mark.parametrize("name", NAMES_UNDER_TEST)
def test_every_optimizer_takes_a_tree_or_a_callable_and_folds_change_the_conv(name):
    as_tree = _steps(build(name, fold=_folded_tree_of(None)))
    as_callable = _steps(build(name, fold=torch_folds))
    plain = _steps(build(name))
    for a, b in zip(as_tree, as_callable, strict=True):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(as_tree[-1]["dense"]["kernel"], plain[-1]["dense"]["kernel"])
    difference = np.abs(as_tree[-1]["conv"]["kernel"] - plain[-1]["conv"]["kernel"]).max()
    assert difference > 1e-6, name


@pytest.mark.parametrize("name", ["ladam", "ladam_update_lap", "ladagrad", "lrmsprop"])
def test_folds_under_inject_hyperparams_masked_partition_multisteps(name):
    factory, kwargs = __import__("helpers").OPTIMIZERS_UNDER_TEST[name]
    expected = _steps(build(name, fold=torch_folds), steps=2)
    injected = optax.inject_hyperparams(factory, static_args=("fold", "min_spatial_size"))(
        **kwargs, fold=torch_folds
    )
    got = _steps(injected, steps=2)
    np.testing.assert_allclose(
        got[-1]["conv"]["kernel"], expected[-1]["conv"]["kernel"], rtol=3e-5, atol=1e-7
    )
    # masked: the conv kernel alone, the inner optimizer sees MaskedNode elsewhere.
    mask = {"conv": {"kernel": True, "bias": False}, "dense": {"kernel": False}}
    masked = _steps(optax.masked(build(name, fold=torch_folds), mask), steps=2)
    np.testing.assert_allclose(
        masked[-1]["conv"]["kernel"], expected[-1]["conv"]["kernel"], rtol=1e-6, atol=1e-8
    )
    labels = {"conv": {"kernel": "a", "bias": "b"}, "dense": {"kernel": "b"}}
    partitioned = optax.partition(
        {"a": build(name, fold=_folded_tree_of(None)), "b": build(name)}, labels
    )
    parted = _steps(partitioned, steps=2)
    np.testing.assert_allclose(
        parted[-1]["conv"]["kernel"], expected[-1]["conv"]["kernel"], rtol=1e-6, atol=1e-8
    )
    multi = optax.MultiSteps(build(name, fold=torch_folds), every_k_schedule=1)
    multi_steps = _steps(multi, steps=2)
    np.testing.assert_allclose(
        multi_steps[-1]["conv"]["kernel"], expected[-1]["conv"]["kernel"], rtol=1e-6, atol=1e-8
    )
    abstract = jax.eval_shape(build(name, fold=torch_folds).init, _tree(0))
    assert jax.tree.structure(abstract) == jax.tree.structure(
        build(name, fold=torch_folds).init(_tree(0))
    )


# --- torch_folds' rules -----------------------------------------------------------------------

CONV_FOLD = {3: Fold((2,), (1, 0)), 4: Fold((3,), (2, 0, 1)), 5: Fold((4,), (3, 0, 1, 2))}


def test_torch_folds_rules_on_a_linen_params_dict():
    params = {
        "Conv_0": {"kernel": jnp.zeros((3, 3, 4, 8)), "bias": jnp.zeros(8)},
        "Conv1d": {"kernel": jnp.zeros((5, 4, 8))},
        "Conv3d": {"kernel": jnp.zeros((3, 3, 3, 4, 8))},
        "Dense_0": {"kernel": jnp.zeros((8, 16)), "bias": jnp.zeros(16)},
        "Embed_0": {"embedding": jnp.zeros((50, 16))},
        "LayerNorm_0": {"scale": jnp.zeros(16), "bias": jnp.zeros(16)},
        "MultiHeadDotProductAttention_0": {
            "query": {"kernel": jnp.zeros((16, 4, 8)), "bias": jnp.zeros((4, 8))},
            "key": {"kernel": jnp.zeros((16, 4, 8)), "bias": jnp.zeros((4, 8))},
            "value": {"kernel": jnp.zeros((16, 4, 8)), "bias": jnp.zeros((4, 8))},
            "out": {"kernel": jnp.zeros((4, 8, 16)), "bias": jnp.zeros(16)},
        },
        "step": jnp.zeros((), jnp.int32),
    }
    folds = torch_folds(params)
    line = Fold((0, 1), ())
    expected = {
        "Conv_0": {"kernel": CONV_FOLD[4], "bias": None},
        "Conv1d": {"kernel": CONV_FOLD[3]},
        "Conv3d": {"kernel": CONV_FOLD[5]},
        "Dense_0": {"kernel": None, "bias": None},
        "Embed_0": {"embedding": None},
        "LayerNorm_0": {"scale": None, "bias": None},
        "MultiHeadDotProductAttention_0": {
            "query": {"kernel": None, "bias": line},
            "key": {"kernel": None, "bias": line},
            "value": {"kernel": None, "bias": line},
            "out": {"kernel": Fold((2,), (0, 1)), "bias": None},
        },
        "step": None,
    }
    assert folds == expected


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.complex64])
def test_torch_folds_folds_a_kernel_of_every_inexact_dtype(dtype):
    params = {"Conv_0": {"kernel": jax.ShapeDtypeStruct((3, 3, 4, 8), dtype)}}
    assert torch_folds(params) == {"Conv_0": {"kernel": CONV_FOLD[4]}}


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _Boxed:
    """A leaf wrapper whose path ends in ``.value``, as a Flax variable's does."""

    value: Any


def test_torch_folds_reads_the_name_before_a_trailing_value():
    params = {"Conv_0": {"kernel": _Boxed(jnp.zeros((3, 3, 4, 8)))}}
    assert torch_folds(params)["Conv_0"]["kernel"].value == CONV_FOLD[4]


def test_torch_folds_warns_about_a_leaf_whose_layout_it_cannot_tell():
    params = {
        "conv": {"w": jnp.zeros((3, 3, 4, 8))},  # a conv kernel, not named as Flax names it
        "pos": {"embedding": jnp.zeros((1, 5, 8))},
        "Conv_0": {"kernel": jnp.zeros((3, 3, 4, 8))},
    }
    with pytest.warns(UserWarning, match=r"not named 'kernel'.*\['conv'\]\['w'\], \['pos'\]"):
        folds = torch_folds(params)
    assert folds == {
        "conv": {"w": None},
        "pos": {"embedding": None},
        "Conv_0": {"kernel": CONV_FOLD[4]},
    }
    # Flax-named trees: no warning (attention kernels, Dense, Embed and conv kernels included).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_folds(
            {
                "Conv_0": {"kernel": jnp.zeros((3, 3, 4, 8))},
                "Dense_0": {"kernel": jnp.zeros((4, 8))},
            }
        )
        torch_folds(
            {
                "attn": {
                    "query": {"kernel": jnp.zeros((8, 2, 4))},
                    "out": {"kernel": jnp.zeros((2, 4, 8))},
                }
            }
        )


def test_torch_folds_on_nnx_states_with_and_without_variables():
    require("flax", "for torch_folds on NNX states")
    from flax import nnx

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(4, 8, (3, 3), rngs=rngs)
            self.norm = nnx.BatchNorm(8, rngs=rngs)
            self.attention = nnx.MultiHeadAttention(4, 16, 16, decode=False, rngs=rngs)

    model = Model(nnx.Rngs(0))
    for state in (nnx.state(model, nnx.Param), nnx.state(model)):
        folds = torch_folds(state)
        flat = {
            jax.tree_util.keystr(path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(
                folds, is_leaf=lambda x: isinstance(x, Fold) or x is None
            )[0]
        }
        assert flat["['conv']['kernel']"] == CONV_FOLD[4]
        assert flat["['attention']['out']['kernel']"] == Fold((2,), (0, 1))
        assert flat["['attention']['query']['bias']"] == Fold((0, 1), ())
        assert flat["['attention']['query']['kernel']"] is None
        assert all(v is None for k, v in flat.items() if "norm" in k)  # BatchStat and Param
    # nnx.Optimizer hands init the Param variables and update plain arrays: both find folds.
    kernels = []
    for fold in (torch_folds, None):
        copy = Model(nnx.Rngs(0))
        optimizer = nnx.Optimizer(copy, ladam_optax.ladam(1e-2, c2=0.1, fold=fold), wrt=nnx.Param)
        grads = jax.tree.map(lambda p: p + 1.0, nnx.state(copy, nnx.Param))
        for _ in range(3):
            optimizer.update(copy, grads)
        kernels.append(np.asarray(copy.conv.kernel[...]))
    assert np.abs(kernels[0] - kernels[1]).max() > 1e-6


def test_auto_configure_folds_with_torch_folds_by_default(monkeypatch):
    # Every inner LAdamW gets torch_folds unless told otherwise.
    given = []
    real_ladamw = ladam_optax._auto.ladamw

    def recording_ladamw(*args, **kwargs):
        given.append(kwargs["fold"])
        return real_ladamw(*args, **kwargs)

    monkeypatch.setattr(ladam_optax._auto, "ladamw", recording_ladamw)
    ladam_optax.auto_configure({"w": jnp.ones((8, 8))})
    assert given and all(fold is torch_folds for fold in given)
    given.clear()
    ladam_optax.auto_configure({"w": jnp.ones((8, 8))}, fold=None)
    assert given and all(fold is None for fold in given)
    monkeypatch.undo()

    params = {"Conv_0": {"kernel": jnp.ones((3, 3, 4, 8))}, "Dense_0": {"kernel": jnp.ones((8, 8))}}
    grads = jax.tree.map(lambda p: jnp.asarray(np.random.default_rng(0).random(p.shape)), params)

    def first_update(**kwargs):
        tx = ladam_optax.auto_configure(params, 1e-2, **kwargs)
        return tx.update(grads, tx.init(params), params)[0]

    default = first_update()
    explicit = first_update(fold=torch_folds)
    unfolded = first_update(fold=None)
    for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(explicit), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # auto_configure smooths only dense kernels (c2=1e-5), so the folds change nothing here...
    for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(unfolded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # ...but they reach the inner optimizers: a bad fold tree is refused at init.
    with pytest.raises(ValueError, match="fold must be shaped like the params"):
        ladam_optax.auto_configure(params, fold={"x": None}).init(params)


@pytest.mark.parametrize("stencil", ["9point", "5point"])
def test_conv_fold_equals_default_fold_on_every_rule(stencil):
    rng = np.random.default_rng(4)
    for shape, fold in itertools.chain(
        ((s, CONV_FOLD[len(s)]) for s in [(3, 3, 4, 8), (5, 4, 8), (1, 1, 6, 8)]),
        [((4, 8, 16), Fold((2,), (0, 1))), ((4, 8), Fold((0, 1), ()))],
    ):
        x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        np.testing.assert_allclose(
            laplacian(x, stencil, impl="conv", fold=fold),
            laplacian(x, stencil, impl="auto", fold=fold),
            rtol=1e-5,
            atol=1e-5,
        )


# --- fold= on every kind of params tree, passed the ways optax users pass them ----------------


def _tree_kinds():
    """The same arrays as an NNX state (``nnx.Param`` variables), its pure dict, a Linen
    ``variables["params"]`` dict and a plain dict, with the model to train the NNX one."""
    require("flax", "for NNX states")
    from flax import nnx

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(2, 4, (3, 3), rngs=rngs)
            self.dense = nnx.Linear(8, 16, rngs=rngs)

    model = Model(nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    linen = {"Conv_0": pure["conv"], "Dense_0": pure["dense"]}
    return model, {"nnx_state": state, "pure_dict": pure, "linen": linen}


def _grads_like(params, seed):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noise = [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    return treedef.unflatten(noise)


def _two_steps(tx, params, *, pass_params=True):
    state = tx.init(params)
    for seed in (1, 2):
        grads = _grads_like(params, seed)
        updates, state = tx.update(grads, state, params if pass_params else None)
        params = optax.apply_updates(params, updates)
    return [np.asarray(x) for x in jax.tree.leaves(params)]


def _conv_labels(params):
    """``"conv"`` for every leaf of the conv layer, ``"rest"`` elsewhere (an optax label fn)."""
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    labels = ["conv" if "conv" in jax.tree_util.keystr(p).lower() else "rest" for p, _ in paths]
    return jax.tree.structure(params).unflatten(labels)


@pytest.mark.parametrize("name", NAMES_UNDER_TEST)
def test_folds_on_nnx_states_linen_and_plain_dicts_every_way_params_are_passed(name):
    from flax import nnx

    model, kinds = _tree_kinds()
    expected = _two_steps(build(name, fold=torch_folds), kinds["linen"])
    unfolded = _two_steps(build(name), kinds["linen"])
    conv_kernel = [i for i, x in enumerate(expected) if x.ndim == 4]
    assert max(np.abs(expected[i] - unfolded[i]).max() for i in conv_kernel) > 1e-7, name
    for kind, params in kinds.items():
        got = {
            "update(grads, state, params)": _two_steps(build(name, fold=torch_folds), params),
            "partition": _two_steps(
                optax.partition(
                    {"conv": build(name, fold=torch_folds), "rest": build(name, fold=torch_folds)},
                    _conv_labels,
                ),
                params,
            ),
            "masked": _two_steps(
                optax.masked(
                    build(name, fold=torch_folds),
                    lambda p: jax.tree.map(lambda label: label == "conv", _conv_labels(p)),
                ),
                params,
            ),
        }
        # Without params where the optimizer needs none (weight decay and weight_lap do).
        if "weight_decay" not in OPTIMIZERS_UNDER_TEST[name][1] and name != "ladam_weight_lap":
            got["update(grads, state)"] = _two_steps(
                build(name, fold=torch_folds), params, pass_params=False
            )
        for way, leaves in got.items():
            if way == "masked":  # only the conv layer trained: compare it
                for i in conv_kernel:
                    np.testing.assert_allclose(
                        leaves[i], expected[i], rtol=1e-6, atol=1e-7, err_msg=f"{kind} {way}"
                    )
                continue
            for a, b in zip(leaves, expected, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f"{kind} {way}")
    # nnx.Optimizer hands init the Param variables and update plain arrays.
    optimizer = nnx.Optimizer(model, build(name, fold=torch_folds), wrt=nnx.Param)
    for seed in (1, 2):
        optimizer.update(model, _grads_like(nnx.state(model, nnx.Param), seed))
    for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), expected, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-6, atol=1e-7, err_msg="nnx.Optimizer")
