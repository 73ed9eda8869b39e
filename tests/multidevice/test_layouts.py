"""The default Laplacian in every common layout, on Auto and Explicit axes, and under every
transform a user applies to a train step (8 simulated CPU devices).

In each layout: the same numbers as one device, updates and state sharded like the params, and
in the compiled step no all-gather or all-to-all, only collective-permutes of halos (and at most
scalar all-reduces).
"""

from __future__ import annotations

import functools
import math
import re
import sys
from pathlib import Path

import jax
import jax.export
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import build

import ladam_optax

# A small transformer-like tree (d_model 32, 4 heads of 8) and its leaves' specs per layout.
SHAPES = {
    "embed": (64, 32),
    "query/kernel": (32, 4, 8),
    "query/bias": (4, 8),
    "out/kernel": (4, 8, 32),
    "up/kernel": (32, 128),
    "up/bias": (128,),
    "down/kernel": (128, 32),
    "norm/scale": (32,),
}
LAYOUTS = {
    "dp": {},
    "fsdp": {
        "embed": P(("data", "model"), None),
        "query/kernel": P(("data", "model"), None, None),
        "out/kernel": P(None, None, ("data", "model")),
        "up/kernel": P(None, ("data", "model")),
        "down/kernel": P(("data", "model"), None),
    },
    "tp": {
        "embed": P(None, "model"),
        "query/kernel": P(None, "model", None),
        "query/bias": P("model", None),
        "out/kernel": P("model", None, None),
        "up/kernel": P(None, "model"),
        "up/bias": P("model"),
        "down/kernel": P("model", None),
    },
    "mixed": {
        "embed": P("data", "model"),
        "query/kernel": P("data", "model", None),
        "query/bias": P("model", None),
        "out/kernel": P("model", None, "data"),
        "up/kernel": P("data", "model"),
        "up/bias": P("model"),
        "down/kernel": P("model", "data"),
    },
}
COLLECTIVE = re.compile(
    r"= \(?([^=]*?)\)? (all-gather|all-to-all|all-reduce|collective-permute)(?:-start)?\("
)
SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")
HALO_ELEMENTS = 512  # one edge slab of the largest leaf's shard


def _tree(seed: int) -> dict:
    key = jax.random.key(seed)
    return {
        name: jax.random.normal(jax.random.fold_in(key, i), shape)
        for i, (name, shape) in enumerate(SHAPES.items())
    }


def _mesh(axis_type) -> jax.sharding.Mesh:
    return jax.make_mesh((2, 4), ("data", "model"), axis_types=(axis_type,) * 2)


def _spec(layout: str, name: str) -> P:
    return LAYOUTS[layout].get(name, P())


def _place(tree: dict, mesh, layout: str) -> dict:
    return {k: jax.device_put(v, NamedSharding(mesh, _spec(layout, k))) for k, v in tree.items()}


