"""``ladam`` against ``optax.adam`` on 8 simulated CPU devices, every common layout side by side.

A transformer-like tree (embedding; per block q/k/v kernels ``(d, heads, head_dim)`` and biases
``(heads, head_dim)``, out kernel ``(heads, head_dim, d)``, MLP kernels and biases, norms; ~7.9M
parameters and 67 leaves at the defaults) on a ``("data", "model")`` mesh of 2 x 4:

- ``one_device``: everything on one device of the eight (no mesh);
- ``dp``: every leaf replicated (plain data parallelism);
- ``fsdp``: every leaf of 2 or more axes sharded over all 8 devices on its largest axis that 8
  divides;
- ``tp``: Megatron-style tensor parallelism over ``"model"`` (attention heads, the MLP's hidden
  axis, the embedding's features);
- ``mixed``: 2-D, ``tp`` plus each kernel's other large axis over ``"data"``.

Each sharded layout on Auto axes and on Explicit axes (without ``jax.set_mesh``: the leaves'
types carry the mesh). Per layout and optimizer: the jitted update + ``apply_updates`` step
(state and params donated) timed in shuffled rounds, its ratio to ``optax.adam`` in the same
rounds, the compiled step's collectives (all-gathers or all-to-alls would mean a leaf is
rebuilt whole on a device; the largest array any collective moves is recorded), and the cold
``lower().compile()`` time. Simulated devices share the machine's cores, so times compare the
optimizers, not a real pod's speed. Writes ``OUT/sharded_step.json`` and prints a table.

    python benchmarks/sharded_step.py [--reps 20] [--compiles 3] [--blocks 4] [--d-model 384]
        [--out benchmarks/results] [--report]

``--report`` prints the Markdown table of the saved JSON (the multi-device guide's table).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import statistics
from collections import Counter

import jax

# Before JAX starts its CPU backend; left alone when a test runner has set it already, since
# jax 0.7 and 0.8.0 refuse even the same value once the backend is up.
if jax.config.jax_num_cpu_devices != 8:
    jax.config.update("jax_num_cpu_devices", 8)

import optax
from _harness import (
    Timer,
    cold_compiles,
    in_rounds,
    machine,
    paired_ratios,
    random_params,
    save,
    update_step,
)
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import ladam_optax

LAYOUTS = (
    "one_device",
    "dp_auto",
    "dp_explicit",
    "fsdp_auto",
    "fsdp_explicit",
    "tp_auto",
    "tp_explicit",
    "mixed_auto",
    "mixed_explicit",
)
COLLECTIVE = re.compile(
    r"= \(?([^=]*?)\)? (all-gather|all-to-all|all-reduce|collective-permute)(?:-start)?\("
)
SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")


def transformer_shapes(blocks: int, d_model: int, heads: int = 8, vocab: int = 2048) -> dict:
    head_dim = d_model // heads
    shapes = {"embed/embedding": (vocab, d_model), "final_norm/scale": (d_model,)}
    for b in range(blocks):
        for name in ("query", "key", "value"):
            shapes[f"block{b}/{name}/kernel"] = (d_model, heads, head_dim)
            shapes[f"block{b}/{name}/bias"] = (heads, head_dim)
        shapes |= {
            f"block{b}/out/kernel": (heads, head_dim, d_model),
            f"block{b}/out/bias": (d_model,),
            f"block{b}/mlp_up/kernel": (d_model, 4 * d_model),
            f"block{b}/mlp_up/bias": (4 * d_model,),
            f"block{b}/mlp_down/kernel": (4 * d_model, d_model),
            f"block{b}/mlp_down/bias": (d_model,),
            f"block{b}/norm1/scale": (d_model,),
            f"block{b}/norm1/bias": (d_model,),
            f"block{b}/norm2/scale": (d_model,),
            f"block{b}/norm2/bias": (d_model,),
        }
    return shapes


def _tensor_parallel(name: str, shape: tuple[int, ...]) -> list:
    """Megatron-style: which axis of each leaf goes over "model" (heads, MLP hidden, features)."""
    spec: list = [None] * len(shape)
    if any(k in name for k in ("query", "key", "value")):
        spec[len(shape) - 2] = "model"  # heads: kernels (d, heads, hd), biases (heads, hd)
    elif "/out/kernel" in name:
        spec[0] = "model"
    elif "mlp_up" in name:
        spec[-1] = "model"
    elif "mlp_down/kernel" in name:
        spec[0] = "model"
    elif "embed" in name:
        spec[1] = "model"
    return spec


def spec_for(layout: str, name: str, shape: tuple[int, ...]) -> P:
    kind = layout.rsplit("_", 1)[0]
    if kind in ("one_device", "dp") or (len(shape) < 2 and kind == "fsdp"):
        return P()
    if kind == "fsdp":
        for axis in sorted(range(len(shape)), key=lambda a: (-shape[a], a)):
            if shape[axis] % 8 == 0:
                return P(*([None] * axis), ("data", "model"))
        return P()
    spec = _tensor_parallel(name, shape)
    if kind == "mixed" and len(shape) >= 2:
        free = [a for a in range(len(shape)) if spec[a] is None and shape[a] % 2 == 0]
        if free:
            spec[max(free, key=lambda a: shape[a])] = "data"
    return P(*spec)


def place(host: dict, layout: str) -> dict:
    if layout == "one_device":
        return jax.device_put(host, jax.devices()[0])
    kind = AxisType.Explicit if layout.endswith("explicit") else AxisType.Auto
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(kind,) * 2)
    return {
        k: jax.device_put(v, NamedSharding(mesh, spec_for(layout, k, v.shape)))
        for k, v in host.items()
    }


def collectives(text: str) -> dict:
    """Counts of each collective in compiled HLO, and the most elements any one moves."""
    counts: Counter = Counter()
    largest = 0
    for match in COLLECTIVE.finditer(text):
        counts[match.group(2)] += 1
        for dims in SHAPE.findall(match.group(1)):
            largest = max(largest, math.prod(int(d) for d in dims.split(",") if d))
    return {"counts": dict(counts), "largest_elements": largest}


def table(results: dict) -> str:
    """The Markdown table of a run's results (the multi-device guide shows it)."""
    lines = [
        "| layout | `optax.adam` ms | `ladam` ms | ratio (paired min-max) | compile | "
        "`ladam`'s collectives (largest, elements) |",
        "|---|---|---|---|---|---|",
    ]
    for layout, row in results["layouts"].items():
        ratio = row["ratio_to_adam"]
        moved = row["ladam"]["collectives"]
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(moved["counts"].items())) or "none"
        largest = f" ({moved['largest_elements']})" if moved["counts"] else ""
        lines.append(
            f"| {layout.replace('_', ' ')} | {row['adam']['median_ms']:.1f} | "
            f"{row['ladam']['median_ms']:.1f} | **{ratio['ratio']:.2f}** "
            f"({ratio['ratio_min']:.2f}-{ratio['ratio_max']:.2f}) | "
            f"{row['compile_ratio']:.1f}x | {kinds}{largest} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="timed rounds per layout")
    parser.add_argument("--compiles", type=int, default=3, help="cold compiles per variant")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    parser.add_argument(
        "--report", action="store_true", help="print OUT/sharded_step.json as a Markdown table"
    )
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads((args.out / "sharded_step.json").read_text())
        print(table(results))
        return results
    args.out.mkdir(parents=True, exist_ok=True)
    host = random_params(transformer_shapes(args.blocks, args.d_model))
    variants = {"adam": optax.adam(1e-3), "ladam": ladam_optax.ladam(1e-3, c2=1e-4)}
    results: dict = {
        "machine": machine(),
        "reps": args.reps,
        "parameters": sum(math.prod(s.shape) for s in host.values()),
        "leaves": len(host),
        "layouts": {},
    }
    print(f"{len(host)} leaves, {results['parameters'] / 1e6:.2f}M parameters, 8 devices")
    header = f"{'layout':<16}{'adam ms':>9}{'ladam ms':>10}{'ratio':>7}{'compile':>9}"
    print(f"{header}  ladam's collectives (largest array moved)")
    for layout in args.layouts:
        params = place(host, layout)
        timer = Timer(params)
        row: dict = {}
        for variant, tx in variants.items():
            text = update_step(tx).lower(timer.grads, tx.init(params), params).compile().as_text()
            row[variant] = {"collectives": collectives(text)}
        compiles = cold_compiles(variants, timer.grads, params, args.compiles)
        for variant, samples in compiles.items():
            row[variant]["compile_s"] = statistics.median(s["total_s"] for s in samples)
        times = in_rounds({v: timer.prepare(tx) for v, tx in variants.items()}, args.reps)
        for variant, samples in times.items():
            row[variant]["median_ms"] = 1e3 * statistics.median(samples)
        row["ratio_to_adam"] = paired_ratios(times["adam"], times["ladam"])
        row["compile_ratio"] = row["ladam"]["compile_s"] / row["adam"]["compile_s"]
        results["layouts"][layout] = row
        moved = row["ladam"]["collectives"]
        shown = ", ".join(f"{k} {n}" for k, n in sorted(moved["counts"].items())) or "none"
        print(
            f"{layout:<16}{row['adam']['median_ms']:>9.1f}{row['ladam']['median_ms']:>10.1f}"
            f"{row['ratio_to_adam']['ratio']:>7.2f}{row['compile_ratio']:>8.1f}x"
            f"  {shown} ({moved['largest_elements']})"
        )
    save(results, args.out / "sharded_step.json")
    print(table(results))
    return results


if __name__ == "__main__":
    main()
