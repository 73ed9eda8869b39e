"""At what c2 does LAdam change training, and does it help? c2 response curves on three tasks.

For each c2 of the grid (0 is Adam) and each seed, trains with ``ladam(lr, c2=c2)`` and records
the task's metric and, at the end of training, ``ladam_optax.smoothing_effect`` (how far the
smoothing moved the steps from Adam's). Tasks:

- ``pinn``: the wave-equation PINN of ``pinn_wave.py`` (its loss, points and error metric; here
  ``--pinn-steps`` steps, an MLP of ``--pinn-width`` x 5 and ``--pinn-interior`` interior points,
  smaller than the benchmark to keep a sweep affordable): relative L2 error, final and best;
- ``mlp``: an MLP 64 -> 128 -> 128 -> 10 on scikit-learn's bundled digits, minibatches of 128;
- ``cnn``: two 3x3 convolutions (8 channels, then 16 at stride 2) and a Dense head on the
  digits as 8 x 8 images, minibatches of 128,
  with ``fold=ladam_optax.torch_folds`` (the field PyTorch's LAdam smooths for each layer).

Digits: test accuracy and loss on a held-out quarter (a fixed split per seed). Each task compiles
once: c2 is a hyperparameter of ``optax.inject_hyperparams``, set per run in the state.

For each c2, the difference from Adam with a 95% Welch confidence interval and a Holm-corrected
Welch p-value across the grid (``scipy``, which scikit-learn installs).

    python examples/c2_sweep.py [--tasks mlp cnn pinn] [--seeds 10] [--pinn-seeds 5]
        [--c2 0 1e-5 1e-4 1e-3 1e-2 3e-2 0.1 0.2 0.3] [--out runs/c2_sweep]

Writes OUT/results.json and OUT/c2_sweep.png, and OUT/runs.jsonl as it goes: run the same command
again after an interruption and it resumes from the runs already finished.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

import ladam_optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import pinn_wave  # the PINN's model, points, loss and metric

GRID = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3)
LEARNING_RATE = 1e-3
BATCH = 128  # digits minibatch, drawn with replacement each step (seeded)
METRICS = {"pinn": ("l2_error", "relative L2 error"), "mlp": ("test_accuracy", "test accuracy")}
METRICS["cnn"] = METRICS["mlp"]
WIDTHS = (8, 9, 9, 30, 10, 10)  # columns of the printed table


class DigitsMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(64, 128, rngs=rngs), nnx.Linear(128, 128, rngs=rngs)])
        self.head = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = jax.nn.relu(layer(x))
        return self.head(x)


class DigitsCNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), strides=2, rngs=rngs)
        self.head = nnx.Linear(4 * 4 * 16, 10, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0], 8, 8, 1)
        x = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
        return self.head(x.reshape(x.shape[0], -1))


def digits(seed: int) -> dict:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x = (x / 16.0).astype(np.float32)
    split = len(y) * 3 // 4
    train, test = order[:split], order[split:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-3
    x = (x - mean) / std
    return {"x": x[train], "y": y[train], "x_test": x[test], "y_test": y[test]}


def optimizer(fold) -> optax.GradientTransformation:
    """LAdam with c2 in the state (one compiled program for the whole grid)."""
    return optax.inject_hyperparams(ladam_optax.ladam, static_args=("fold", "min_spatial_size"))(
        learning_rate=LEARNING_RATE, c2=0.0, fold=fold
    )


def with_c2(state, c2: float):
    state.hyperparams["c2"] = jnp.asarray(c2, jnp.float32)
    return state


def effect_summary(state, c2: float, fold) -> dict:
    """The diagnostic over every smoothed leaf: size-weighted median effect and clamped
    fraction, largest 99th percentile."""
    effects = ladam_optax.smoothing_effect(state, c2, fold=fold)
    nu = optax.tree.get(state, "nu")
    pairs = zip(
        jax.tree.leaves(effects, is_leaf=lambda e: isinstance(e, ladam_optax.SmoothingEffect)),
        jax.tree.leaves(nu),
        strict=True,
    )
    rows = [(float(e.median), float(e.p99), float(e.clamped_fraction), v.size) for e, v in pairs]
    total = sum(size for *_, size in rows)
    return {
        "effect_median": sum(m * s for m, _, _, s in rows) / total,
        "effect_p99": max(p for _, p, _, _ in rows),
        "clamped_fraction": sum(c * s for _, _, c, s in rows) / total,
    }


def classifier_task(model_class, fold, steps: int):
    """``run(seed, c2)`` for a digits classifier, compiled once."""
    tx = optimizer(fold)
    graphdef, _ = nnx.split(model_class(nnx.Rngs(0)), nnx.Param)

    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    @jax.jit
    def train(params, state, data, key):
        def step(carry, index):
            params, state = carry
            batch = jax.random.randint(jax.random.fold_in(key, index), (BATCH,), 0, len(data["y"]))
            grads = jax.grad(lambda p: loss_fn(p, data["x"][batch], data["y"][batch])[0])(params)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, state), jnp.arange(steps))
        loss, logits = loss_fn(params, data["x_test"], data["y_test"])
        return params, state, loss, jnp.mean(jnp.argmax(logits, -1) == data["y_test"])

    def run(seed: int, c2: float) -> dict:
        _, params = nnx.split(model_class(nnx.Rngs(seed)), nnx.Param)
        data = jax.tree.map(jnp.asarray, digits(seed))
        key = jax.random.key(seed)
        _, state, loss, accuracy = train(params, with_c2(tx.init(params), c2), data, key)
        return {
            "test_accuracy": float(accuracy),
            "test_loss": float(loss),
            **effect_summary(state, c2, fold),
        }

    return run


def pinn_task(steps: int, width: int, interior: int, eval_every: int = 250):
    """``run(seed, c2)`` for the wave-equation PINN, compiled once (points are an argument)."""
    tx = optimizer(None)
    graphdef, _ = nnx.split(pinn_wave.MLP(nnx.Rngs(0), width=width), nnx.Param)
    loss_fn = pinn_wave.make_loss(graphdef)
    axis = jnp.linspace(0.0, 1.0, 101)
    grid = jnp.stack(jnp.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    chunks = [eval_every] * (steps // eval_every) + (
        [steps % eval_every] if steps % eval_every else []
    )

    @functools.partial(jax.jit, static_argnames="length")
    def chunk(params, state, points, length):
        def step(carry, _):
            params, state = carry
            grads = jax.grad(loss_fn)(params, points)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, state), length=length)
        return params, state, pinn_wave.relative_l2(graphdef, params, grid)

    def run(seed: int, c2: float) -> dict:
        _, params = nnx.split(pinn_wave.MLP(nnx.Rngs(seed), width=width), nnx.Param)
        points = pinn_wave.collocation_points(seed, interior)
        state = with_c2(tx.init(params), c2)
        errors = []
        for length in chunks:
            params, state, error = chunk(params, state, points, length)
            errors.append(float(error))
        return {
            "l2_error": errors[-1],
            "best_l2_error": min(errors),
            **effect_summary(state, c2, None),
        }

    return run


def compare(task_runs: list[dict], metric: str, grid) -> list[dict]:
    """Per c2: mean, std, the difference from Adam (c2 = 0) with a 95% Welch interval, and the
    Welch p-value, Holm-corrected across the grid's c2 > 0."""
    from scipy import stats

    def values(c2):
        return np.array([r[metric] for r in task_runs if r["c2"] == c2])

    adam = values(0.0)
    rows = []
    for c2 in grid:
        x = values(c2)
        row = {"c2": c2, "seeds": len(x), "mean": float(x.mean()), "std": float(x.std(ddof=1))}
        row["effect_median"] = float(
            np.mean([r["effect_median"] for r in task_runs if r["c2"] == c2])
        )
        row["clamped_fraction"] = float(
            np.mean([r["clamped_fraction"] for r in task_runs if r["c2"] == c2])
        )
        if c2 != 0.0:
            test = stats.ttest_ind(x, adam, equal_var=False)
            interval = test.confidence_interval(0.95)
            row |= {
                "diff": float(x.mean() - adam.mean()),
                "ci_low": float(interval.low),
                "ci_high": float(interval.high),
                "p": float(test.pvalue) if np.isfinite(test.pvalue) else 1.0,
            }
        rows.append(row)
    # Entries at the eps floor at the smallest c2 are Adam's own (zero gradients, dead units,
    # barely lifted by a tiny Laplacian); more than those at a larger c2 is the smoothing's doing.
    floor = next((r["clamped_fraction"] for r in rows if r["c2"] > 0), 0.0)
    for row in rows:
        row["clamped_increase"] = row["clamped_fraction"] - floor
    tested = sorted((r for r in rows if "p" in r), key=lambda r: r["p"])
    running = 0.0
    for rank, row in enumerate(tested):  # Holm: step-down, monotone
        running = max(running, min(1.0, (len(tested) - rank) * row["p"]))
        row["p_holm"] = running
    return rows


