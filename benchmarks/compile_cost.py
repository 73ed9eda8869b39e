"""Where the update's compile time goes: trace, lower and XLA compile, per part of the stencil.

The first step of a fresh process traces, lowers and compiles the update. This script does
that from cold caches (``jax.clear_caches()`` before each) for an optax baseline and the LAdam
family member built on it, interleaved, and splits the time into tracing (Python), lowering
(to StableHLO) and XLA's compile. Besides the real update (``laplacian_impl="slices"``, the
default) it compiles three *diagnostic* stencils, registered here only and wrong on purpose,
which show what each part of the stencil costs:

- ``no_wrap``: the 2-D stencil's interior alone, zeros on the outer ring (no ring kernel), 1-D
  leaves as usual;
- ``no_1d``: the 2-D stencil as usual, a zero Laplacian for 1-D leaves;
- ``zero``: a zero Laplacian everywhere: the family's own bookkeeping, the floor of any stencil.

Writes ``OUT/compile_cost.json``.

    python benchmarks/compile_cost.py [--optimizers ladam lrmsprop ladagrad] [--reps 15]
        [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import statistics

from _harness import (
    PAIRS,
    cold_compiles,
    machine,
    paired_ratios,
    random_params,
    save,
    transformer_shapes,
)
from jax import lax

from ladam_optax import _laplacian


def _no_wrap(field, stencil):
    if field.ndim == 1:
        return _laplacian._laplacian_slices(field, stencil)
    inner = _laplacian.zero_ring(_laplacian.interior_taps(field, stencil))
    return _laplacian._unscaled(inner, stencil)


def _no_1d(field, stencil):
    if field.ndim == 1:
        return lax.full_like(field, 0)
    return _laplacian._laplacian_slices(field, stencil)


DIAGNOSTICS = {
    "no_wrap": _no_wrap,
    "no_1d": _no_1d,
    "zero": lambda field, stencil: lax.full_like(field, 0),
}


@contextlib.contextmanager
def diagnostics_registered():
    """Makes the diagnostic stencils selectable as ``laplacian_impl="diag_<name>"`` while the
    block runs, then restores the package's own list. Distinct static names: no jit cache
    ever hands one variant's trace to another."""
    table, names = dict(_laplacian._IMPLEMENTATIONS), _laplacian.IMPLEMENTATIONS
    _laplacian._IMPLEMENTATIONS.update({f"diag_{n}": fn for n, fn in DIAGNOSTICS.items()})
    _laplacian.IMPLEMENTATIONS = names + tuple(f"diag_{n}" for n in DIAGNOSTICS)
    try:
        yield
    finally:
        _laplacian._IMPLEMENTATIONS.clear()
        _laplacian._IMPLEMENTATIONS.update(table)
        _laplacian.IMPLEMENTATIONS = names


def measure(optimizer: str, reps: int) -> dict[str, list[dict[str, float]]]:
    """``reps`` cold compiles of the baseline, the default and each diagnostic, interleaved."""
    params = random_params(transformer_shapes())
    grads = random_params(transformer_shapes(), seed=1)
    _, baseline, make = PAIRS[optimizer]
    variants = {"baseline": baseline, "default": make(c2=1e-4)}
    for name in DIAGNOSTICS:
        variants[name] = make(c2=1e-4, laplacian_impl=f"diag_{name}")

    return cold_compiles(variants, grads, params, reps, desc="cold compiles")


def table(optimizer: str, samples: dict[str, list[dict[str, float]]]) -> list[dict]:
    """Medians per variant, and the paired ratios of each total to the baseline's in the same
    round (slow drifts of the machine cancel in these)."""
    base_totals = [r["total_s"] for r in samples["baseline"]]
    rows = []
    for name, runs in samples.items():
        row = {"variant": name} | {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append(row | paired_ratios(base_totals, [r["total_s"] for r in runs]))
    print(f"\n{optimizer} vs optax.{PAIRS[optimizer][0]}")
    print(f"{'variant':<10}{'trace s':>9}{'lower s':>9}{'compile s':>11}{'total s':>9}  ratio")
    for r in rows:
        spread = f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
        print(
            f"{r['variant']:<10}{r['trace_s']:>9.3f}{r['lower_s']:>9.3f}{r['compile_s']:>11.3f}"
            f"{r['total_s']:>9.3f}  {spread}"
        )
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", choices=sorted(PAIRS), default=list(PAIRS))
    parser.add_argument("--reps", type=int, default=15, help="cold compiles per variant")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"cold trace / lower / compile, medians of {args.reps} interleaved; ratio = median "
        "(min-max) of the paired total ratios to the baseline"
    )
    results = {"machine": machine(), "reps": args.reps, "optimizers": {}}
    with diagnostics_registered():
        for optimizer in args.optimizers:
            samples = measure(optimizer, args.reps)
            results["optimizers"][optimizer] = table(optimizer, samples)
    return save(results, args.out / "compile_cost.json")


if __name__ == "__main__":
    main()
