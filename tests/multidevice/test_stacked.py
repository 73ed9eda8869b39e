"""Stacked layers on 8 simulated CPU devices: the batch axes of the sharded operator.

- vmap of the Laplacian over a stack of sharded leaves, returned unstacked: once wrong by 0.1
  (XLA's CPU backend shared the stack's buffer with a fused consumer that still read it);
  every variation here against NumPy, on Auto axes (Shardy and GSPMD) and Explicit axes.
- A stacked leaf sharded on its layer axis needs no collective; sharded on a field axis, halos
  only; either way each layer's step is the unrolled layer's.
"""

from __future__ import annotations

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
from helpers import build
from test_laplacian import oracle

import ladam_optax
from ladam_optax import stacked


@pytest.fixture(params=["auto-shardy", "auto-gspmd", "explicit"])
def axis_type(request):
    """The mesh's axis type, and for Auto axes the partitioner (Explicit axes are traced by
    shard_map: no partitioner callback is involved)."""
    previous = jax.config.jax_use_shardy_partitioner
    jax.config.update("jax_use_shardy_partitioner", request.param != "auto-gspmd")
    try:
        yield AxisType.Explicit if request.param == "explicit" else AxisType.Auto
    finally:
        jax.config.update("jax_use_shardy_partitioner", previous)


def _smoothed_root(v, lap):
    return jnp.sqrt(jnp.maximum(v + 0.1 * lap, 1e-8))


UNSTACKED_CASES = [
    (12, (256, 64), P("fsdp")),  # the original report: rows sharded
    (12, (256, 64), P(None, "fsdp")),  # columns sharded
    (5, (64, 32), P("fsdp")),  # just past the four leaves that happened to pass
    (12, (64, 8, 16), P(None, "fsdp")),  # a column group of two axes: a reshaped block
    (6, (8, 64, 16), P(None, "fsdp")),
    (3, (16, 4, 8, 16), P(None, None, "fsdp")),  # sharded inside a group: carried at the ends
    (3, (16, 4, 8, 2), P(None, None, "fsdp")),  # a last axis of 2: a reshaped block
]


@pytest.mark.parametrize(("count", "shape", "spec"), UNSTACKED_CASES, ids=str)
def test_vmap_over_a_stack_returned_unstacked(count, shape, spec, axis_type):
    mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(axis_type,))
    rng = np.random.default_rng(1)
    host = [rng.random(shape, dtype=np.float32) for _ in range(count)]
    leaves = [jax.device_put(x, NamedSharding(mesh, spec)) for x in host]

    @jax.jit
    def unstacked(leaves):
        stack = jnp.stack(leaves)
        lap = jax.vmap(lambda x: ladam_optax.laplacian(x, "9point"))(stack)
        return list(_smoothed_root(stack, lap))

    expected = [np.sqrt(np.maximum(x + 0.1 * oracle(x, "9point"), 1e-8)) for x in host]
    got = unstacked(leaves)  # Explicit axes: the leaves' types carry the mesh
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(np.asarray(g), e, atol=1e-6)


COLLECTIVE = re.compile(r"(all-gather|all-to-all|all-reduce|collective-permute)\(")
STACK_SHAPES = {"layers": {"kernel": (8, 32, 48), "bias": (8, 48)}}


def _tree(seed):
    key = jax.random.key(seed)
    return {
        "layers": {
            name: jax.random.normal(jax.random.fold_in(key, i), shape)
            for i, (name, shape) in enumerate(STACK_SHAPES["layers"].items())
        }
    }


def _unrolled(tree):
    return {f"layer_{i}": jax.tree.map(lambda x, i=i: x[i], tree["layers"]) for i in range(8)}


@pytest.mark.parametrize(
    ("specs", "collectives"),
    [
        ({"kernel": P("fsdp"), "bias": P("fsdp")}, set()),  # layer axis: no collective
        ({"kernel": P(None, "fsdp"), "bias": P(None, "fsdp")}, {"collective-permute"}),
        ({"kernel": P(None, None, "fsdp"), "bias": P()}, {"collective-permute"}),
    ],
    ids=["layer_axis", "rows", "columns"],
)
@pytest.mark.parametrize("name", ["ladam", "wave_ladam", "lrmsprop"])
def test_sharded_stack_steps_each_layer_as_unrolled(name, axis_type, specs, collectives):
    mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(axis_type,))

    def shard(tree):
        return {
            "layers": {
                k: jax.device_put(v, NamedSharding(mesh, specs[k]))
                for k, v in tree["layers"].items()
            }
        }

    tx = build(name, fold=stacked({"layers": 0}))
    params = shard(_tree(0))
    state = tx.init(params)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    grads = [shard(_tree(seed)) for seed in (1, 2)]
    text = step.lower(grads[0], state, params).compile().as_text()
    if name == "wave_ladam" and collectives:  # the rest energy: one mean(g^2) per layer
        collectives = collectives | {"all-reduce"}
    assert {m.group(1) for m in COLLECTIVE.finditer(text)} == collectives
    for g in grads:
        updates, state = step(g, state, params)
        params = optax.apply_updates(params, updates)
    for k, spec in specs.items():
        actual = tuple(params["layers"][k].sharding.spec)
        assert actual + (None,) * (3 - len(actual)) == tuple(spec) + (None,) * (3 - len(spec))

    plain = build(name)
    flat = _unrolled(_tree(0))
    flat_state = plain.init(flat)
    for seed in (1, 2):
        updates, flat_state = plain.update(_unrolled(_tree(seed)), flat_state, flat)
        flat = optax.apply_updates(flat, updates)
    for got, want in zip(
        jax.tree.leaves(_unrolled(jax.device_get(params))), jax.tree.leaves(flat), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