def verdict(row: dict) -> str:
    """``"Adam"``, ``"breaks"`` (a non-finite metric, or more than 1% of the entries driven to
    the eps floor beyond those Adam's own variance leaves there), ``"differs"`` (Holm p < 0.05)
    or ``"same as Adam"``."""
    if "p_holm" not in row:
        return "Adam"
    if row["clamped_increase"] > 0.01 or not np.isfinite(row["mean"]):
        return "breaks"
    return "differs" if row["p_holm"] < 0.05 else "same as Adam"


def plot(summary: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(5.2 * len(summary), 4.2), squeeze=False)
    for ax, (task, rows) in zip(axes[0], summary.items(), strict=True):
        adam = rows[0]
        smoothed = rows[1:]
        c2 = [r["c2"] for r in smoothed]
        ax.axhspan(adam["mean"] - adam["std"], adam["mean"] + adam["std"], color="gray", alpha=0.25)
        ax.axhline(adam["mean"], color="gray", label="Adam (mean +/- std)")
        ax.errorbar(
            c2, [r["mean"] for r in smoothed], yerr=[r["std"] for r in smoothed],
            marker="o", capsize=3, label="LAdam",
        )  # fmt: skip
        for r in smoothed:
            if r.get("p_holm", 1.0) < 0.05:
                ax.annotate("*", (r["c2"], r["mean"]), ha="center", va="bottom", fontsize=14)
        ax.set(
            xscale="log",
            xlabel="c2",
            ylabel=METRICS[task][1],
            title=f"{task} ({adam['seeds']} seeds)",
        )
        twin = ax.twinx()
        twin.plot(
            c2, [max(r["effect_median"], 1e-12) for r in smoothed], "k:", label="median effect"
        )
        twin.set(yscale="log", ylabel="median step change vs Adam (dotted)")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", nargs="+", choices=("pinn", "mlp", "cnn"), default=["mlp", "cnn", "pinn"]
    )
    parser.add_argument(
        "--c2", type=float, nargs="+", default=list(GRID), help="0 (Adam) is always run"
    )
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the digits tasks")
    parser.add_argument("--pinn-seeds", type=int, default=5)
    parser.add_argument("--digits-steps", type=int, default=500)
    parser.add_argument("--pinn-steps", type=int, default=600)
    parser.add_argument("--pinn-width", type=int, default=64)
    parser.add_argument("--pinn-interior", type=int, default=500)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/c2_sweep"))
    args = parser.parse_args(argv)
    for name in (
        "seeds",
        "pinn_seeds",
        "digits_steps",
        "pinn_steps",
        "pinn_width",
        "pinn_interior",
    ):
        if getattr(args, name) < (2 if "seeds" in name else 1):
            parser.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    if any(c < 0 for c in args.c2):
        parser.error("--c2 values must be >= 0")
    grid = sorted({0.0, *args.c2})
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {
        "pinn": dict(steps=args.pinn_steps, width=args.pinn_width, interior=args.pinn_interior),
        "mlp": dict(steps=args.digits_steps),
        "cnn": dict(steps=args.digits_steps),
    }
    makers = {
        "pinn": lambda: pinn_task(**settings["pinn"]),
        "mlp": lambda: classifier_task(DigitsMLP, None, args.digits_steps),
        "cnn": lambda: classifier_task(DigitsCNN, ladam_optax.torch_folds, args.digits_steps),
    }
    journal = args.out / "runs.jsonl"
    done = {}
    if journal.exists():
        for line in journal.read_text().splitlines():
            run = json.loads(line)
            done[(run["task"], run["c2"], run["seed"], json.dumps(run["settings"]))] = run
    runs = []
    plan = [
        (task, c2, seed)
        for task in args.tasks
        for seed in range(args.pinn_seeds if task == "pinn" else args.seeds)
        for c2 in grid
    ]
    tasks = {}
    bar = tqdm(plan, desc="c2 sweep", disable=not sys.stderr.isatty())
    for task, c2, seed in bar:
        key = (task, c2, seed, json.dumps(settings[task]))
        if key in done:
            runs.append(done[key])
            continue
        if task not in tasks:
            tasks[task] = makers[task]()
        start = time.perf_counter()
        run = {
            "task": task,
            "c2": c2,
            "seed": seed,
            "settings": settings[task],
            **tasks[task](seed, c2),
        }
        run["seconds"] = time.perf_counter() - start
        with journal.open("a") as f:
            f.write(json.dumps(run) + "\n")
        metric = METRICS[task][0]
        line = f"{task} c2={c2:g} seed {seed}: {metric} {run[metric]:.4f}"
        line += f"  effect {run['effect_median']:.2e}"
        if bar.disable:
            print(line, flush=True)  # plain lines when not on a terminal
        else:
            bar.write(line)
        runs.append(run)
    summary = {
        task: compare([r for r in runs if r["task"] == task], METRICS[task][0], grid)
        for task in args.tasks
    }
    for task, rows in summary.items():
        print(f"\n{task}: {METRICS[task][1]} by c2 ({rows[0]['seeds']} seeds)")
        header = ("c2", "mean", "std", "diff [95% CI]", "p (Holm)", "effect")
        print("".join(f"{h:>{w}}" for h, w in zip(header, WIDTHS, strict=True)), " verdict")
        for r in rows:
            ci = (
                f"{r['diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" if "diff" in r else ""
            )
            p = f"{r['p_holm']:.3f}" if "p_holm" in r else ""
            cells = (f"{r['c2']:g}", f"{r['mean']:.4f}", f"{r['std']:.4f}", ci, p)
            cells += (f"{r['effect_median']:.1e}",)
            print("".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True)), "", verdict(r))
    results = {
        "settings": settings,
        "learning_rate": LEARNING_RATE,
        "grid": grid,
        "runs": runs,
        "summary": summary,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot(summary, args.out / "c2_sweep.png")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'c2_sweep.png'}")
    return results


if __name__ == "__main__":
    main()
