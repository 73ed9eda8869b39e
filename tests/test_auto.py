"""suggest_c2, analyze_params and auto_configure against ladam 0.2.0 / 0.4.1, on Flax models."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import load_reference, require_torch, train_nnx_classifier

from ladam_optax import analyze_params, auto_configure, suggest_c2
from ladam_optax._auto import _categories

ARCHITECTURES = ["pinn", "transformer", "mlp", "cnn", "auto"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_matches_reference(architecture):
    reference = load_reference("0.2.0")
    assert suggest_c2(architecture) == reference.suggest_c2(architecture)
    assert suggest_c2(architecture.upper()) == reference.suggest_c2(architecture)


def test_values_and_default():
    assert suggest_c2() == 1e-4
    assert [suggest_c2(a) for a in ARCHITECTURES] == [1e-5, 1e-4, 1e-5, 0.0, 1e-4]


def test_unknown_architecture():
    with pytest.raises(ValueError, match=r"architecture must be one of 'pinn'.*got 'rnn'"):
        suggest_c2("rnn")
    with pytest.raises(TypeError, match="architecture must be a string"):
        suggest_c2(3)


# --- analyze_params / auto_configure ---------------------------------------------------------

# PyTorch name -> (Flax path, how the PyTorch tensor becomes the Flax array).
_TO_FLAX = {
    "embed.weight": (("embed", "embedding"), lambda w: w),
    "fc1.weight": (("fc1", "kernel"), lambda w: w.T),
    "fc1.bias": (("fc1", "bias"), lambda w: w),
    "norm.weight": (("norm", "scale"), lambda w: w),
    "norm.bias": (("norm", "bias"), lambda w: w),
    "fc2.weight": (("fc2", "kernel"), lambda w: w.T),
    "fc2.bias": (("fc2", "bias"), lambda w: w),
    "conv.weight": (("conv", "kernel"), lambda w: w.transpose(2, 3, 1, 0)),
    "conv.bias": (("conv", "bias"), lambda w: w),
}


def _torch_net():
    torch = require_torch()
    nn = torch.nn
    torch.manual_seed(0)
    return nn.ModuleDict(
        {
            "embed": nn.Embedding(20, 16),
            "fc1": nn.Linear(16, 32),
            "norm": nn.LayerNorm(32),
            "fc2": nn.Linear(32, 24),
            "conv": nn.Conv2d(2, 4, 3),
        }
    )


def _flax_tree(named: dict) -> dict:
    """The Linen-style params dict holding the same numbers as the PyTorch named tensors."""
    tree: dict = {}
    for name, value in named.items():
        (module, leaf), convert = _TO_FLAX[name]
        tree.setdefault(module, {})[leaf] = jnp.array(convert(np.asarray(value)))
    return tree


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def test_analyze_params_matches_reference_report():
    net = _torch_net()
    reference = importlib.import_module(load_reference("0.4.1").__name__ + ".auto")
    theirs = reference.analyze_model(net)
    ours = analyze_params(_flax_tree({n: p.detach().numpy() for n, p in net.named_parameters()}))
    for key in ("architecture", "total_params", "recommendation"):
        assert ours[key] == theirs[key], key
    # The reference calls 1-D norm weights "bias" (it checks ndim first); both get c2 = 0.
    assert ours["layer_counts"]["norm"] == 2
    merged = dict(ours["layer_counts"])
    merged["bias"] += merged.pop("norm")
    assert merged == theirs["layer_counts"]
    assert {k: v for k, v in ours["c2_map"].items() if k != "norm"} == theirs["c2_map"]


@pytest.mark.parametrize(("total_steps", "weight_decay"), [(20, 0.05), (None, 0.0)])
def test_auto_configure_trajectory_matches_reference(total_steps, weight_decay):
    """20 steps of the reference's auto_configure (LAdamW groups + ChiAnnealScheduler) and ours
    on the same tensors and gradients."""
    torch = require_torch()
    net = _torch_net()
    reference = importlib.import_module(load_reference("0.4.1").__name__ + ".auto")
    optimizer, scheduler = reference.auto_configure(
        net, lr=1e-2, total_steps=total_steps, weight_decay=weight_decay,
        use_scheduler=total_steps is not None,
    )  # fmt: skip
    params = _flax_tree({n: p.detach().numpy() for n, p in net.named_parameters()})
    tx = auto_configure(params, 1e-2, total_steps=total_steps, weight_decay=weight_decay)
    state = tx.init(params)
    update = jax.jit(tx.update)
    rng = np.random.default_rng(0)
    for _ in range(20):
        grads = {n: rng.normal(size=p.shape).astype(np.float32) for n, p in net.named_parameters()}
        for name, p in net.named_parameters():
            p.grad = torch.from_numpy(grads[name])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        updates, state = update(_flax_tree(grads), state, params)
        params = optax.apply_updates(params, updates)
    for name, p in net.named_parameters():
        path, convert = _TO_FLAX[name]
        expected = convert(p.detach().numpy())
        np.testing.assert_allclose(_get(params, path), expected, rtol=2e-5, atol=1e-6, err_msg=name)


class _Transformerish(nnx.Module):
    """Embed, MultiHeadAttention, Conv, LayerNorm and Linear: every category of the report."""

    def __init__(self, rngs):
        self.embed = nnx.Embed(16, 32, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            num_heads=4, in_features=32, qkv_features=32, decode=False, rngs=rngs
        )
        self.conv = nnx.Conv(32, 32, (3,), rngs=rngs)
        self.norm = nnx.LayerNorm(32, rngs=rngs)
        self.hidden = nnx.Linear(32, 64, rngs=rngs)
        self.out = nnx.Linear(64, 16, rngs=rngs)

    def __call__(self, tokens):
        h = self.embed(tokens)
        h = h + self.attention(h)
        h = h + self.conv(h)
        return self.out(nnx.gelu(self.hidden(self.norm(h))))


def test_analyze_params_classifies_an_nnx_model():
    model = _Transformerish(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    report = analyze_params(params)
    categories = {
        jax.tree_util.keystr(path[:-1], simple=True, separator="/"): category
        for (path, _), category in zip(
            jax.tree_util.tree_flatten_with_path(params)[0], _categories(params)[0], strict=True
        )
    }
    assert categories == {
        "attention/key/bias": "attention", "attention/key/kernel": "attention",
        "attention/out/bias": "bias", "attention/out/kernel": "attention",
        "attention/query/bias": "attention", "attention/query/kernel": "attention",
        "attention/value/bias": "attention", "attention/value/kernel": "attention",
        "conv/bias": "bias", "conv/kernel": "conv", "embed/embedding": "embedding",
        "hidden/bias": "bias", "hidden/kernel": "linear", "norm/bias": "norm",
        "norm/scale": "norm", "out/bias": "bias", "out/kernel": "linear",
    }  # fmt: skip
    sizes = [leaf.size for leaf in jax.tree.leaves(params)]
    assert report["total_params"] == sum(sizes)
    assert sum(report["layer_params"].values()) == sum(sizes)
    assert report["layer_params"]["linear"] == 32 * 64 + 64 * 16
    assert report["architecture"] == "transformer"
    assert report["c2_map"]["linear"] == 1e-5
    assert set(report["c2_map"]) == set(report["layer_counts"])
    assert "Good candidate for LAdamW" in report["recommendation"]


def test_auto_configure_trains_an_nnx_model():
    model = _Transformerish(nnx.Rngs(0))
    tx = auto_configure(nnx.state(model, nnx.Param), 3e-3, total_steps=80, weight_decay=1e-4)
    tokens = jax.random.randint(jax.random.key(0), (16, 12), 0, 16)
    targets = jnp.roll(tokens, 1, axis=1)  # learn to copy the previous token
    losses, optimizer = train_nnx_classifier(model, tx, tokens, targets, steps=80)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    # Only the dense kernels go to the c2=1e-5 group: its state holds them, the other masks them.
    smooth = optimizer.opt_state.inner_states["c2=1e-05"].inner_state[0]
    mu = jax.tree.leaves(smooth.mu, is_leaf=lambda x: isinstance(x, optax.MaskedNode))
    assert sum(not isinstance(m, optax.MaskedNode) for m in mu) == 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"Dense_0": {"kernel": (8, 8)}, "Dense_1": {"kernel": (8, 2)}}, "mlp"),
        ({"Conv_0": {"kernel": (3, 3, 1, 8)}, "Dense_0": {"kernel": (8, 2)}}, "cnn"),
        ({"RNN_0": {"cell": {"ii": {"kernel": (4, 8)}, "hi": {"kernel": (8, 8)}}}}, "rnn"),
        ({"LSTMCell_0": {"hf": {"kernel": (8, 8)}}}, "rnn"),
        ({"Block_0": {"SelfAttention_0": {"query": {"kernel": (8, 2, 4)}}}}, "transformer"),
        ({"layers_0": {"attn": {"q_proj": {"kernel": (8, 8)}}}}, "transformer"),
    ],
)
def test_architecture_from_linen_paths(params, expected):
    tree = jax.tree.map(jnp.zeros, params, is_leaf=lambda x: isinstance(x, tuple))
    assert analyze_params(tree)["architecture"] == expected


def test_untrained_leaves_are_not_counted():
    model = _Transformerish(nnx.Rngs(0))
    with_stats = {"params": nnx.state(model, nnx.Param), "step": jnp.zeros((), jnp.int32)}
    with_stats["rng"] = jax.random.key(0)
    assert analyze_params(with_stats) == analyze_params(nnx.state(model, nnx.Param))


def test_a_whole_nnx_model_or_state_counts_only_its_params():
    """BatchStats and RNG state are not trained; a norm's bias is a norm parameter whatever
    the layer is called (here Sequential's index)."""
    model = nnx.Sequential(
        nnx.Linear(4, 32, rngs=nnx.Rngs(0)),
        nnx.BatchNorm(32, rngs=nnx.Rngs(0)),
        nnx.Dropout(0.1, rngs=nnx.Rngs(1)),
    )
    report = analyze_params(nnx.state(model, nnx.Param))
    assert report["layer_counts"] == {"bias": 1, "linear": 1, "norm": 2}
    assert analyze_params(model) == report
    assert analyze_params(nnx.state(model)) == report


def test_linen_categories_and_no_benefit_message():
    params = {
        "Embed_0": {"embedding": jnp.zeros((10, 4))},
        "Conv_0": {"kernel": jnp.zeros((3, 3, 1, 4)), "bias": jnp.zeros(4)},
        "BatchNorm_0": {"scale": jnp.zeros(4), "bias": jnp.zeros(4)},
        "pos_embedding": jnp.zeros((16, 4)),
    }
    report = analyze_params(params)
    assert report["layer_counts"] == {"bias": 1, "conv": 1, "embedding": 2, "norm": 2}
    assert (
        "no layer types where LAdamW's Laplacian provides measured benefit"
        in (report["recommendation"])
    )
    assert "linear" not in report["c2_map"]


def test_auto_configure_inside_masked_and_with_abstract_params():
    params = {"fc": {"kernel": jnp.ones((32, 32)), "bias": jnp.ones(32)}}
    tx = optax.masked(auto_configure(params), {"fc": {"kernel": True, "bias": False}})
    state = tx.init(params)
    updates, _ = tx.update(params, state, params)
    assert updates["fc"]["kernel"].shape == (32, 32)
    np.testing.assert_array_equal(updates["fc"]["bias"], params["fc"]["bias"])  # untouched
    abstract = jax.eval_shape(auto_configure(params).init, params)
    assert jax.tree.structure(abstract) == jax.tree.structure(auto_configure(params).init(params))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: analyze_params({"w": [1.0, 2.0]}), TypeError, r"the leaf at \['w'\]\[0\] is a"),
        (lambda: analyze_params({}), ValueError, "no array leaves"),
        (lambda: auto_configure({"w": jnp.ones(3)}, weight_decay=-1.0), ValueError, ">= 0"),
        (
            lambda: auto_configure({"w": jnp.ones(3)}, optax.constant_schedule(1e-3), 100),
            ValueError,
            "learning_rate must be a number",
        ),
        (lambda: auto_configure({"w": jnp.ones(3)}, total_steps=0), ValueError, "positive"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


class _EveryLayer(nnx.Module):
    """Embed, MultiHeadAttention, Conv, LayerNorm and Linear: every category auto_configure has."""

    def __init__(self, rngs):
        self.embed = nnx.Embed(20, 16, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(2, 16, 16, decode=False, rngs=rngs)
        self.conv = nnx.Conv(16, 16, (3,), rngs=rngs)
        self.norm = nnx.LayerNorm(16, rngs=rngs)
        self.head = nnx.Linear(16, 20, rngs=rngs)


def test_auto_configure_with_plain_optax_on_nnx_states_linen_and_plain_dicts():
    model = _EveryLayer(nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    linen_names = {
        "embed": "Embed_0",
        "attention": "MultiHeadDotProductAttention_0",
        "conv": "Conv_0",
        "norm": "LayerNorm_0",
        "head": "Dense_0",
    }
    linen = {linen_names[name]: layer for name, layer in pure.items()}

    def two_steps(params):
        tx = auto_configure(params, learning_rate=1e-2, total_steps=100)
        opt_state = tx.init(params)
        for _ in range(2):
            grads = jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.5, params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        return params

    expected = two_steps(pure)
    from_state = two_steps(state)
    from_linen = two_steps(linen)
    for layer, linen_name in linen_names.items():
        for a, b in zip(
            jax.tree.leaves(from_linen[linen_name]), jax.tree.leaves(expected[layer]), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(from_state), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    # Through nnx.Optimizer (init sees the variables, update plain arrays): the same numbers.
    optimizer = nnx.Optimizer(
        model, auto_configure(state, learning_rate=1e-2, total_steps=100), wrt=nnx.Param
    )
    for _ in range(2):
        params = nnx.state(model, nnx.Param)
        optimizer.update(model, jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.5, params))
    for a, b in zip(
        jax.tree.leaves(nnx.state(model, nnx.Param)), jax.tree.leaves(expected), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    # The dense kernel moved by LAdamW with c2 = 1e-5, not by a different rule.
    assert not np.allclose(expected["head"]["kernel"], pure["head"]["kernel"])