def _step(tx):
    def step(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return state, optax.apply_updates(params, updates), updates

    return jax.jit(step)


def _padded(spec, ndim: int) -> tuple:
    return tuple(spec) + (None,) * (ndim - len(tuple(spec)))


def _assert_halos_only(text: str, sharded: bool) -> None:
    kinds = []
    for match in COLLECTIVE.finditer(text):
        kinds.append(match.group(2))
        assert match.group(2) not in ("all-gather", "all-to-all"), match.group(0)
        for dims in SHAPE.findall(match.group(1)):
            size = math.prod(int(d) for d in dims.split(",") if d)
            limit = 1 if match.group(2) == "all-reduce" else HALO_ELEMENTS
            assert size <= limit, match.group(0)
    assert ("collective-permute" in kinds) == sharded, kinds


@functools.cache
def _expected(name: str) -> tuple[dict, dict]:
    tx = build(name)
    params = _tree(0)
    _, params, updates = _step(tx)(_tree(1), tx.init(params), params)
    return params, updates


AXIS_TYPES = {
    "auto": AxisType.Auto,
    "explicit": AxisType.Explicit,  # no jax.set_mesh: the leaves' types carry the mesh
    "explicit_set_mesh": AxisType.Explicit,
}


# Every layout on both axis types; under jax.set_mesh, the two that shard every leaf's field.
LAYOUT_CASES = [(layout, axes) for layout in LAYOUTS for axes in ("auto", "explicit")] + [
    ("fsdp", "explicit_set_mesh"),
    ("mixed", "explicit_set_mesh"),
]


@pytest.mark.parametrize(("layout", "axes"), LAYOUT_CASES)
def test_layout_equals_one_device_keeps_shardings_and_exchanges_halos_only(layout, axes):
    mesh = _mesh(AXIS_TYPES[axes])
    tx = build("ladam")
    step = _step(tx)

    def run():
        params = _place(_tree(0), mesh, layout)
        state = tx.init(params)
        grads = _place(_tree(1), mesh, layout)
        text = step.lower(grads, state, params).compile().as_text()
        return (*step(grads, state, params), text)

    if axes == "explicit_set_mesh":
        with jax.set_mesh(mesh):
            state, params, updates, text = run()
    else:
        state, params, updates, text = run()
    want_params, want_updates = _expected("ladam")
    for key in SHAPES:
        np.testing.assert_allclose(params[key], want_params[key], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(updates[key], want_updates[key], rtol=2e-5, atol=1e-7)
        spec = _padded(_spec(layout, key), len(SHAPES[key]))
        assert _padded(params[key].sharding.spec, params[key].ndim) == spec, key
        assert _padded(updates[key].sharding.spec, updates[key].ndim) == spec, key
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        key = next((p.key for p in path if getattr(p, "key", None) in SHAPES), None)
        if key is not None and leaf.ndim:
            spec = _padded(_spec(layout, key), leaf.ndim)
            assert _padded(leaf.sharding.spec, leaf.ndim) == spec, jax.tree_util.keystr(path)
    _assert_halos_only(text, sharded=layout != "dp")


def test_one_device_of_many_is_one_device():
    """Placed on one device of the eight: no collective, the single-device numbers."""
    tx = build("ladam")
    params = jax.device_put(_tree(0), jax.devices()[5])
    grads = jax.device_put(_tree(1), jax.devices()[5])
    step = _step(tx)
    text = step.lower(grads, tx.init(params), params).compile().as_text()
    assert not COLLECTIVE.search(text)
    _, got, _ = step(grads, tx.init(params), params)
    want, _ = _expected("ladam")
    for key in SHAPES:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7)


def test_uneven_sharding_inside_jit_is_correct():
    """An axis its mesh axes do not divide (sharded inside jit): gathered, still correct."""
    mesh = _mesh(AxisType.Auto)
    x = jax.random.normal(jax.random.key(0), (30, 50))

    @jax.jit
    def lap(x):
        x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P("model", "data")))
        return ladam_optax.laplacian(x)

    np.testing.assert_allclose(lap(x), ladam_optax.laplacian(x), rtol=1e-5, atol=1e-5)


# Every transform a user applies to a train step, on a sharded layout of each axis type.
TRANSFORM_CASES = [("mixed", "auto"), ("tp", "explicit")]


def _in_mesh(axes, mesh):
    return jax.set_mesh(mesh) if axes != "auto" else _nothing()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize(("layout", "axes"), TRANSFORM_CASES)
def test_grad_through_an_update(layout, axes):
    """Meta-learning: the gradient of the loss after a step with respect to the learning
    rate, sharded and not."""
    mesh = _mesh(AXIS_TYPES[axes])

    def after_step(lr, grads, params):
        tx = ladam_optax.ladam(lr, c2=0.1)
        updates, _ = tx.update(grads, tx.init(params), params)
        new = optax.apply_updates(params, updates)
        return sum(jnp.sum(jnp.sin(p)) for p in jax.tree.leaves(new))

    meta = jax.jit(jax.grad(after_step))
    want = meta(1e-2, _tree(1), _tree(0))
    with _in_mesh(axes, mesh):
        got = meta(1e-2, _place(_tree(1), mesh, layout), _place(_tree(0), mesh, layout))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert float(got) != 0.0


