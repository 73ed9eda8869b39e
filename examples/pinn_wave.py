"""The PyTorch reference's headline problem: a wave-equation PINN trained with Adam and with LAdam.

PDE u_tt = c^2 u_xx (c = 1) on x, t in [0, 1]; u(x, 0) = sin(pi x), u_t(x, 0) = 0,
u(0, t) = u(1, t) = 0; exact solution sin(pi x) cos(pi t). Model: Flax NNX MLP 2 -> 5 x 128 tanh
-> 1 (Glorot-normal kernels, zero biases). Points drawn once per seed: 2000 interior, 200 at
t = 0, 200 on the boundaries (100 at x = 0, 100 at x = 1). Loss: mean residual^2 + initial value
+ initial velocity + boundary terms, equal weights, full batch. Metric: relative L2 error on a
101 x 101 grid.

Runs Adam (lr 1e-3) and LAdam (lr 1e-3) for each --c2, plus the ablation c2 = 1e-30 (the
Laplacian term vanishes, only LAdam's variance floor max(v_hat, eps) remains), over --seeds.

    python examples/pinn_wave.py [--steps 5000] [--eval-every 250] [--seeds 5]
        [--c2 1e-5 1e-4 1e-3] [--out DIR]

Writes DIR/results.json and DIR/pinn_wave.png, and DIR/runs.jsonl as it goes: run the same command
again after an interruption and it resumes from the runs already finished.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

import ladam_optax

CURVE_EVERY = 250
ABLATION_C2 = 1e-30


class MLP(nnx.Module):
    """2 -> 5 hidden layers of 128, tanh -> 1."""

    def __init__(self, rngs: nnx.Rngs, width: int = 128, depth: int = 5):
        init = dict(kernel_init=nnx.initializers.glorot_normal(), bias_init=nnx.initializers.zeros)
        sizes = [2] + [width] * depth
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs, **init) for a, b in itertools.pairwise(sizes)]
        )
        self.out = nnx.Linear(width, 1, rngs=rngs, **init)

    def __call__(self, xt):
        h = xt
        for layer in self.hidden:
            h = jnp.tanh(layer(h))
        return self.out(h)[..., 0]


def collocation_points(seed: int, interior: int = 2000) -> dict:
    keys = jax.random.split(jax.random.key(10_000 + seed), 4)
    x0 = jax.random.uniform(keys[1], (200,))
    t_boundary = jax.random.uniform(keys[2], (200,))
    return {
        "interior": jax.random.uniform(keys[0], (interior, 2)),
        "initial": jnp.stack([x0, jnp.zeros_like(x0)], axis=1),
        "boundary": jnp.stack([jnp.repeat(jnp.array([0.0, 1.0]), 100), t_boundary], axis=1),
    }


def exact(xt):
    return jnp.sin(jnp.pi * xt[:, 0]) * jnp.cos(jnp.pi * xt[:, 1])


def second_derivative(f, xt, axis):
    """d^2 f / d xt[:, axis]^2 for every row, forward over forward (rows are independent)."""
    direction = jnp.zeros_like(xt).at[:, axis].set(1.0)
    first = lambda y: jax.jvp(f, (y,), (direction,))[1]  # noqa: E731
    return jax.jvp(first, (xt,), (direction,))[1]


def wave_residual(f, xt):
    """u_tt - u_xx for every row in one forward-over-forward pass.

    With H the Hessian in (x, t): d2^T H d1 = u_tt - u_xx for d1 = (1, 1), d2 = (-1, 1)
    (the wave operator factors as (d_t - d_x)(d_t + d_x)); half the cost of the two second
    derivatives.
    """
    along = jnp.broadcast_to(jnp.array([1.0, 1.0]), xt.shape)
    across = jnp.broadcast_to(jnp.array([-1.0, 1.0]), xt.shape)
    first = lambda y: jax.jvp(f, (y,), (along,))[1]  # noqa: E731
    return jax.jvp(first, (xt,), (across,))[1]


def make_loss(graphdef):
    def loss(params, points):
        u = lambda xt: nnx.merge(graphdef, params)(xt)  # noqa: E731
        interior, initial = points["interior"], points["initial"]
        residual = wave_residual(u, interior)
        velocity = jax.jvp(u, (initial,), (jnp.zeros_like(initial).at[:, 1].set(1.0),))[1]
        return (
            jnp.mean(residual**2)
            + jnp.mean((u(initial) - jnp.sin(jnp.pi * initial[:, 0])) ** 2)
            + jnp.mean(velocity**2)
            + jnp.mean(u(points["boundary"]) ** 2)
        )

    return loss


def relative_l2(graphdef, params, grid):
    prediction = nnx.merge(graphdef, params)(grid)
    truth = exact(grid)
    return jnp.linalg.norm(prediction - truth) / jnp.linalg.norm(truth)


def train(
    tx,
    seed: int,
    steps: int,
    desc: str,
    interior: int = 2000,
    eval_every: int = CURVE_EVERY,
    width: int = 128,
) -> dict:
    model = MLP(nnx.Rngs(seed), width=width)
    graphdef, params = nnx.split(model, nnx.Param)
    points = collocation_points(seed, interior)
    axis = jnp.linspace(0.0, 1.0, 101)
    grid = jnp.stack(jnp.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    loss_fn = make_loss(graphdef)

    @functools.partial(jax.jit, static_argnames="length")
    def chunk(params, state, length):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss_fn)(params, points)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        (params, state), losses = jax.lax.scan(step, (params, state), length=length)
        return params, state, losses, relative_l2(graphdef, params, grid)

    state = tx.init(params)
    start = time.perf_counter()
    losses, curve = [], []
    # Evaluated every eval_every steps and at the end: at most two chunk lengths to compile.
    lengths = [eval_every] * (steps // eval_every) + (
        [steps % eval_every] if steps % eval_every else []
    )
    done = 0
    for length in tqdm(lengths, desc=desc, leave=False, disable=None):
        params, state, chunk_losses, l2 = chunk(params, state, length=length)
        done += length
        losses.extend(np.asarray(chunk_losses).tolist())
        curve.append([done, float(l2)])
    return {
        "seed": seed,
        "l2_error": curve[-1][1],
        "final_loss": losses[-1],
        "seconds": time.perf_counter() - start,
        "l2_curve": curve,
        "loss_curve": losses[::10],
    }


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and std per optimizer configuration, and whether it differs from Adam beyond the
    seed-to-seed spread (|mean difference| > std of Adam + std of the configuration)."""
    groups: dict = {}
    for run in runs:
        groups.setdefault((run["optimizer"], run["c2"]), []).append(run)
    rows = []
    for (optimizer, c2), group in groups.items():
        final = np.array([r["l2_error"] for r in group])
        best = np.array([min(e for _, e in r["l2_curve"]) for r in group])
        rows.append(
            {
                "optimizer": optimizer,
                "c2": c2,
                "seeds": len(group),
                "l2_mean": float(final.mean()),
                "l2_std": float(final.std(ddof=1)) if len(group) > 1 else 0.0,
                "best_l2_mean": float(best.mean()),
                "best_l2_std": float(best.std(ddof=1)) if len(group) > 1 else 0.0,
            }
        )
    adam = next(r for r in rows if r["optimizer"] == "adam")
    for row in rows:
        spread = row["l2_std"] + adam["l2_std"]
        row["vs_adam"] = (row["l2_mean"] - adam["l2_mean"]) / adam["l2_mean"]
        row["beyond_spread"] = abs(row["l2_mean"] - adam["l2_mean"]) > spread
    return rows


