"""First-compile cost of LAdam against ``optax.adam``: the update alone and a whole train step.

The transformer-like tree of ``sharded_step.py``, nested by path (update: 12 blocks, d_model
384, 194 leaves, 22.1M parameters; train step: 8 blocks, d_model 128, 130 leaves) on 8
simulated CPU devices, in three layouts: one device, FSDP on
Auto axes and FSDP on Explicit axes (every leaf of 2 or more axes sharded over all 8 devices
on its largest axis that 8 divides; the train step on the first two). Per layout and
optimizer:

- ``update``: the jitted update + ``apply_updates`` (state and params donated);
- ``train``: forward, backward and update of a pre-norm transformer over that tree (token
  embedding, attention with q/k/v kernels ``(d, heads, head_dim)`` and out kernel
  ``(heads, head_dim, d)``, MLP), batch 8 x 32 tokens, ``fold=torch_folds``;

the cold ``trace + lower + compile`` time (``jax.clear_caches()`` first; medians of
``--reps``, the two optimizers interleaved in shuffled rounds), and the compiled program's
instruction and fusion counts. Writes ``OUT/compile_time.json`` and prints a table.

    python benchmarks/compile_time.py [--reps 3] [--blocks 12] [--d-model 384]
        [--train-blocks 8] [--train-d-model 128]
        [--out benchmarks/results] [--report]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
import re
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from _harness import apply_step, in_rounds, machine, random_params, save
from folds import nested
from sharded_step import place, transformer_shapes

import ladam_optax

LAYOUTS = ("one_device", "fsdp_auto", "fsdp_explicit")
INSTRUCTION = re.compile(r"^\s+(ROOT )?%\S+ = ", re.MULTILINE)
FUSION = re.compile(r" fusion\(")


def transformer_loss(blocks: int, heads: int = 8):
    """The loss of a pre-norm transformer language model over :func:`transformer_shapes`."""

    def norm(x, scale, bias=None):
        x = (x - x.mean(-1, keepdims=True)) * jax.lax.rsqrt(x.var(-1, keepdims=True) + 1e-6)
        return x * scale + (0.0 if bias is None else bias)

    def loss(params, tokens):
        x = params["embed"]["embedding"][tokens]
        for b in range(blocks):
            p = params[f"block{b}"]
            h = norm(x, p["norm1"]["scale"], p["norm1"]["bias"])
            q, k, v = (
                jnp.einsum("btd,dhk->bthk", h, p[n]["kernel"]) + p[n]["bias"]
                for n in ("query", "key", "value")
            )
            weights = jax.nn.softmax(jnp.einsum("bqhk,bthk->bhqt", q, k) / math.sqrt(q.shape[-1]))
            attended = jnp.einsum("bhqt,bthk->bqhk", weights, v)
            x = x + jnp.einsum("bthk,hkd->btd", attended, p["out"]["kernel"]) + p["out"]["bias"]
            h = norm(x, p["norm2"]["scale"], p["norm2"]["bias"])
            up = jax.nn.gelu(h @ p["mlp_up"]["kernel"] + p["mlp_up"]["bias"])
            x = x + up @ p["mlp_down"]["kernel"] + p["mlp_down"]["bias"]
        logits = norm(x, params["final_norm"]["scale"]) @ params["embed"]["embedding"].T
        labels = jnp.roll(tokens, -1, axis=1)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return loss


def train_step(tx: optax.GradientTransformation, loss):
    def step(params, state, tokens):
        grads = jax.grad(loss)(params, tokens)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def cold(fn, donate, *args) -> tuple[float, str]:
    """Seconds to trace, lower and compile ``fn`` from cold caches, and the compiled HLO."""
    jax.clear_caches()
    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=donate).trace(*args).lower().compile()
    return time.perf_counter() - start, compiled.as_text()


def counts(text: str) -> dict:
    return {"instructions": len(INSTRUCTION.findall(text)), "fusions": len(FUSION.findall(text))}


def table(results: dict) -> str:
    lines = [
        "| program, layout | `optax.adam` s | `ladam` s | ratio | instructions (adam / ladam) "
        "| fusions (adam / ladam) |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in results["programs"].items():
        a, lad = row["adam"], row["ladam"]
        lines.append(
            f"| {key.replace('_', ' ')} | {a['compile_s']:.2f} | {lad['compile_s']:.2f} | "
            f"**{row['ratio']:.2f}x** | {a['instructions']:,} / {lad['instructions']:,} | "
            f"{a['fusions']:,} / {lad['fusions']:,} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="cold compiles per variant")
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--train-blocks", type=int, default=8)
    parser.add_argument("--train-d-model", type=int, default=128)
    parser.add_argument("--programs", nargs="+", default=["update", "train"])
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    parser.add_argument("--report", action="store_true", help="print the saved JSON's table")
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads((args.out / "compile_time.json").read_text())
        print(table(results))
        return results
    args.out.mkdir(parents=True, exist_ok=True)
    trees = {
        "update": random_params(transformer_shapes(args.blocks, args.d_model)),
        "train": random_params(transformer_shapes(args.train_blocks, args.train_d_model)),
    }
    variants = {
        "adam": optax.adam(1e-3),
        "ladam": ladam_optax.ladam(1e-3, c2=1e-4, fold=ladam_optax.torch_folds),
    }
    loss = transformer_loss(args.train_blocks)
    vocab = trees["train"]["embed/embedding"].shape[0]
    tokens = jax.random.randint(jax.random.key(0), (8, 32), 0, vocab)
    results: dict = {"machine": machine(), "reps": args.reps, "trees": {}, "programs": {}}
    for program, tree in trees.items():
        size = sum(math.prod(v.shape) for v in tree.values())
        results["trees"][program] = {"leaves": len(tree), "parameters": size}
        print(f"{program}: {len(tree)} leaves, {size / 1e6:.1f}M parameters")
    for program in args.programs:
        host = trees[program]
        for layout in args.layouts:
            if program == "train" and layout.endswith("explicit"):
                continue  # the model's gathers would need out_sharding=: update alone
            params = nested(place(host, layout))
            grads = jax.tree.map(lambda p: 1e-2 * p, params)
            calls = {}
            for name, tx in variants.items():
                if program == "update":
                    fn, donate, inputs = apply_step(tx), (1, 2), (grads, tx.init(params), params)
                else:
                    fn, donate = train_step(tx, loss), (0, 1)
                    inputs = (params, tx.init(params), tokens)
                calls[name] = functools.partial(cold, fn, donate, *inputs)
            samples = in_rounds(calls, args.reps)
            row = {
                name: {"compile_s": statistics.median(t for t, _ in runs), **counts(runs[0][1])}
                for name, runs in samples.items()
            }
            row["ratio"] = row["ladam"]["compile_s"] / row["adam"]["compile_s"]
            results["programs"][f"{program}_{layout}"] = row
            print(
                f"{program:<7}{layout:<15}adam {row['adam']['compile_s']:6.2f} s  "
                f"ladam {row['ladam']['compile_s']:6.2f} s  {row['ratio']:5.2f}x  "
                f"instructions {row['adam']['instructions']} / {row['ladam']['instructions']}"
            )
    save(results, args.out / "compile_time.json")
    print(table(results))
    return results


if __name__ == "__main__":
    main()
