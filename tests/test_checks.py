"""The construction- and update-time checks every optimizer shares (ladam_optax._checks)."""

import jax.numpy as jnp
import optax
import pytest
from helpers import NAMES_UNDER_TEST, build

PARAMS = {"b": jnp.ones(16), "w": jnp.ones((16, 16))}


@pytest.mark.parametrize("name", NAMES_UNDER_TEST)
def test_a_grads_tree_missing_or_adding_a_key_names_the_params_keys_as_expected(name):
    tx = build(name)
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"expected keys: \['b', 'w'\]; present keys: \['w'\]"):
        tx.update({"w": jnp.ones((16, 16))}, state, PARAMS)
    extra = {**PARAMS, "c": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"expected keys: \['b', 'w'\]; present keys: \['b', 'c'"):
        tx.update(extra, state, PARAMS)
    with pytest.raises(ValueError, match=r"the update at \['w'\] has shape \(16, 15\), but its"):
        tx.update({"b": jnp.ones(16), "w": jnp.ones((16, 15))}, state, PARAMS)


@pytest.mark.parametrize("name", ["ladam", "ladagrad", "lrmsprop"])
def test_masked_leaves_are_not_checked_against_the_updates(name):
    tx = optax.masked(build(name), {"b": False, "w": True})
    updates, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS)
    assert updates["w"].shape == (16, 16) and updates["b"].shape == (16,)