def label(row) -> str:
    return "adam" if row["optimizer"] == "adam" else f"ladam c2={row['c2']:g}"


def plot(runs, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {}
    for run in runs:
        key = "adam" if run["optimizer"] == "adam" else f"ladam c2={run['c2']:g}"
        color = colors.setdefault(key, f"C{len(colors)}")
        steps = np.arange(len(run["loss_curve"])) * 10
        left.plot(steps, run["loss_curve"], color=color, alpha=0.5, lw=0.8, label=key)
    handles, labels = left.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    left.legend(unique.values(), unique.keys())
    left.set(yscale="log", xlabel="step", ylabel="PINN loss", title="Training loss (every seed)")
    names = [label(r) for r in rows]
    right.bar(
        names,
        [r["l2_mean"] for r in rows],
        yerr=[r["l2_std"] for r in rows],
        color=[colors.get(n, "gray") for n in names],
        capsize=4,
    )
    right.set(ylabel="relative L2 error (mean +/- std)", title="Final error on a 101 x 101 grid")
    right.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument(
        "--eval-every", type=int, default=CURVE_EVERY, help="steps between L2 evaluations"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--c2", type=float, nargs="+", default=[1e-5, 1e-4, 1e-3])
    parser.add_argument("--no-ablation", action="store_true", help="skip the c2=1e-30 row")
    parser.add_argument(
        "--interior", type=int, default=2000, help="interior points (2000 is the benchmark)"
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/pinn_wave"))
    args = parser.parse_args(argv)
    if args.steps < 1 or args.eval_every < 1:
        parser.error(
            f"--steps and --eval-every must be positive, got {args.steps}, {args.eval_every}"
        )
    args.out.mkdir(parents=True, exist_ok=True)

    configs = [("adam", None, optax.adam(1e-3))]
    c2_values = list(args.c2) + ([] if args.no_ablation else [ABLATION_C2])
    configs += [("ladam", c2, ladam_optax.ladam(1e-3, c2=c2)) for c2 in c2_values]
    # Every finished run is appended to runs.jsonl; a restarted command skips the runs it holds
    # (same seed, configuration, steps and points), so a long run can be resumed.
    journal = args.out / "runs.jsonl"
    done = {}
    if journal.exists():
        for line in journal.read_text().splitlines():
            run = json.loads(line)
            key = (run["seed"], run["optimizer"], run["c2"], run["steps"], run["interior"])
            done[(*key, run.get("eval_every", CURVE_EVERY))] = run
    runs = []
    for seed in range(args.seeds):
        for optimizer, c2, tx in configs:
            name = optimizer if c2 is None else f"ladam c2={c2:g}"
            key = (seed, optimizer, c2, args.steps, args.interior, args.eval_every)
            if key in done:
                run = done[key]
                print(f"seed {seed} {name:<16} L2 {run['l2_error']:.4f}  (from {journal.name})")
            else:
                desc = f"seed {seed} {name}"
                run = train(tx, seed, args.steps, desc, args.interior, args.eval_every)
                run = {"seed": seed, "optimizer": optimizer, "c2": c2, "steps": args.steps,
                       "interior": args.interior, "eval_every": args.eval_every, **run}  # fmt: skip
                with journal.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                print(f"seed {seed} {name:<16} L2 {run['l2_error']:.4f}  {run['seconds']:.0f} s")
            runs.append(run)
    rows = summarize(runs)
    print(f"\n{'optimizer':<18}{'final L2':>18}{'best L2':>18}{'vs adam':>9}  beyond spread")
    for r in rows:
        print(
            f"{label(r):<18}{r['l2_mean']:>10.4f} +/- {r['l2_std']:.4f}"
            f"{r['best_l2_mean']:>10.4f} +/- {r['best_l2_std']:.4f}{r['vs_adam']:>+9.1%}"
            f"  {'yes' if r['beyond_spread'] else 'no'}"
        )
    results = {
        "problem": "wave equation u_tt = u_xx on [0,1]^2, exact sin(pi x) cos(pi t)",
        "steps": args.steps,
        "interior_points": args.interior,
        "runs": runs,
        "summary": rows,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot(runs, rows, args.out / "pinn_wave.png")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'pinn_wave.png'}")
    return results


if __name__ == "__main__":
    main()
