"""Shared by the benchmarks: the parameter tree, interleaved timing, the PyTorch reference."""

from __future__ import annotations

import functools
import importlib.util
import json
import pathlib
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import ladam_optax

T = TypeVar("T")
REPO = pathlib.Path(__file__).resolve().parents[1]

# Each LAdam-family optimizer: its optax counterpart (name, instance; equal to it at c2 = 0)
# and its constructor with the same learning rate bound.
PAIRS = {
    "ladam": ("adam", optax.adam(1e-3), functools.partial(ladam_optax.ladam, 1e-3)),
    "lrmsprop": (
        "rmsprop",
        optax.rmsprop(1e-3, eps_in_sqrt=False),
        functools.partial(ladam_optax.lrmsprop, 1e-3),
    ),
    "ladagrad": (
        "adagrad",
        optax.adagrad(1e-2, initial_accumulator_value=0.0),
        functools.partial(ladam_optax.ladagrad, 1e-2),
    ),
}


def transformer_shapes(blocks: int = 2, d_model: int = 512, vocab: int = 1000) -> dict:
    """The issue's transformer-like tree: ~6.8M parameters at the defaults."""
    shapes = {}
    for b in range(blocks):
        shapes |= {
            f"block{b}/qkv/kernel": (d_model, 3 * d_model),
            f"block{b}/qkv/bias": (3 * d_model,),
            f"block{b}/out/kernel": (d_model, d_model),
            f"block{b}/out/bias": (d_model,),
            f"block{b}/mlp_up/kernel": (d_model, 4 * d_model),
            f"block{b}/mlp_up/bias": (4 * d_model,),
            f"block{b}/mlp_down/kernel": (4 * d_model, d_model),
            f"block{b}/mlp_down/bias": (d_model,),
            f"block{b}/norm1/scale": (d_model,),
            f"block{b}/norm2/scale": (d_model,),
        }
    shapes["embed/embedding"] = (vocab, d_model)
    shapes["conv/kernel"] = (3, 3, 64, 64)
    return shapes


def random_params(shapes: dict, seed: int = 0) -> dict:
    key = jax.random.key(seed)
    return {
        name: jax.random.normal(jax.random.fold_in(key, i), shape, jnp.float32)
        for i, (name, shape) in enumerate(shapes.items())
    }


