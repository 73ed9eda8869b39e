"""Quickstart: optax.adam vs ladam_optax.ladam on scikit-learn's bundled digits, with Flax NNX.

Trains the same MLP (64 -> 256 -> 256 -> 10, GELU) from the same initialisation with both
optimizers, full batch, and prints test accuracy and loss side by side. No download: the 8x8
digits ship inside scikit-learn. Runs in well under a minute on 2 CPU cores.

    python examples/quickstart.py [--steps 300] [--c2 1e-4] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax.numpy as jnp
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import ladam_optax


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden1 = nnx.Linear(64, 256, rngs=rngs)
        self.hidden2 = nnx.Linear(256, 256, rngs=rngs)
        self.out = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.gelu(self.hidden1(x))
        x = nnx.gelu(self.hidden2(x))
        return self.out(x)


def loss_fn(model, x, y):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@nnx.jit
def train_step(model, optimizer, x, y):
    """One step of ``nnx.Optimizer`` on a batch (any optax transformation, ladam included)."""
    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def evaluate(model, x, y):
    """(loss, accuracy) of ``model`` on ``x, y``."""
    loss, logits = loss_fn(model, x, y)
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)


def load_data(seed: int):
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.3, random_state=seed, stratify=digits.target
    )
    return (jnp.asarray(x_train), jnp.asarray(y_train)), (jnp.asarray(x_test), jnp.asarray(y_test))


def train(name: str, tx: optax.GradientTransformation, args, data) -> dict:
    (x_train, y_train), (x_test, y_test) = data
    model = MLP(nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    start = time.perf_counter()
    for _ in tqdm(range(args.steps), desc=f"{name:>5}", leave=False, disable=None):
        loss = train_step(model, optimizer, x_train, y_train)
    test_loss, accuracy = evaluate(model, x_test, y_test)
    return {
        "optimizer": name,
        "train_loss": float(loss),
        "test_loss": float(test_loss),
        "test_accuracy": float(accuracy),
        "seconds": time.perf_counter() - start,
    }


def setup_line(args) -> str:
    """What is compared, with the hyperparameters used (printed first)."""
    return (
        f"optax.adam vs ladam_optax.ladam: lr {args.lr:g} (both), c2 {args.c2:g} (ladam), "
        f"{args.steps} full-batch steps, seed {args.seed}"
    )


def header(saved: dict) -> str:
    """The data and what is compared (printed before training)."""
    return (
        f"digits: {saved['train_images']} train / {saved['test_images']} test images, 8x8\n"
        + setup_line(argparse.Namespace(**saved))
    )


def table(runs: list[dict]) -> str:
    """Each optimizer's losses, accuracy and seconds (printed after training)."""
    lines = [f"{'optimizer':<10}{'train loss':>12}{'test loss':>12}{'test acc':>10}{'seconds':>9}"]
    for r in runs:
        lines.append(
            f"{r['optimizer']:<10}{r['train_loss']:>12.4f}{r['test_loss']:>12.4f}"
            f"{r['test_accuracy']:>10.4f}{r['seconds']:>9.1f}"
        )
    return "\n".join(lines)


def printout(saved: dict) -> str:
    """Everything the quickstart prints, from what it saves (``DIR/quickstart.json``)."""
    return header(saved) + "\n" + table(saved["runs"])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="full-batch steps per optimizer")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of both optimizers")
    parser.add_argument("--c2", type=float, default=1e-4, help="LAdam's Laplacian coupling")
    parser.add_argument("--seed", type=int, default=0, help="data split and initialisation")
    parser.add_argument("--out", type=pathlib.Path, help="also write DIR/quickstart.json")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    data = load_data(args.seed)
    saved = {
        "steps": args.steps,
        "lr": args.lr,
        "c2": args.c2,
        "seed": args.seed,
        "train_images": int(data[0][0].shape[0]),
        "test_images": int(data[1][0].shape[0]),
    }
    print(header(saved), flush=True)
    saved["runs"] = [
        train("adam", optax.adam(args.lr), args, data),
        train("ladam", ladam_optax.ladam(args.lr, c2=args.c2), args, data),
    ]
    print(table(saved["runs"]))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "quickstart.json").write_text(json.dumps(saved, indent=2))
    return saved["runs"]


if __name__ == "__main__":
    main()