@pytest.mark.parametrize(("layout", "axes"), TRANSFORM_CASES)
def test_vmap_over_a_batch_of_states(layout, axes):
    """Ensembles: two optimizer states stepped at once; member 1 equals its own run."""
    mesh = _mesh(AXIS_TYPES[axes])
    tx = build("ladam")
    step = _step(tx)
    want_params, _ = _expected("ladam")
    with _in_mesh(axes, mesh):
        params = _place(_tree(0), mesh, layout)
        grads = _place(_tree(1), mesh, layout)
        pair = jax.tree.map(lambda x: jnp.stack([0.5 * x, x]), (grads, params))
        states = jax.vmap(tx.init)(pair[1])
        _, stepped, _ = jax.jit(jax.vmap(step))(pair[0], states, pair[1])
        for key in SHAPES:
            np.testing.assert_allclose(stepped[key][1], want_params[key], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize(("layout", "axes"), TRANSFORM_CASES)
def test_eval_shape_aot_and_serialized_export(layout, axes):
    mesh = _mesh(AXIS_TYPES[axes])
    tx = build("ladam")
    step = _step(tx)
    with _in_mesh(axes, mesh):
        params = _place(_tree(0), mesh, layout)
        grads = _place(_tree(1), mesh, layout)
        state = tx.init(params)
        shapes = jax.eval_shape(step, grads, state, params)
        assert jax.tree.map(lambda s: s.shape, shapes[1]) == {k: v for k, v in SHAPES.items()}
        compiled = step.lower(grads, state, params).compile()
        _, got, _ = compiled(grads, state, params)

        def train_step(grads, params):  # flat arrays in and out: serializable
            updates, _ = tx.update(grads, tx.init(params), params)
            return optax.apply_updates(params, updates)

        platforms = ("cpu", "tpu", "cuda")
        exported = jax.export.export(jax.jit(train_step), platforms=platforms)(grads, params)
        restored = jax.export.deserialize(exported.serialize())
        called = restored.call(grads, params)
    want, _ = _expected("ladam")
    assert restored.platforms == platforms and restored.nr_devices == 8
    assert "CustomSPMDPartitioning" not in restored.mlir_module()
    for key in SHAPES:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(called[key], want[key], rtol=2e-5, atol=1e-6)


def _sharded_step_script():
    import importlib.util

    folder = Path(__file__).resolve().parents[2] / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # it imports its sibling _harness
    spec = importlib.util.spec_from_file_location("sharded_step", folder / "sharded_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, folder


def test_sharded_step_benchmark_smoke_and_the_guides_table(tmp_path):
    """The benchmark at its smallest setting writes every asked layout with ratios, compile
    ratios and halo-only collectives; the multi-device guide's table is what ``--report``
    prints from the committed results."""
    script, folder = _sharded_step_script()
    argv = "--reps 1 --compiles 1 --blocks 1 --d-model 32 --layouts one_device fsdp_auto"
    results = script.main([*argv.split(), "tp_explicit", "--out", str(tmp_path)])
    assert list(results["layouts"]) == ["one_device", "fsdp_auto", "tp_explicit"]
    for layout, row in results["layouts"].items():
        assert row["ratio_to_adam"]["ratio"] > 0 and row["compile_ratio"] > 0
        counts = row["ladam"]["collectives"]["counts"]
        assert "all-gather" not in counts and "all-to-all" not in counts, layout
        assert ("collective-permute" in counts) == (layout != "one_device"), layout
    committed = __import__("json").loads((folder / "results" / "sharded_step.json").read_text())
    guide = (folder.parent / "docs" / "multi_device.md").read_text()
    assert script.table(committed) in guide


def test_compile_time_benchmark_smoke_and_the_performance_table(tmp_path):
    """The compile benchmark at its smallest setting: both programs, one device and FSDP, with
    compile ratios and instruction counts; docs/performance.md shows the committed table."""
    _, folder = _sharded_step_script()  # puts benchmarks/ on sys.path
    import importlib.util

    spec = importlib.util.spec_from_file_location("compile_time", folder / "compile_time.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = "--reps 1 --blocks 1 --d-model 32 --train-blocks 1 --train-d-model 32 --out"
    results = script.main([*argv.split(), str(tmp_path)])
    assert list(results["programs"]) == [
        "update_one_device",
        "update_fsdp_auto",
        "update_fsdp_explicit",
        "train_one_device",
        "train_fsdp_auto",
    ]
    for row in results["programs"].values():
        assert row["ratio"] > 0
        assert row["ladam"]["instructions"] > row["adam"]["instructions"] > 0
        assert row["adam"]["fusions"] > 0
    committed = __import__("json").loads((folder / "results" / "compile_time.json").read_text())
    assert script.table(committed) in (folder.parent / "docs" / "performance.md").read_text()
