"""Helpers shared by the tests: the optimizer table, test trees and the PyTorch references."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ladam_optax

REPO = pathlib.Path(__file__).resolve().parents[1]
REFERENCE_DIR = pathlib.Path(os.environ.get("LADAM_REFERENCE_DIR", REPO / ".refs"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Every optimizer of the package: (factory, keyword arguments). The arguments set every numeric
# hyperparameter the factory has, so inject_hyperparams tests trace all of them.
OPTIMIZERS_UNDER_TEST = {
    "ladam": (ladam_optax.ladam, dict(learning_rate=1e-2, c2=0.1, weight_decay=1e-3)),
    "ladam_update_lap": (ladam_optax.ladam, dict(learning_rate=1e-2, c2=0.1, mode="update_lap")),
    "ladam_weight_lap": (ladam_optax.ladam, dict(learning_rate=1e-2, c2=1e-3, mode="weight_lap")),
    "wave_ladam": (
        ladam_optax.wave_ladam,
        dict(learning_rate=1e-2, c2=0.1, wave_E0=0.0, wave_dt=0.2),
    ),
    "ladamw": (ladam_optax.ladamw, dict(learning_rate=1e-2, c2=0.1, weight_decay=1e-2)),
    "ladagrad": (ladam_optax.ladagrad, dict(learning_rate=5e-2, c2=0.1, lr_decay=1e-2)),
    "lrmsprop": (ladam_optax.lrmsprop, dict(learning_rate=1e-2, c2=0.1, weight_decay=1e-3)),
    "lrmsprop_momentum": (ladam_optax.lrmsprop, dict(learning_rate=1e-2, c2=0.1, momentum=0.9)),
}


NAMES_UNDER_TEST = list(OPTIMIZERS_UNDER_TEST)


def build(name: str, **overrides):
    """The optimizer ``name`` of the table, with some keyword arguments replaced."""
    factory, kwargs = OPTIMIZERS_UNDER_TEST[name]
    return factory(**{**kwargs, **overrides})


# Leaves of every kind the Laplacian distinguishes, in PyTorch's (out, in, ...) layout.
AWKWARD_SHAPES = {
    "square": (32, 32),
    "dense": (24, 40),
    "long": (100,),
    "short": (3,),
    "tiny_vec": (6,),
    "cube": (6, 7, 5),
    "conv": (3, 3, 4, 8),
    "thin_rows": (2, 50),
    "thin_cols": (50, 2),
    "scalar": (),
}


def random_tree(shapes: dict, seed: int, dtype=np.float32) -> dict:
    """A dict of NumPy arrays of the given shapes, standard normal."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def quadratic_problem(shapes: dict | None = None, seed: int = 0):
    """(params, loss): a well-conditioned least-squares loss every optimizer can decrease."""
    shapes = shapes or {"w": (16, 24), "b": (24,), "k": (3, 3, 4, 4)}
    target = jax.tree.map(jnp.asarray, random_tree(shapes, seed))
    params = jax.tree.map(jnp.zeros_like, target)

    def loss(p):
        return sum(
            jnp.mean((a - b) ** 2)
            for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(target), strict=True)
        )

    return params, loss


def train_nnx_classifier(model, tx, inputs, labels, steps: int):
    """Trains a Flax NNX classifier full-batch with ``tx`` under ``nnx.jit`` (softmax
    cross-entropy on integer labels); returns the loss of every step and the optimizer."""
    import optax
    from flax import nnx

    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(inputs), labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    return [float(step(model, optimizer)) for _ in range(steps)], optimizer


def _missing(message: str):
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require(module: str, why: str) -> types.ModuleType:
    """Imports ``module``; skips outside CI (saying how to install it), fails in CI if absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        _missing(f"{module} is needed {why}: run `bash tests/run.sh`")


def require_torch() -> types.ModuleType:
    """PyTorch, for the parity tests."""
    return require("torch", "for the parity tests against the PyTorch reference")


def load_reference(version: str) -> types.ModuleType:
    """Imports the PyTorch ``ladam`` of ``version`` from ``REFERENCE_DIR/ladam-<version>``.

    The references are installed side by side by ``tests/run.sh`` (``pip install --target``) and
    imported under distinct module names. Outside CI a missing reference skips the test, saying
    how to install it; in CI it fails, so parity can never pass by being skipped.
    """
    require_torch()
    name = f"ladam_ref_{version.replace('.', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    package = REFERENCE_DIR / f"ladam-{version}" / "ladam"
    if not package.is_dir():
        _missing(f"reference ladam=={version} not found at {package}: run `bash tests/run.sh`")
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def torch_trajectory(optimizer_class, kwargs: dict, start: dict, noises: list[dict]) -> list:
    """The PyTorch reference's parameters after each step, from ``start`` (a flat dict of NumPy
    arrays), with gradients ``noise_t + p_t`` (``noises`` in the same layout)."""
    torch = require_torch()
    params = {k: torch.tensor(np.array(v)) for k, v in start.items()}
    for p in params.values():
        p.requires_grad_(True)
    optimizer = optimizer_class(list(params.values()), **kwargs)
    trajectory = []
    for noise in noises:
        for k, p in params.items():
            p.grad = torch.tensor(noise[k] + p.detach().numpy())
        optimizer.step()
        trajectory.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return trajectory


def jax_trajectory(tx, start, noises: list) -> list:
    """``tx``'s parameters after each jitted step from ``start`` (any pytree), with gradients
    ``noise_t + p_t``, as NumPy trees."""
    import optax

    @jax.jit
    def step(noise, state, params):
        grads = jax.tree.map(lambda n, p: n + p, noise, params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = jax.tree.map(jnp.asarray, start)
    state = tx.init(params)
    trajectory = []
    for noise in noises:
        params, state = step(jax.tree.map(jnp.asarray, noise), state, params)
        trajectory.append(jax.tree.map(np.asarray, params))
    return trajectory


def checkpoint_resume(tx, params, grads: list, directory, abstract_state=None, split: int = 3):
    """Runs ``len(grads)`` steps straight, and again with an Orbax save/restore after ``split``.

    Returns ``(uninterrupted, resumed, restored)``: the final ``{"params", "opt_state"}`` of
    both runs, and the tree that came back from the checkpoint. ``abstract_state`` is the
    restore target for the state (default ``jax.eval_shape(tx.init, params)``).
    """
    import optax

    ocp = require("orbax.checkpoint", "for checkpoint/resume")

    @jax.jit
    def step(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return state, optax.apply_updates(params, updates)

    def run(tree, gradients):
        state, p = tree["opt_state"], tree["params"]
        for g in gradients:
            state, p = step(g, state, p)
        return {"params": p, "opt_state": state}

    start = {"params": params, "opt_state": tx.init(params)}
    uninterrupted = run(start, grads)
    halfway = run(start, grads[:split])
    checkpointer = ocp.StandardCheckpointer()
    path = pathlib.Path(directory).resolve() / "checkpoint"
    checkpointer.save(path, halfway)
    checkpointer.wait_until_finished()
    target = {
        "params": jax.tree.map(ocp.utils.to_shape_dtype_struct, params),
        "opt_state": abstract_state
        if abstract_state is not None
        else jax.eval_shape(tx.init, params),
    }
    restored = checkpointer.restore(path, target)
    return uninterrupted, run(restored, grads[split:]), restored
