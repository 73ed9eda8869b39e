"""Cost of folding: ``ladam`` with ``fold=torch_folds`` against ``ladam`` unfolded, same tree.

A folded leaf whose field's axes are not already in order (a Flax conv kernel, an attention
``out`` kernel) is transposed before the stencil and back after it. Two trees, each timed with
both optimizers interleaved in shuffled rounds (``_harness.in_rounds``), jitted update + apply
with donated buffers; the ratio is paired per round:

- the transformer-like tree of ``optimizer_step.py`` (~6.8M parameters), nested by its paths so
  ``torch_folds`` sees Flax names: one 3x3 conv kernel is folded, the rest keeps its field;
- a CNN tree of 3x3 conv kernels only (~7.8M parameters, 64 to 512 channels): every leaf is
  folded, the worst case.

Writes ``OUT/folds.json``.

    python benchmarks/folds.py [--reps 100] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import pathlib

import jax
from _harness import Timer, in_rounds, machine, paired_ratios, random_params, save
from _harness import transformer_shapes as flat_transformer_shapes

import ladam_optax

CNN_CHANNELS = (64, 64, 64, 64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512)


def nested(flat: dict) -> dict:
    """``{"a/b": x}`` as ``{"a": {"b": x}}``: the paths a Flax model's params have."""
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def trees() -> dict[str, dict]:
    cnn = {f"conv{i}/kernel": (3, 3, c, c) for i, c in enumerate(CNN_CHANNELS)}
    return {
        "transformer": nested(random_params(flat_transformer_shapes())),
        "cnn": nested(random_params(cnn)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=100, help="timed steps per variant")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "reps": args.reps, "trees": {}}
    print(f"{'tree':<12} {'params':>10} {'folded':>7} {'ladam ms':>9} {'folded ms':>10} ratio")
    for name, params in trees().items():
        folds = jax.tree.leaves(
            ladam_optax.torch_folds(params), is_leaf=lambda x: isinstance(x, ladam_optax.Fold)
        )
        timer = Timer(params)
        calls = {
            "ladam": timer.prepare(ladam_optax.ladam(1e-3, c2=1e-4)),
            "folded": timer.prepare(ladam_optax.ladam(1e-3, c2=1e-4, fold=ladam_optax.torch_folds)),
        }
        samples = in_rounds(calls, args.reps, desc=name)
        ratio = paired_ratios(samples["ladam"], samples["folded"])
        size = sum(x.size for x in jax.tree.leaves(params))
        medians = {k: 1e3 * sorted(v)[len(v) // 2] for k, v in samples.items()}
        results["trees"][name] = {
            "params": size,
            "folded_leaves": len(folds),
            "median_ms": medians,
            **ratio,
        }
        print(
            f"{name:<12} {size:>10,} {len(folds):>7} {medians['ladam']:>9.2f} "
            f"{medians['folded']:>10.2f} {ratio['ratio']:.3f} "
            f"({ratio['ratio_min']:.2f}-{ratio['ratio_max']:.2f})"
        )
    save(results, args.out / "folds.json")


if __name__ == "__main__":
    main()
