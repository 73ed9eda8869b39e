"""Every optimizer on a ("data", "model") mesh of 8 simulated CPU devices.

Sharded steps give the unsharded numbers, keep every leaf's sharding (updates and state alike),
exchange only halos (no all-gather in the compiled step), and work on Explicit-axes meshes.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import OPTIMIZERS_UNDER_TEST, build, checkpoint_resume, require

import ladam_optax

NAMES = list(OPTIMIZERS_UNDER_TEST)
LEAVES = {
    "both": ((64, 128), P("data", "model")),
    "model_only": ((48, 256), P(None, "model")),
    "vector": ((512,), P("data")),
    "conv": ((3, 3, 16, 32), P(None, None, None, "model")),
    "attention": ((64, 8, 16), P(None, "model", None)),  # (d_model, heads, head_dim)
    "bias": ((10,), P()),
}
STEPS = 3
# The largest array a halo exchange may move here: one row or column of a leaf's shard.
HALO_ELEMENTS = 1024


def _mesh(axis_type=AxisType.Auto):
    return jax.make_mesh((2, 4), ("data", "model"), axis_types=(axis_type,) * 2)


def _tree(seed):
    key = jax.random.key(seed)
    return {
        name: jax.random.normal(jax.random.fold_in(key, i), shape)
        for i, (name, (shape, _)) in enumerate(LEAVES.items())
    }


def _shard(tree, mesh):
    return {k: jax.device_put(v, NamedSharding(mesh, LEAVES[k][1])) for k, v in tree.items()}


def _step_fn(tx):
    def step(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return state, optax.apply_updates(params, updates), updates

    return jax.jit(step)


def _run(tx, mesh=None):
    params = _tree(0) if mesh is None else _shard(_tree(0), mesh)
    state = tx.init(params)
    step = _step_fn(tx)
    for seed in range(1, STEPS + 1):
        grads = _tree(seed) if mesh is None else _shard(_tree(seed), mesh)
        state, params, updates = step(grads, state, params)
    return state, params, updates


def _same_sharding(x, spec) -> bool:
    """Whether ``x`` (an array, ShapedArray or ShapeDtypeStruct) is laid out as ``spec``."""
    actual = tuple(x.sharding.spec)
    return actual + (None,) * (x.ndim - len(actual)) == tuple(spec) + (None,) * (x.ndim - len(spec))


def _leaf_name(path, leaf=None) -> str | None:
    """The parameter a state leaf shadows (None for scalars such as counts, which are
    replicated)."""
    keys = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
    if leaf is not None and leaf.ndim == 0:
        return None
    return keys[-1] if keys and keys[-1] in LEAVES else None


def test_eight_devices():
    assert jax.device_count() == 8


@pytest.mark.parametrize("name", NAMES)
def test_sharded_step_equals_unsharded_and_keeps_shardings(name):
    mesh = _mesh()
    tx = build(name)
    state, params, updates = _run(tx, mesh)
    _, expected, _ = _run(build(name))
    for key, (_, spec) in LEAVES.items():
        np.testing.assert_allclose(
            np.asarray(params[key]), np.asarray(expected[key]), rtol=2e-5, atol=1e-6, err_msg=key
        )
        assert _same_sharding(params[key], spec), key
        assert _same_sharding(updates[key], spec), key
    checked = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        key = _leaf_name(path, leaf)
        if key is not None:
            assert _same_sharding(leaf, LEAVES[key][1]), jax.tree_util.keystr(path)
            checked += 1
    assert checked >= len(LEAVES)  # every moment / accumulator leaf was looked at


COLLECTIVE = re.compile(r"= \(?([^=]*?)\)? (all-gather|all-to-all|all-reduce|collective-permute)\(")
SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")


@pytest.mark.parametrize("name", NAMES)
def test_compiled_step_exchanges_only_halos(name):
    mesh = _mesh()
    tx = build(name)
    params, grads = _shard(_tree(0), mesh), _shard(_tree(1), mesh)
    text = _step_fn(tx).lower(grads, tx.init(params), params).compile().as_text()
    kinds = [m.group(2) for m in COLLECTIVE.finditer(text)]
    assert "all-gather" not in kinds and "all-to-all" not in kinds
    assert "collective-permute" in kinds  # the halos are exchanged, not avoided by replication
    for match in COLLECTIVE.finditer(text):
        for dims in SHAPE.findall(match.group(1)):
            size = int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
            assert size <= HALO_ELEMENTS, match.group(0)


@pytest.mark.parametrize("name", NAMES)
def test_explicit_axes_mesh(name):
    mesh = _mesh(AxisType.Explicit)
    tx = build(name)
    with jax.set_mesh(mesh):
        params, grads = _shard(_tree(0), mesh), _shard(_tree(1), mesh)
        state = tx.init(params)
        after_init = jax.tree.map(jax.typeof, state)
        updates, eager_state = tx.update(grads, state, params)
        step = _step_fn(tx)
        jit_state, new_params, jit_updates = step(grads, state, params)
        traced = jax.eval_shape(step, grads, state, params)[0]
    # Without jax.set_mesh the leaves' types still carry the mesh: the same step works.
    outside_state, outside_params, _ = step(grads, state, params)
    assert jax.tree.map(jax.typeof, eager_state) == after_init
    assert jax.tree.map(jax.typeof, jit_state) == after_init
    assert jax.tree.map(jax.typeof, outside_state) == after_init
    for key in LEAVES:
        np.testing.assert_array_equal(np.asarray(outside_params[key]), np.asarray(new_params[key]))
    described = lambda a: (a.shape, a.dtype, a.sharding.spec)  # noqa: E731
    assert jax.tree.map(described, traced) == jax.tree.map(described, after_init)
    for key, (_, spec) in LEAVES.items():
        assert _same_sharding(new_params[key], spec), key
        np.testing.assert_allclose(
            np.asarray(jit_updates[key]), np.asarray(updates[key]), rtol=1e-5, atol=1e-7
        )


def _abstract_params(mesh):
    return {
        k: jax.ShapeDtypeStruct(shape, jnp.float32, sharding=NamedSharding(mesh, spec))
        for k, (shape, spec) in LEAVES.items()
    }


@pytest.mark.parametrize("name", NAMES)
def test_abstract_sharded_state(name):
    """How users build a sharded abstract state (e.g. a checkpoint restore target)."""
    tx = build(name)
    # Explicit axes: eval_shape carries every leaf's sharding.
    mesh = _mesh(AxisType.Explicit)
    with jax.set_mesh(mesh):
        state = jax.eval_shape(tx.init, _abstract_params(mesh))
    # Auto axes: init of sharded params gives state sharded like them, whose shapes, dtypes
    # and shardings make the same abstract state.
    concrete = tx.init(_shard(_tree(0), _mesh()))
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    assert len(flat) == len(jax.tree.leaves(concrete))
    for (path, leaf), other in zip(flat, jax.tree.leaves(concrete), strict=True):
        assert (leaf.shape, leaf.dtype) == (other.shape, other.dtype)
        if _leaf_name(path, leaf):
            spec = LEAVES[_leaf_name(path)][1]
            assert _same_sharding(leaf, spec), jax.tree_util.keystr(path)
            assert _same_sharding(other, spec), jax.tree_util.keystr(path)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_resume_on_the_mesh(name, tmp_path):
    """Save mid-training, restore into a sharded abstract target, continue: bit-identical."""
    mesh = _mesh()
    tx = build(name)
    params = _shard(_tree(0), mesh)
    grads = [_shard(_tree(seed), mesh) for seed in range(1, 7)]
    replicated = NamedSharding(mesh, P())

    def target(x):  # scalars (the step count) replicated on the mesh, the rest as they are
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding if x.ndim else replicated)

    abstract_state = jax.tree.map(target, tx.init(params))
    uninterrupted, resumed, restored = checkpoint_resume(
        tx, params, grads, tmp_path, abstract_state
    )
    assert jax.tree.structure(restored["opt_state"]) == jax.tree.structure(tx.init(params))
    for key, (_, spec) in LEAVES.items():
        assert _same_sharding(restored["params"][key], spec)
    for path, leaf in jax.tree_util.tree_flatten_with_path(restored["opt_state"])[0]:
        if _leaf_name(path, leaf):
            assert _same_sharding(leaf, LEAVES[_leaf_name(path)][1]), jax.tree_util.keystr(path)
    for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sharded_training_example(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "sharded_training.py"
    spec = importlib.util.spec_from_file_location("sharded_training", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--steps", "20", "--out", str(tmp_path)])
    assert result["devices"] == 8 and len(result["losses"]) == 20
    assert result["losses"][-1] < 0.5 * result["losses"][0]
    assert (tmp_path / "checkpoint").is_dir()
    out = capsys.readouterr().out
    assert "saved and restored" in out
    assert re.search(r"first moment (P|PartitionSpec)\(None, 'model'\)", out), out  # jax<0.8.1


# Flax-named leaves that torch_folds folds: a conv kernel sharded on its output axis, an
# attention out kernel and a query bias sharded on heads (and a query kernel beside them).
FOLDED_LEAVES = {
    ("Conv_0", "kernel"): ((3, 3, 16, 32), P(None, None, None, "model")),
    ("attention", "query", "kernel"): ((64, 8, 16), P(None, "model", None)),
    ("attention", "query", "bias"): ((8, 16), P("model", None)),
    ("attention", "out", "kernel"): ((8, 16, 64), P("model", None, None)),
}


def _nested(values: dict) -> dict:
    tree: dict = {}
    for path, value in values.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def _folded_tree(seed, mesh=None):
    key = jax.random.key(seed)
    values = {}
    for i, (path, (shape, spec)) in enumerate(FOLDED_LEAVES.items()):
        x = jax.random.normal(jax.random.fold_in(key, i), shape)
        values[path] = x if mesh is None else jax.device_put(x, NamedSharding(mesh, spec))
    return _nested(values)


def _flat_by_path(tree) -> dict:
    return {
        tuple(p.key for p in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


@pytest.mark.parametrize("name", NAMES)
def test_torch_folds_sharded_equal_unsharded_halos_only(name):
    mesh = _mesh()
    tx = build(name, fold=ladam_optax.torch_folds)
    step = _step_fn(tx)

    def run(mesh):
        params = _folded_tree(0, mesh)
        state = tx.init(params)
        for seed in range(1, STEPS + 1):
            state, params, updates = step(_folded_tree(seed, mesh), state, params)
        return state, params, updates

    state, params, updates = run(mesh)
    _, expected, _ = run(None)
    got, want, moved = _flat_by_path(params), _flat_by_path(expected), _flat_by_path(updates)
    for path, (_, spec) in FOLDED_LEAVES.items():
        np.testing.assert_allclose(got[path], want[path], rtol=2e-5, atol=1e-6, err_msg=str(path))
        assert _same_sharding(got[path], spec) and _same_sharding(moved[path], spec), path
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        keys = tuple(p.key for p in path if isinstance(p, jax.tree_util.DictKey))
        if leaf.ndim and keys in FOLDED_LEAVES:
            assert _same_sharding(leaf, FOLDED_LEAVES[keys][1]), jax.tree_util.keystr(path)
    params, grads = _folded_tree(0, mesh), _folded_tree(1, mesh)
    text = step.lower(grads, tx.init(params), params).compile().as_text()
    kinds = [m.group(2) for m in COLLECTIVE.finditer(text)]
    assert "all-gather" not in kinds and "all-to-all" not in kinds
    assert "collective-permute" in kinds


# A group of the field (its rows or its columns) over two sharded axes: one carries the halos,
# the other is gathered.
TWO_CUT_CASES = [
    ((8, 16, 24), P(None, "data", "model"), None),  # the columns (axes 1, 2)
    ((8, 16, 24), P("data", "model", None), ladam_optax.Fold((0, 1), (2,))),  # the rows
]


@pytest.mark.parametrize("mesh_kind", ["auto", "explicit", "explicit_without_set_mesh"])
@pytest.mark.parametrize(("shape", "spec", "fold"), TWO_CUT_CASES)
def test_a_group_sharded_over_two_axes_equals_one_device(shape, spec, fold, mesh_kind):
    mesh = _mesh(AxisType.Auto if mesh_kind == "auto" else AxisType.Explicit)
    x = jax.random.normal(jax.random.key(0), shape)
    sharded = jax.device_put(x, NamedSharding(mesh, spec))
    smooth = jax.jit(lambda y: ladam_optax.laplacian(y, fold=fold))
    with jax.set_mesh(mesh) if mesh_kind == "explicit" else contextlib.nullcontext():
        got = smooth(sharded)
    expected = ladam_optax.laplacian(x, fold=fold)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
    assert _same_sharding(got, spec)


require("hypothesis", "for the property-based tests")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MESH_AXES = (None, "data", "model", ("data", "model"))


@st.composite
def sharded_leaves(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(8 * draw(st.integers(1, 3)) for _ in range(ndim))
    spec, used = [], set()
    for _ in range(ndim):
        axis = draw(st.sampled_from(MESH_AXES))
        names = set() if axis is None else set(axis if isinstance(axis, tuple) else (axis,))
        spec.append(None if names & used else axis)
        used |= names
    return shape, P(*spec)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(leaf=sharded_leaves(), name=st.sampled_from(["ladam", "ladam_update_lap", "lrmsprop"]))
def test_random_partition_specs_sharded_equal_unsharded(leaf, name):
    shape, spec = leaf
    mesh = _mesh()
    tx = build(name)
    step = _step_fn(tx)

    def run(sharding):
        tree = lambda seed: {  # noqa: E731
            "w": jax.device_put(jax.random.normal(jax.random.key(seed), shape), sharding)
        }
        params = tree(0)
        state = tx.init(params)
        for seed in (1, 2):
            state, params, _ = step(tree(seed), state, params)
        return params["w"]

    sharded = run(NamedSharding(mesh, spec))
    expected = run(None)
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(expected), rtol=2e-5, atol=1e-6)
    assert _same_sharding(sharded, spec)


def test_smoothing_effect_on_a_sharded_state():
    tx = build("ladam")
    grads = jax.random.normal(jax.random.key(0), (64, 128))
    sharded = jax.device_put(grads, NamedSharding(_mesh(), P("data", "model")))
    state = tx.init({"w": sharded})
    _, state = jax.jit(tx.update)({"w": sharded}, state, {"w": sharded})
    _, plain = tx.update({"w": grads}, tx.init({"w": grads}), {"w": grads})
    effect = jax.jit(lambda s, g: ladam_optax.smoothing_effect(tx, s, {"w": g}, {"w": g}))(
        state, sharded
    )
    expected = ladam_optax.smoothing_effect(tx, plain, {"w": grads}, {"w": grads})
    for a, b in zip(jax.tree.leaves(effect), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)
    assert float(effect["w"].median) > 0.0
