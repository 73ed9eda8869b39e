"""The accelerator check's figures: ``ladam``'s update against ``optax.adam`` on the ~6.85M
transformer-like tree, for the default Laplacian and the reference's ``"conv"`` form, and the
whole train step of ``train_step.py``, on whatever backend JAX finds (GPU, TPU or CPU).

Run by ``benchmarks/accelerator_check.sh``, which first runs the operator's and the optimizers'
tests on that backend. ``--dry-run`` uses a tiny tree and one timed step (the CPU check that the
script works; its times mean nothing). Writes ``OUT/accelerator_check.json``.

    python benchmarks/accelerator_check.py [--reps 50] [--dry-run] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import optax
import train_step
from _harness import Timer, interleaved, machine, random_params, save, transformer_shapes

import ladam_optax


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=50, help="timed steps per variant")
    parser.add_argument("--dry-run", action="store_true", help="tiny tree, one step: CPU smoke")
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/accelerator")
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    reps = 1 if args.dry_run else args.reps
    tree = {"blocks": 1, "d_model": 32, "vocab": 64} if args.dry_run else {}
    params = random_params(transformer_shapes(**tree))
    timer = Timer(params)
    variants = {
        "adam": optax.adam(1e-3),
        "ladam": ladam_optax.ladam(1e-3, c2=1e-4),
        "ladam[conv]": ladam_optax.ladam(1e-3, c2=1e-4, laplacian_impl="conv"),
    }
    update = interleaved({name: timer.prepare(tx) for name, tx in variants.items()}, reps)
    for row in update.values():
        row["ratio_to_adam"] = row["median_ms"] / update["adam"]["median_ms"]
    device = jax.devices()[0]
    print(f"{jax.default_backend()} ({device.device_kind}), {reps} reps, interleaved")
    print(f"{'update':<14}{'ms':>9}{'/ adam':>8}")
    for name, row in update.items():
        print(f"{name:<14}{row['median_ms']:>9.2f}{row['ratio_to_adam']:>8.2f}")
    steps = train_step.main(["--reps", str(reps), "--out", str(args.out)])
    results = {
        "machine": machine(),
        "device_kind": device.device_kind,
        "dry_run": args.dry_run,
        "reps": reps,
        "parameters": sum(x.size for x in jax.tree.leaves(params)),
        "update": update,
        "train_step": steps["rows"],
    }
    return save(results, args.out / "accelerator_check.json")


if __name__ == "__main__":
    main()
