"""The reference's transformer row: a small Flax NNX transformer on the digits, Adam vs LAdam.

Each 8x8 digit is a sequence of its 8 rows (8 pixels each), embedded to d_model 64 with a
learned position embedding, through 2 pre-norm blocks (4-head self-attention, MLP 4x) and mean
pooling into 10 classes. Same initialisation, data split and batch order for both optimizers;
Adam (lr 1e-3) vs LAdam (lr 1e-3, c2 = --c2) over --seeds.

    python examples/transformer_digits.py [--epochs 30] [--seeds 3] [--c2 1e-4] [--out DIR]

Writes DIR/results.json and DIR/transformer_digits.png.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import ladam_optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from quickstart import evaluate, train_step  # the quickstart's loss, step and evaluation


class Block(nnx.Module):
    def __init__(self, d_model: int, heads: int, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(d_model, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            num_heads=heads, in_features=d_model, decode=False, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(d_model, rngs=rngs)
        self.up = nnx.Linear(d_model, 4 * d_model, rngs=rngs)
        self.down = nnx.Linear(4 * d_model, d_model, rngs=rngs)

    def __call__(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.down(nnx.gelu(self.up(self.norm2(x))))


class Transformer(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, d_model: int = 64, heads: int = 4, layers: int = 2):
        self.embed = nnx.Linear(8, d_model, rngs=rngs)
        self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (8, d_model)))
        self.blocks = nnx.List([Block(d_model, heads, rngs) for _ in range(layers)])
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.head = nnx.Linear(d_model, 10, rngs=rngs)

    def __call__(self, images):  # (batch, 8, 8): a sequence of 8 rows
        x = self.embed(images) + self.position[...]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(axis=1))


def load_data():
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.3, random_state=0, stratify=digits.target
    )
    return (x_train, y_train), (jnp.asarray(x_test), jnp.asarray(y_test))


def train(name, tx, seed, args, data) -> dict:
    (x_train, y_train), (x_test, y_test) = data
    model = Transformer(nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    rng = np.random.default_rng(seed)
    curve, start = [], time.perf_counter()
    for epoch in tqdm(
        range(1, args.epochs + 1), desc=f"seed {seed} {name}", leave=False, disable=None
    ):
        order = rng.permutation(len(x_train))
        for i in range(0, len(order) - args.batch + 1, args.batch):
            batch = order[i : i + args.batch]
            loss = train_step(
                model, optimizer, jnp.asarray(x_train[batch]), jnp.asarray(y_train[batch])
            )
        test_loss, accuracy = evaluate(model, x_test, y_test)
        curve.append([epoch, float(loss), float(test_loss), float(accuracy)])
    return {
        "optimizer": name,
        "c2": None if name == "adam" else args.c2,
        "seed": seed,
        "test_accuracy": curve[-1][3],
        "test_loss": curve[-1][2],
        "seconds": time.perf_counter() - start,
        "curve": curve,  # [epoch, last train loss, test loss, test accuracy]
    }


def summarize(runs):
    rows = []
    for name in ("adam", "ladam"):
        accuracy = np.array([r["test_accuracy"] for r in runs if r["optimizer"] == name])
        rows.append(
            {
                "optimizer": name,
                "seeds": len(accuracy),
                "accuracy_mean": float(accuracy.mean()),
                "accuracy_std": float(accuracy.std(ddof=1)) if len(accuracy) > 1 else 0.0,
            }
        )
    return rows


def report_table(results: dict) -> str:
    """The Markdown ``docs/evidence.md`` shows (``transformer``), from ``results.json``'s
    content: test accuracy per optimizer over seeds, and each seed's."""
    runs, rows = results["runs"], summarize(results["runs"])
    seeds = rows[0]["seeds"]
    lines = [
        f"| optimizer | test accuracy (mean +/- std, {seeds} seeds) | per seed |",
        "|---|---|---|",
    ]
    for row, title in zip(rows, ("Adam", f"LAdam c2 = {results['c2']:g}"), strict=True):
        per_seed = sorted(
            (r["seed"], r["test_accuracy"]) for r in runs if r["optimizer"] == row["optimizer"]
        )
        lines.append(
            f"| {title} | {row['accuracy_mean']:.4f} +/- {row['accuracy_std']:.4f} | "
            + ", ".join(f"{accuracy:.4f}" for _, accuracy in per_seed)
            + " |"
        )
    return "\n".join(lines)


def plot(runs, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        color = "C0" if run["optimizer"] == "adam" else "C1"
        epochs, accuracy = zip(*[(c[0], c[3]) for c in run["curve"]], strict=True)
        left.plot(epochs, accuracy, color=color, alpha=0.6, label=run["optimizer"])
    handles, labels = left.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    left.legend(unique.values(), unique.keys())
    left.set(xlabel="epoch", ylabel="test accuracy", title="Test accuracy (every seed)")
    right.bar(
        [r["optimizer"] for r in rows],
        [r["accuracy_mean"] for r in rows],
        yerr=[r["accuracy_std"] for r in rows],
        color=["C0", "C1"],
        capsize=4,
    )
    low = min(r["accuracy_mean"] - 2 * r["accuracy_std"] for r in rows)
    right.set(ylim=(max(0.0, low - 0.02), 1.0), ylabel="final test accuracy (mean +/- std)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--c2", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/transformer_digits"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_data()
    runs = []
    for seed in range(args.seeds):
        for name, tx in (
            ("adam", optax.adam(1e-3)),
            ("ladam", ladam_optax.ladam(1e-3, c2=args.c2)),
        ):
            run = train(name, tx, seed, args, data)
            runs.append(run)
            accuracy, seconds = run["test_accuracy"], run["seconds"]
            print(f"seed {seed} {name:<6} test accuracy {accuracy:.4f}  {seconds:.0f} s")
    rows = summarize(runs)
    for r in rows:
        mean, std = r["accuracy_mean"], r["accuracy_std"]
        print(f"{r['optimizer']:<6} test accuracy {mean:.4f} +/- {std:.4f}")
    results = {"epochs": args.epochs, "c2": args.c2, "runs": runs, "summary": rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot(runs, rows, args.out / "transformer_digits.png")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'transformer_digits.png'}")
    return results


if __name__ == "__main__":
    main()
