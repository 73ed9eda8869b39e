"""Cross-platform lowering: the jitted train step of every optimizer and every Laplacian
implementation exports for CUDA, ROCm and TPU (``jax.export``, no hardware needed), so no
CPU-only operation can slip into the GPU/TPU path unseen."""

from __future__ import annotations

import jax
import jax.export
import jax.numpy as jnp
import optax
import pytest
from helpers import NAMES_UNDER_TEST, build

import ladam_optax

PLATFORMS = ("cuda", "rocm", "tpu")
PARAMS = {
    "dense": jnp.ones((24, 40)),
    "Conv_0": {"kernel": jnp.ones((3, 3, 4, 8))},  # folded by torch_folds
    "bias": jnp.ones((32,)),
    "scale": jnp.ones(()),
}


@pytest.mark.parametrize("impl", ["auto", "conv"])
@pytest.mark.parametrize("name", NAMES_UNDER_TEST)
def test_train_step_exports_for_gpu_and_tpu(name, impl):
    tx = build(name, laplacian_impl=impl, fold=ladam_optax.torch_folds)

    def loss(params):
        return sum(jnp.sum(jnp.sin(p) ** 2) for p in jax.tree.leaves(params))

    def train_step(params, state):
        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    exported = jax.export.export(jax.jit(train_step), platforms=PLATFORMS)(PARAMS, tx.init(PARAMS))
    assert exported.platforms == PLATFORMS
    text = exported.mlir_module()
    assert "stablehlo" in text and "custom_call @cpu" not in text.lower()
