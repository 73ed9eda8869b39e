"""smoothing_effect against the steps of the same optimizer built at c2 and at c2 = 0."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import REPO
from test_folds import fold_oracle

import ladam_optax
from ladam_optax import Fold, SmoothingEffect, smoothing_effect, torch_folds

SHAPES = {
    "dense": (24, 40),
    "vector": (64,),
    "Conv_0": {"kernel": (3, 3, 4, 8)},
    "small": (3, 4),  # below min_spatial_size: not smoothed
    "thin": (2, 50),  # a side below 3: zero Laplacian
}

C2 = 0.1
# Every optimizer and mode: (factory, keyword arguments other than c2).
OPTIMIZERS = {
    "variance_lap": (ladam_optax.ladam, dict(learning_rate=1e-2, b2=0.99)),
    "update_lap": (ladam_optax.ladam, dict(learning_rate=1e-2, mode="update_lap")),
    "weight_lap": (
        ladam_optax.ladam,
        dict(learning_rate=1e-2, mode="weight_lap", weight_decay=1e-3),
    ),
    "ladamw": (ladam_optax.ladamw, dict(learning_rate=1e-2, weight_decay=1e-2)),
    "ladamw_update_lap": (
        ladam_optax.ladamw,
        dict(learning_rate=1e-2, mode="update_lap", weight_decay=1e-2),
    ),
    "ladamw_weight_lap": (
        ladam_optax.ladamw,
        dict(learning_rate=1e-2, mode="weight_lap", weight_decay=1e-2),
    ),
    "wave_ladam": (
        ladam_optax.wave_ladam,
        dict(learning_rate=1e-2, wave_dt=0.2, weight_decay=1e-3),
    ),
    "wave_ladamw": (ladam_optax.wave_ladamw, dict(learning_rate=1e-2, wave_dt=0.2)),
    "ladagrad": (ladam_optax.ladagrad, dict(learning_rate=5e-2)),
    "lrmsprop": (ladam_optax.lrmsprop, dict(learning_rate=1e-2, momentum=0.9)),
}


def _tree(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s), jnp.float32),
        SHAPES,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def _grads(seed):
    """Gradients of very different scales in different entries: a rough variance field."""
    return jax.tree.map(lambda g: g * jnp.abs(g) ** 3, _tree(seed))


def _trained_state(tx, params, steps=3):
    state = tx.init(params)
    for seed in range(1, steps + 1):
        _, state = tx.update(_grads(seed), state, params)
    return state


def _numpy_effect(step, plain):
    """(median, p99, max) of |u - u0| / |u0|, in float64."""
    wide = jnp.promote_types(step.dtype, jnp.float32)  # bf16 and complex as they are
    u, u0 = (np.asarray(x.astype(wide)).astype(np.complex128).ravel() for x in (step, plain))
    change, size = np.abs(u - u0), np.abs(u0)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(size > 0, change / size, np.where(change > 0, np.inf, 0.0))
    return np.median(relative), np.quantile(relative, 0.99), relative.max()


def _assert_effect(got, step, plain):
    """Every leaf of ``got`` against the NumPy summary of the two steps. (To 1e-6: the steps
    are float32, computed in other programs, so an unchanged entry can be a few ulp apart.)"""
    flat = jax.tree.leaves(got, is_leaf=lambda e: isinstance(e, SmoothingEffect))
    steps, plains = jax.tree.leaves(step), jax.tree.leaves(plain)
    assert len(flat) == len(steps) == len(plains)
    for effect, u, u0 in zip(flat, steps, plains, strict=True):
        assert all(x.dtype == jnp.float32 for x in effect)
        np.testing.assert_allclose(np.array(effect[:3]), _numpy_effect(u, u0), rtol=1e-4, atol=1e-6)


def _leaf(tree, name):
    return tree["Conv_0"]["kernel"] if name == "conv" else tree[name]


@pytest.mark.parametrize("fold", [None, torch_folds], ids=["default_fold", "torch_folds"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_matches_the_step_of_the_optimizer_built_at_c2_zero(name, fold):
    factory, kwargs = OPTIMIZERS[name]
    tx, plain_tx = factory(**kwargs, c2=C2, fold=fold), factory(**kwargs, c2=0.0, fold=fold)
    params = _tree(0)
    state = _trained_state(tx, params)
    grads = _grads(9)
    got = jax.jit(lambda s, g, p: smoothing_effect(tx, s, g, p))(state, grads, params)
    step, _ = tx.update(grads, state, params)
    plain, _ = plain_tx.update(grads, state, params)
    _assert_effect(got, step, plain)
    # The smoothing moved the smoothed leaves' steps, and only theirs.
    assert float(got["dense"].median) > 1e-4
    assert float(got["Conv_0"]["kernel"].max) > 1e-4
    # Below min_spatial_size nothing changes. ("thin" has no Laplacian, but variance_lap's
    # eps floor comes with c2 > 0 and can bind there: the oracle above has its numbers.)
    assert got["small"] == SmoothingEffect(*[np.float32(0)] * 4)
    if name not in ("variance_lap", "ladamw"):  # no floor, or one that c2 <= 0.3 never reaches
        assert all(float(clamped) == 0.0 for clamped in jax.tree.leaves(got)[3::4])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.complex64])
def test_bfloat16_and_complex_leaves(dtype):
    rng = np.random.default_rng(0)

    def tree():
        x = rng.standard_normal((24, 40)) + 1j * rng.standard_normal((24, 40))
        return {"w": jnp.asarray(x if dtype == jnp.complex64 else x.real, dtype)}

    tx, plain_tx = ladam_optax.ladam(1e-2, c2=C2), ladam_optax.ladam(1e-2, c2=0.0)
    params = tree()
    state = tx.init(params)
    for _ in range(3):
        _, state = tx.update(tree(), state, params)
    grads = tree()
    got = smoothing_effect(tx, state, grads, params)
    _assert_effect(
        got, tx.update(grads, state, params)[0], plain_tx.update(grads, state, params)[0]
    )
    assert float(got["w"].median) > 1e-3


def test_an_entry_moved_from_a_zero_step_has_an_infinite_change():
    """update_lap spreads the direction into an entry whose Adam step is 0: |u - u0| / 0."""
    tx = ladam_optax.ladam(1e-2, c2=C2, mode="update_lap")
    params = {"w": jnp.ones((8, 8))}
    grads = {"w": jnp.ones((8, 8)).at[3, 3].set(0.0)}  # a constant direction but for one 0
    effect = smoothing_effect(tx, tx.init(params), grads, params)["w"]
    assert float(effect.max) == np.inf and float(effect.median) == 0.0


def test_an_empty_leaf_reports_zeros():
    tx = ladam_optax.ladam(1e-2, c2=C2)
    params = {"empty": jnp.zeros((0, 7))}
    effect = smoothing_effect(tx, tx.init(params), params, params)
    assert effect["empty"] == SmoothingEffect(*[np.float32(0)] * 4)


def test_the_modes_differ_as_their_steps_do():
    """The three modes of ladam share a state type; the old diagnostic reported one number."""
    params, grads = _tree(0), _grads(9)
    medians = {}
    for mode in ("variance_lap", "update_lap", "weight_lap"):
        tx = ladam_optax.ladam(1e-3, c2=C2, mode=mode)
        state = _trained_state(tx, params)
        medians[mode] = float(smoothing_effect(tx, state, grads, params)["dense"].median)
    assert len(set(medians.values())) == 3
    assert medians["weight_lap"] > 100 * max(medians["update_lap"], medians["variance_lap"])


@pytest.mark.parametrize("name", ["variance_lap", "lrmsprop"])
def test_clamped_fraction_counts_the_entries_the_floor_changes(name):
    factory, kwargs = OPTIMIZERS[name]
    with pytest.warns(UserWarning, match="above"):
        tx = factory(**kwargs, c2=0.5)
    params = _tree(0)
    state = _trained_state(tx, params)
    grads = _grads(9)
    got = smoothing_effect(tx, state, grads, params)["dense"]
    _, new_state = tx.update(grads, state, params)
    nu = np.asarray(optax.tree.get(new_state, "nu")["dense"], np.float64)
    floor = 0.0
    if name == "variance_lap":
        nu, floor = nu / (1 - kwargs["b2"] ** 4), 1e-8
    # Below the floor the unfloored step is NaN (a negative root) or larger: it differs.
    smoothed = nu + 0.5 * fold_oracle(nu, Fold((0,), (1,)), "9point")
    expected = np.mean(smoothed < floor)
    assert expected > 0.0
    np.testing.assert_allclose(float(got.clamped_fraction), expected, rtol=1e-6)


# Every mode in the wrappers, and folds through them on two (each mode with and without folds
# is checked unwrapped above): the wrappers are the point here.
WRAPPED_CASES = [
    ("variance_lap", None),
    ("variance_lap", torch_folds),
    ("update_lap", None),
    ("weight_lap", None),
    ("ladamw", torch_folds),
    ("wave_ladam", None),
    ("wave_ladamw", None),
    ("ladagrad", None),
    ("lrmsprop", torch_folds),
]


@pytest.mark.parametrize(("name", "fold"), WRAPPED_CASES)
def test_inside_wrappers(name, fold):
    """chain, MultiSteps and partition against the plain optimizer's steps at c2 and c2 = 0;
    inject_hyperparams against its own step with c2 = 0 set in the state."""
    factory, kwargs = OPTIMIZERS[name]
    params, grads = _tree(0), _grads(9)

    def pair(c2):
        return factory(**kwargs, c2=c2, fold=fold)

    labels = jax.tree.map(lambda _: "smoothed", params)
    labels["vector"] = "plain"
    wrappers = {
        "chain": lambda tx: optax.chain(optax.clip_by_global_norm(1e9), tx),
        "multisteps": lambda tx: optax.MultiSteps(tx, every_k_schedule=1),
        "partition": lambda tx: optax.partition({"smoothed": tx, "plain": optax.sgd(1.0)}, labels),
    }
    for wrap in wrappers.values():
        tx, plain_tx = wrap(pair(C2)), wrap(pair(0.0))
        state = _trained_state(tx, params)
        got = smoothing_effect(tx, state, grads, params)
        _assert_effect(
            got, tx.update(grads, state, params)[0], plain_tx.update(grads, state, params)[0]
        )
        assert float(got["dense"].median) > 1e-4

    injected = optax.inject_hyperparams(factory, static_args=("fold",))(**kwargs, c2=C2, fold=fold)
    state = _trained_state(injected, params)
    got = jax.jit(lambda s, g, p: smoothing_effect(injected, s, g, p))(state, grads, params)
    at_zero = optax.tree.set(state, c2=jnp.zeros([], jnp.float32))
    step, plain = (
        jax.jit(injected.update)(grads, state, params)[0],
        jax.jit(injected.update)(grads, at_zero, params)[0],
    )
    _assert_effect(got, step, plain)
    assert float(got["dense"].median) > 1e-4


def test_multisteps_between_boundaries_reports_zero_then_the_step_change():
    tx = optax.MultiSteps(ladam_optax.ladam(1e-2, c2=C2), every_k_schedule=2)
    params = _tree(0)
    state = tx.init(params)
    _, state = tx.update(_grads(1), state, params)
    _, state = tx.update(_grads(2), state, params)
    between = smoothing_effect(tx, state, _grads(3), params)
    assert all(float(x) == 0.0 for x in jax.tree.leaves(between))
    _, state = tx.update(_grads(3), state, params)
    boundary = smoothing_effect(tx, state, _grads(4), params)
    plain = optax.MultiSteps(ladam_optax.ladam(1e-2, c2=0.0), every_k_schedule=2)
    _assert_effect(
        boundary, tx.update(_grads(4), state, params)[0], plain.update(_grads(4), state, params)[0]
    )
    assert float(boundary["dense"].median) > 1e-4


@pytest.mark.parametrize("name", ["ladamw", "update_lap", "weight_lap", "ladagrad"])
def test_nnx_optimizer(name):
    from flax import nnx

    factory, kwargs = OPTIMIZERS[name]

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(4, 8, (3, 3), rngs=rngs)
            self.linear = nnx.Linear(8 * 36, 24, rngs=rngs)

        def __call__(self, x):
            return self.linear(jnp.tanh(self.conv(x)).reshape(x.shape[0], -1))

    model = Model(nnx.Rngs(0))
    tx = factory(**kwargs, c2=C2, fold=torch_folds)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(1), (4, 6, 6, 4))

    def loss(model):
        return jnp.mean(model(x) ** 2)

    for _ in range(2):
        optimizer.update(model, nnx.grad(loss)(model))
    grads = nnx.grad(loss)(model)
    params = nnx.state(model, nnx.Param)
    got = smoothing_effect(optimizer.tx, optimizer.opt_state, grads, params)

    def pure(tree):  # nnx.as_pure, which flax 0.12.0 lacks
        return jax.tree.map(
            lambda x: x[...] if isinstance(x, nnx.Variable) else x,
            tree,
            is_leaf=lambda x: isinstance(x, nnx.Variable),
        )

    state, pure_grads, pure_params = pure(optimizer.opt_state), pure(grads), pure(params)
    plain_tx = factory(**kwargs, c2=0.0, fold=torch_folds)
    step = tx.update(pure_grads, state, pure_params)[0]
    plain = plain_tx.update(pure_grads, state, pure_params)[0]
    _assert_effect(got, step, plain)
    assert float(got["conv"]["kernel"].median) > 1e-4


def test_the_state_passed_first_says_what_to_pass():
    tx = ladam_optax.ladam(1e-3, c2=C2)
    state = tx.init(_tree(0))
    with pytest.raises(TypeError, match=r"smoothing_effect\(tx, opt_state, grads, params\)"):
        smoothing_effect(state, C2, _grads(1))  # pyright: ignore[reportArgumentType]


def test_an_optimizer_without_smoothing_is_refused():
    tx = optax.adam(1e-3)
    params = _tree(0)
    with pytest.raises(ValueError, match="none of ladam_optax's transformations"):
        smoothing_effect(tx, tx.init(params), _grads(1), params)


def test_an_update_compiled_apart_is_refused_not_misread():
    inner = ladam_optax.ladam(1e-3, c2=C2)
    compiled = optax.GradientTransformation(inner.init, jax.jit(inner.update))
    params = _tree(0)
    state = compiled.init(params)
    compiled.update(_grads(1), state, params)  # traced and cached before the diagnostic
    with pytest.raises(ValueError, match="compiled apart"):
        smoothing_effect(compiled, state, _grads(1), params)


def test_one_link_compiled_apart_is_refused_not_read_as_unchanged():
    # Two smoothing links under partition, one of them behind its own jit: measuring would
    # see only the other and report 0 for the hidden one's leaves.
    inner = ladam_optax.ladam(1e-3, c2=C2)
    hidden = optax.GradientTransformation(inner.init, jax.jit(inner.update))
    params = {"a": jnp.ones((24, 40)), "b": jnp.ones((24, 40))}
    grads = {name: jax.random.normal(jax.random.key(i), (24, 40)) for i, name in enumerate("ab")}
    tx = optax.partition({"x": hidden, "y": inner}, {"a": "x", "b": "y"})
    state = tx.init(params)
    tx.update(grads, state, params)  # the hidden link traced and cached before the diagnostic
    with pytest.raises(ValueError, match=r"holds 2 of ladam_optax's .* but tx\.update ran 1 of"):
        smoothing_effect(tx, state, grads, params)
    visible = optax.partition({"x": inner, "y": inner}, {"a": "x", "b": "y"})
    effect = smoothing_effect(visible, visible.init(params), grads, params)
    assert float(effect["a"].median) > 0.0 and float(effect["b"].median) > 0.0


def test_a_weight_diffusion_does_not_stand_in_for_a_link_compiled_apart():
    # add_weight_diffusion has no state of its own: its running must not count for the hidden
    # scale_by_ladam's, whose leaves would read as unchanged.
    inner = ladam_optax.scale_by_ladam(c2=C2)
    hidden = optax.GradientTransformation(inner.init, jax.jit(inner.update))
    tx = optax.chain(
        hidden, optax.scale_by_learning_rate(1e-2), ladam_optax.add_weight_diffusion(c2=C2)
    )
    params = {"w": jnp.ones((8, 8))}
    grads = {"w": jax.random.normal(jax.random.key(0), (8, 8))}
    state = tx.init(params)
    tx.update(grads, state, params)  # the hidden link traced and cached before the diagnostic
    with pytest.raises(ValueError, match=r"holds 1 of ladam_optax's .* but tx\.update ran 0 of"):
        smoothing_effect(tx, state, grads, params)


def test_a_diverged_state_is_not_a_number():
    tx = ladam_optax.ladam(1e-3, c2=C2)
    params = _tree(0)
    state = _trained_state(tx, params)
    nu = optax.tree.get(state, "nu")
    diverged = optax.tree.set(state, nu={**nu, "dense": nu["dense"].at[0, 0].set(jnp.nan)})
    with pytest.raises(ValueError, match=r"optimizer state is not finite at .*'dense'"):
        smoothing_effect(tx, diverged, _grads(9), params)
    with pytest.raises(ValueError, match=r"gradients are not finite at \['vector'\]"):
        smoothing_effect(tx, state, {**_grads(9), "vector": jnp.full(64, jnp.inf)}, params)
    traced = jax.jit(lambda s: smoothing_effect(tx, s, _grads(9), params))(diverged)
    assert all(np.isnan(float(x)) for x in traced["dense"])
    assert float(traced["vector"].median) > 0.0  # the other leaves' steps are finite


def test_on_a_sharded_state():
    """8 simulated devices need a process of their own."""
    script = textwrap.dedent(
        """
        import jax
        jax.config.update("jax_num_cpu_devices", 8)
        import numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        import ladam_optax

        transposed = {"w": ladam_optax.Fold(rows=(1,), cols=(0,))}
        explicit, auto = jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto
        for axis_type, factory, kwargs, fold in (
            (explicit, ladam_optax.ladam, {"mode": "variance_lap"}, None),
            (explicit, ladam_optax.ladam, {"mode": "weight_lap"}, transposed),
            (auto, ladam_optax.ladam, {"mode": "update_lap"}, transposed),
            (explicit, ladam_optax.lrmsprop, {}, None),
            (auto, ladam_optax.ladagrad, {}, transposed),
            (auto, ladam_optax.wave_ladamw, {"weight_decay": 1e-2}, None),
        ):
            mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(axis_type,) * 2)
            sharding = NamedSharding(mesh, P("data", "model"))
            tx = factory(1e-2, c2=0.1, fold=fold, **kwargs)
            plain_tx = factory(1e-2, c2=0.0, fold=fold, **kwargs)
            grads = {"w": jax.random.normal(jax.random.key(0), (64, 128)) ** 3}
            params = {"w": jax.random.normal(jax.random.key(1), (64, 128))}
            sharded = jax.device_put((grads, params), sharding)
            state = tx.init(sharded[1])
            _, state = jax.jit(tx.update)(sharded[0], state, sharded[1])
            effect = jax.jit(lambda s, g, p: ladam_optax.smoothing_effect(tx, s, g, p))(
                state, *sharded
            )
            u = np.asarray(tx.update(sharded[0], state, sharded[1])[0]["w"], np.float64)
            u0 = np.asarray(plain_tx.update(sharded[0], state, sharded[1])[0]["w"], np.float64)
            relative = np.abs(u - u0) / np.abs(u0)
            np.testing.assert_allclose(float(effect["w"].median), np.median(relative), rtol=1e-4)
            np.testing.assert_allclose(float(effect["w"].max), relative.max(), rtol=1e-3)
            moments = [x for x in jax.tree.leaves(state) if x.ndim == 2]
            assert moments and all(len(x.sharding.device_set) == 8 for x in moments)
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
