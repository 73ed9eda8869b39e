"""``ladam`` on 8 simulated CPU devices: each Laplacian implementation under three layouts.

The transformer-like tree of ``optimizer_step.py`` (2 blocks, d_model 256 here, to keep 8
simulated devices on a small machine quick) on a ``("data", "model")`` mesh of 2 x 4 Auto axes:

- ``data_parallel``: every leaf replicated (plain data parallelism);
- ``fsdp``: every leaf sharded on its first axis over all 8 devices where it divides;
- ``tensor_parallel``: kernels and biases sharded on their last axis over ``"model"``.

For ``optax.adam`` and ``ladam`` with ``laplacian_impl`` ``"auto"``, ``"slices"`` and ``"shifts"``:
the compiled step's collectives (all-gathers would mean a leaf is rebuilt whole on each device)
and its time, interleaved in shuffled rounds. Simulated devices share the machine's cores, so the
times compare implementations, not a real pod's speed. Writes ``OUT/sharded_step.json``.

    python benchmarks/sharded_step.py [--reps 30] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import pathlib
import re
from collections import Counter

import jax

jax.config.update("jax_num_cpu_devices", 8)

import optax  # noqa: E402
from _harness import (  # noqa: E402
    Timer,
    in_rounds,
    machine,
    random_params,
    save,
    transformer_shapes,
    update_step,
)
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import ladam_optax  # noqa: E402

COLLECTIVE = re.compile(r"\b(all-gather|all-to-all|all-reduce|collective-permute)(?:-start)?\(")


def layout(name: str, shape: tuple[int, ...]) -> P:
    if name == "data_parallel":
        return P()
    if name == "fsdp":
        return P(("data", "model")) if shape and shape[0] % 8 == 0 else P()
    return P(*([None] * (len(shape) - 1)), "model") if shape and shape[-1] % 4 == 0 else P()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    host = random_params(transformer_shapes(d_model=256))
    variants = {"adam": optax.adam(1e-3)} | {
        impl: ladam_optax.ladam(1e-3, c2=1e-4, laplacian_impl=impl)
        for impl in ("auto", "slices", "shifts")
    }
    results: dict = {"machine": machine(), "reps": args.reps, "layouts": {}}
    print(f"{'layout':<16} {'variant':<8} {'ms':>8} {'/ adam':>7}  collectives")
    for name in ("data_parallel", "fsdp", "tensor_parallel"):
        params = {
            k: jax.device_put(v, NamedSharding(mesh, layout(name, v.shape)))
            for k, v in host.items()
        }
        timer = Timer(params)
        rows = {}
        for variant, tx in variants.items():
            state = tx.init(params)
            text = update_step(tx).lower(timer.grads, state, params).compile().as_text()
            rows[variant] = {"collectives": dict(Counter(COLLECTIVE.findall(text)))}
        samples = in_rounds({v: timer.prepare(tx) for v, tx in variants.items()}, args.reps)
        for variant, times in samples.items():
            rows[variant]["median_ms"] = 1e3 * sorted(times)[len(times) // 2]
        for variant, row in rows.items():
            ratio = row["median_ms"] / rows["adam"]["median_ms"]
            row["ratio_to_adam"] = ratio
            shown = ", ".join(f"{k} {n}" for k, n in sorted(row["collectives"].items())) or "none"
            print(f"{name:<16} {variant:<8} {row['median_ms']:>8.2f} {ratio:>7.2f}  {shown}")
        results["layouts"][name] = rows
    save(results, args.out / "sharded_step.json")


if __name__ == "__main__":
    main()
