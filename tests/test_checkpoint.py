"""Checkpoint and resume with Orbax: a bit-identical trajectory, the state's structure intact."""

import jax
import numpy as np
import pytest
from helpers import NAMES_UNDER_TEST, build, checkpoint_resume, random_tree

SHAPES = {"w": (16, 24), "b": (24,), "k": (3, 3, 4, 4), "s": ()}


@pytest.mark.parametrize("name", NAMES_UNDER_TEST)
def test_resume_is_bit_identical(name, tmp_path):
    tx = build(name)
    params = jax.tree.map(jax.numpy.asarray, random_tree(SHAPES, 0))
    grads = [jax.tree.map(jax.numpy.asarray, random_tree(SHAPES, s)) for s in range(1, 7)]
    uninterrupted, resumed, restored = checkpoint_resume(tx, params, grads, tmp_path)
    assert jax.tree.structure(restored["opt_state"]) == jax.tree.structure(tx.init(params))
    for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
