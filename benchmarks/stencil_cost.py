"""Where the Laplacian's cost goes: the update's main loop alone, per stencil form.

The LAdam update writes its moments like Adam, then one loop reads the new second moment and
writes the parameters. The Laplacian lives in that loop. This script times that loop alone,
``p - lr * m / (sqrt(max(v + c2 * lap(v), eps)) + eps)`` over the 2-D leaves of the
transformer-like tree (jit, ``p`` donated, interleaved, medians), for:

- ``adam``: no Laplacian (``lap(v) = 0``), the floor;
- ``taps1``: one zero-padded tap (``v[i - 1, j]``), the price of a single shifted read;
- ``5point``, ``9point``: the periodic stencils as ``ladam_optax`` computes them (``"slices"``);
- ``9point_zero``: the 9-point stencil with every tap a zero-padded shift (``pad`` of a
  ``slice``), no wrap-around: *wrong at the edges*, a diagnostic only (the previous default's
  loop without its ring);
- ``9point_inner``: the default's interior alone (plain slices, one ``pad`` of the result),
  zeros on the outer ring: *wrong there*, a diagnostic only, the default without its ring;

and the time to compile each loop from cold caches (the ring is one small kernel per 2-D leaf:
XLA:CPU compiles one even for leaves of equal shape). Writes
``OUT/stencil_cost.json``.

    python benchmarks/stencil_cost.py [--reps 40] [--compile-reps 7] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from _harness import in_rounds, interleaved, machine, random_params, save, transformer_shapes
from jax import lax

from ladam_optax import _laplacian

C2, LR, EPS = np.float32(1e-4), np.float32(1e-3), np.float32(1e-8)


def _zero_padded_9point(field: jax.Array) -> jax.Array:
    """The 9-point stencil with zeros outside ``field``, every tap a ``pad`` of a ``slice``
    (the previous default's loop, without its ring): diagnostic only, wrong at the edges."""
    taps = [_laplacian._shifted(field, (a, b)) for a in (-1, 0, 1) for b in (-1, 0, 1) if a or b]
    corners = (taps[0] + taps[2]) + (taps[5] + taps[7])
    edges = (taps[1] + taps[6]) + (taps[3] + taps[4])
    return (corners + 4.0 * edges - 20.0 * field) / 6.0


def _interior_9point(field: jax.Array) -> jax.Array:
    """The default's interior alone, zeros on the outer ring: diagnostic only, wrong there."""
    return _laplacian.zero_ring(_laplacian.interior_taps(field, "9point")) / 6.0


def _on_field(stencil):
    """``stencil`` applied to the 2-D field view of a leaf, as the package folds it."""

    def apply(v: jax.Array) -> jax.Array:
        field = lax.reshape(v, _laplacian.folded_shape(v.shape))
        return lax.reshape(stencil(field), v.shape)

    return apply


STENCILS = {
    "adam": None,
    "taps1": _on_field(lambda field: _laplacian._shifted(field, (-1, 0))),
    "5point": lambda v: _laplacian.periodic_laplacian(v, "5point", "slices"),
    "9point": lambda v: _laplacian.periodic_laplacian(v, "9point", "slices"),
    "9point_zero": _on_field(_zero_padded_9point),
    "9point_inner": _on_field(_interior_9point),
}


def main_loop(stencil):
    """The update's last loop over a tree, ``p`` donated."""

    def leaf(p, m, v):
        s = v if stencil is None else lax.max(v + C2 * stencil(v), EPS)
        return p - LR * m / (lax.sqrt(s) + EPS)

    return jax.jit(lambda p, m, v: jax.tree.map(leaf, p, m, v), donate_argnums=0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=40, help="timed loops per variant")
    parser.add_argument("--compile-reps", type=int, default=7, help="cold compiles per variant")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    shapes = {k: s for k, s in transformer_shapes().items() if len(s) >= 2}
    p0, m = random_params(shapes, 0), random_params(shapes, 1)
    v = jax.tree.map(jnp.abs, random_params(shapes, 2))

    def runner(stencil):
        loop, box = main_loop(stencil), {"p": jax.tree.map(jnp.copy, p0)}

        def run() -> float:
            start = time.perf_counter()
            box["p"] = loop(box["p"], m, v)
            jax.block_until_ready(box["p"])
            return time.perf_counter() - start

        run(), run()  # compile, warm up
        return run

    timed = interleaved({name: runner(s) for name, s in STENCILS.items()}, args.reps)

    def cold_compile(stencil) -> float:
        jax.clear_caches()
        start = time.perf_counter()
        main_loop(stencil).lower(p0, m, v).compile()
        return time.perf_counter() - start

    calls = {name: functools.partial(cold_compile, s) for name, s in STENCILS.items()}
    compiles = in_rounds(calls, args.compile_reps, desc="compile")

    base_ms = timed["adam"]["median_ms"]
    base_s = statistics.median(compiles["adam"])
    n = sum(x.size for x in jax.tree.leaves(p0))
    print(f"\nmain loop over the tree's 2-D leaves ({n / 1e6:.2f}M parameters), {args.reps} reps")
    print(f"{'loop':<13}{'ms':>7}{'spread ms':>13}{'x adam':>8}{'compile s':>11}{'x adam':>8}")
    rows = []
    for name, r in timed.items():
        compile_s = statistics.median(compiles[name])
        row = {"loop": name} | r | {"ratio": r["median_ms"] / base_ms}
        row |= {"compile_s": compile_s, "compile_ratio": compile_s / base_s}
        rows.append(row)
        spread = f"{r['min_ms']:.2f}-{r['max_ms']:.2f}"
        print(
            f"{name:<13}{r['median_ms']:>7.2f}{spread:>13}{row['ratio']:>8.2f}"
            f"{compile_s:>11.3f}{row['compile_ratio']:>8.2f}"
        )
    results = {"machine": machine(), "reps": args.reps, "params": int(n), "rows": rows}
    return save(results, args.out / "stencil_cost.json")


if __name__ == "__main__":
    main()