def apply_step(tx: optax.GradientTransformation):
    """``(grads, state, params) -> (state, params)``: update and apply, not yet jitted.

    The outputs come in the order of the donated inputs: JAX pairs each donated buffer with
    the first output of the same shape, so returning ``(params, state)`` would pair ``mu``
    with the params and make XLA copy every leaf (measured: optax.adam 3x slower).
    """

    def step(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return state, optax.apply_updates(params, updates)

    return step


def update_step(tx: optax.GradientTransformation):
    """:func:`apply_step` jitted with donated state and params."""
    return jax.jit(apply_step(tx), donate_argnums=(1, 2))


class Timer:
    """Prepares jitted update steps, warmed up, for :func:`interleaved` to time."""

    def __init__(self, params: dict, grads: dict | None = None):
        self.params = params
        self.grads = grads if grads is not None else jax.tree.map(lambda x: 1e-2 * x, params)

    def prepare(self, tx: optax.GradientTransformation, warmup: int = 2) -> Callable[[], float]:
        step = update_step(tx)
        params = jax.tree.map(jnp.copy, self.params)
        box = {"params": params, "state": tx.init(params)}

        def run() -> float:
            start = time.perf_counter()
            box["state"], box["params"] = step(self.grads, box["state"], box["params"])
            jax.block_until_ready(box["params"])
            return time.perf_counter() - start

        for _ in range(warmup):
            run()
        return run


def rounds(names, reps: int, seed: int = 0):
    """``reps`` rounds over ``names``, each in a fresh random order (seeded, reproducible).

    A fixed order A B C A B C ... charges whatever a step leaves behind (an intra-op thread
    pool still spinning on the second core, PyTorch's OpenMP threads, evicted caches) to the
    step after it, always the same one. Measured here: with the baseline timed right after
    the slow ``conv`` variant, a 512 x 512 leaf read ``ladam`` 1.04-1.09x ``optax.adam`` in
    fixed order and 1.33-1.35x shuffled, and on the transformer tree with the PyTorch
    reference in the round-robin, 1.39-1.45x fixed against 1.73x shuffled. Shuffled, each
    variant follows every other equally often on average.
    """
    rng = random.Random(seed)
    order = list(names)
    for _ in range(reps):
        rng.shuffle(order)
        yield list(order)


def in_rounds(
    calls: dict[str, Callable[[], T]], reps: int, desc: str | None = None
) -> dict[str, list[T]]:
    """Every callable's results, each called once per round for ``reps`` rounds in shuffled
    order (:func:`rounds`); with ``desc``, a progress bar of that name."""
    results: dict[str, list[T]] = {name: [] for name in calls}
    orders = rounds(calls, reps)
    for order in tqdm(orders, total=reps, desc=desc, disable=None) if desc else orders:
        for name in order:
            results[name].append(calls[name]())
    return results


def interleaved(runs: dict[str, Callable[[], float]], reps: int) -> dict[str, dict]:
    """Times every callable ``reps`` times (:func:`in_rounds`); median and min-max in ms."""
    ms = {name: [1e3 * t for t in s] for name, s in in_rounds(runs, reps).items()}
    return {
        name: {"median_ms": statistics.median(s), "min_ms": min(s), "max_ms": max(s)}
        for name, s in ms.items()
    }


def machine() -> dict:
    import os

    return {
        "jax": jax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def cold_compile(tx: optax.GradientTransformation, grads, params) -> dict[str, float]:
    """Seconds to trace, lower and compile :func:`apply_step` (state and params donated) from
    cold caches (``jax.clear_caches()``), as the first step of a fresh process pays them."""
    state = tx.init(params)
    jax.clear_caches()
    start = time.perf_counter()
    traced = jax.jit(apply_step(tx), donate_argnums=(1, 2)).trace(grads, state, params)
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    lowered.compile()
    done = time.perf_counter()
    return {
        "trace_s": traced_at - start,
        "lower_s": lowered_at - traced_at,
        "compile_s": done - lowered_at,
        "total_s": done - start,
    }


def cold_compiles(txs: dict, grads, params, reps: int, desc: str | None = None) -> dict:
    """:func:`cold_compile` of each transformation ``reps`` times, in shuffled rounds
    (:func:`in_rounds`)."""
    calls = {name: functools.partial(cold_compile, tx, grads, params) for name, tx in txs.items()}
    return in_rounds(calls, reps, desc)


def paired_ratios(baseline: list[float], ours: list[float]) -> dict[str, float]:
    """Median, min and max of ``ours[i] / baseline[i]``: each of our samples over the
    baseline's taken in the same round (:func:`rounds`), so slow drifts of the machine
    cancel."""
    ratios = [b / a for a, b in zip(baseline, ours, strict=True)]
    return {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def save(results: dict, path: pathlib.Path) -> dict:
    """Writes ``results`` to ``path`` as JSON, says so, and returns them."""
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return results


def load_torch_reference(version: str = "0.2.0"):
    """(torch, ladam module) from ``.refs/ladam-<version>`` (``bash tests/run.sh`` installs it),
    or ``None`` when PyTorch or the reference is not installed."""
    try:
        import torch
    except ImportError:
        return None
    package = REPO / ".refs" / f"ladam-{version}" / "ladam"
    if not package.is_dir():
        return None
    name = f"ladam_ref_{version.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return torch, module


def torch_tree(torch, arrays) -> list:
    """The tree's arrays as PyTorch tensors, each with ``.grad`` set to ``1e-2`` times itself
    (the gradients :class:`Timer` uses), for the reference's steps."""
    tensors = [torch.tensor(np.asarray(a)) for a in arrays]
    for t in tensors:
        t.grad = 1e-2 * t.clone()
    return tensors
