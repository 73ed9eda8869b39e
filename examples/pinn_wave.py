"""The PyTorch reference's headline problem: a wave-equation PINN trained with Adam and with LAdam.

PDE u_tt = c^2 u_xx (c = 1) on x, t in [0, 1]; u(x, 0) = sin(pi x), u_t(x, 0) = 0,
u(0, t) = u(1, t) = 0; exact solution sin(pi x) cos(pi t). Model: Flax NNX MLP 2 -> 5 x 128 tanh
-> 1 (Glorot-normal kernels, zero biases). Points drawn once per seed: 2000 interior, 200 at
t = 0, 200 on the boundaries (100 at x = 0, 100 at x = 1). Loss: mean residual^2 + initial value
+ initial velocity + boundary terms, equal weights, full batch. Metric: relative L2 error on a
101 x 101 grid.

Runs Adam (lr 1e-3), Adam with each larger --adam-eps, and LAdam (lr 1e-3) for each --c2, plus
the ablation c2 = 1e-30 (the Laplacian term vanishes, only LAdam's variance floor max(v_hat, eps)
remains), over --seeds. Every configuration of one seed shares its init and points (paired).

Reports each configuration's final L2 error over seeds (mean, median, std, worst runs) and, paired
by seed over the seeds where both ran (``paired_stats.py``, one family, Holm-corrected, with
simultaneous 95% intervals), the floor's effect (c2 = 1e-30 vs Adam), the Laplacian's (c2 = 1e-3
vs 1e-30), c2 = 1e-3 against Adam with eps = 1e-4 and against Adam, and the larger eps's effect
(Adam with eps = 1e-4 vs Adam), where those ran.

    python examples/pinn_wave.py [--steps 5000] [--eval-every 250] [--seeds 5]
        [--c2 1e-5 1e-4 1e-3] [--adam-eps 1e-4] [--out DIR]
    python examples/pinn_wave.py --report [--out DIR]   # no training: the tables of DIR's runs

Writes DIR/results.json and DIR/pinn_wave.png, and DIR/runs.jsonl as it goes: run the same command
again after an interruption and it resumes from the runs already finished. ``--report`` analyses
every run of DIR/runs.jsonl with the given --steps, --interior and --eval-every.
"""

from __future__ import annotations

import argparse
import functools
import itertools
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
import paired_stats  # the paired statistics, shared with c2_sweep.py

CURVE_EVERY = 250
ADAM_EPS = 1e-8
ABLATION_C2 = 1e-30
LAPLACIAN_C2 = 1e-3  # the c2 the paired comparisons test
LARGER_EPS = 1e-4  # Adam's eps that the floor resembles (sqrt of LAdam's eps scale)
ADAM = ("adam", None, ADAM_EPS)  # (optimizer, c2, eps): one configuration
# The paired comparisons (first minus second, per seed), one family.
COMPARISONS = {
    "floor: LAdam c2=1e-30 - Adam": (("ladam", ABLATION_C2, None), ADAM),
    "Laplacian: LAdam c2=1e-3 - LAdam c2=1e-30": (
        ("ladam", LAPLACIAN_C2, None),
        ("ladam", ABLATION_C2, None),
    ),
    "LAdam c2=1e-3 - Adam eps=1e-4": (("ladam", LAPLACIAN_C2, None), ("adam", None, LARGER_EPS)),
    "LAdam c2=1e-3 - Adam": (("ladam", LAPLACIAN_C2, None), ADAM),
    "larger eps: Adam eps=1e-4 - Adam": (("adam", None, LARGER_EPS), ADAM),
}


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


def key(run: dict) -> tuple:
    """What identifies a run in the journal: seed, configuration, steps, points, evaluations."""
    eps = run.get("eps", ADAM_EPS if run["optimizer"] == "adam" else None)
    return (run["seed"], run["optimizer"], run["c2"], eps, run["steps"], run["interior"],
            run.get("eval_every", CURVE_EVERY))  # fmt: skip


def read_journal(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def configuration(run: dict) -> tuple:
    """``(optimizer, c2, eps)``: Adam's eps (1e-8 where the journal predates the key), ``None``
    for LAdam."""
    return (
        run["optimizer"],
        run["c2"],
        run.get("eps", ADAM_EPS if run["optimizer"] == "adam" else None),
    )


def _order(config: tuple) -> tuple:
    optimizer, c2, eps = config
    return (optimizer != "adam", eps or 0.0, c2 or 0.0)


def summarize(runs: list[dict]) -> dict:
    """Per configuration (``configurations``): the final relative L2 error over seeds (``n``,
    mean, median, std, min, max and the three worst runs) and the best error of each curve;
    ``comparisons``: :data:`COMPARISONS` whose two configurations ran, paired by seed over the
    seeds where both finished (``paired_stats.compare_pairs``: mean difference with a
    simultaneous 95% interval, paired t-test p-values, Holm-corrected)."""
    groups: dict = {}
    for run in runs:
        groups.setdefault(configuration(run), []).append(run)
    per_seed = {c: {r["seed"]: r["l2_error"] for r in g} for c, g in groups.items()}
    adam = per_seed.get(ADAM, {})
    rows = []
    for config in sorted(groups, key=_order):
        group = sorted(groups[config], key=lambda r: r["seed"])
        final = paired_stats.distribution([r["l2_error"] for r in group])
        best = paired_stats.distribution([min(e for _, e in r["l2_curve"]) for r in group])
        worst = sorted(group, key=lambda r: -r["l2_error"])[:3]
        optimizer, c2, eps = config
        rows.append(
            {
                "optimizer": optimizer,
                "c2": c2,
                "eps": eps,
                "label": label({"optimizer": optimizer, "c2": c2, "eps": eps}),
                "seeds": final.pop("n"),
                **{f"l2_{k}": v for k, v in final.items()},
                "best_l2_mean": best["mean"],
                "best_l2_std": best["std"],
                "worst": [[r["seed"], r["l2_error"]] for r in worst],
            }
        )
        # The mean against Adam's on the seeds both ran (relative change).
        shared = sorted(set(per_seed[config]) & set(adam))
        if config != ADAM and shared:
            mean = np.mean([per_seed[config][s] for s in shared])
            relative = float(mean / np.mean([adam[s] for s in shared]) - 1)
            rows[-1]["vs_adam"] = {"seeds": len(shared), "relative": relative}
    pairs = {
        name: (per_seed[a], per_seed[b])
        for name, (a, b) in COMPARISONS.items()
        if a in per_seed and b in per_seed
    }
    tests = paired_stats.compare_pairs(pairs)
    comparisons = [{"comparison": name, **row} for name, row in tests.items()]
    return {"configurations": rows, "comparisons": comparisons}


def label(row) -> str:
    if row["optimizer"] == "ladam":
        return f"ladam c2={row['c2']:g}"
    eps = row.get("eps", ADAM_EPS)
    return "adam" if eps in (None, ADAM_EPS) else f"adam eps={eps:g}"


def plot(runs, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {}
    for run in runs:
        key = label(run)
        color = colors.setdefault(key, f"C{len(colors)}")
        steps = np.arange(len(run["loss_curve"])) * 10
        left.plot(steps, run["loss_curve"], color=color, alpha=0.5, lw=0.8, label=key)
    handles, labels = left.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    left.legend(unique.values(), unique.keys())
    left.set(yscale="log", xlabel="step", ylabel="PINN loss", title="Training loss (every seed)")
    # Every seed's final error (heavy-tailed, so the points and the median, not a mean bar).
    for i, row in enumerate(rows):
        finals = [run["l2_error"] for run in runs if label(run) == row["label"]]
        spread = np.linspace(-0.15, 0.15, len(finals)) if len(finals) > 1 else [0.0]
        color = colors.get(row["label"], "gray")
        right.scatter(i + np.asarray(spread), finals, s=14, color=color, alpha=0.8)
        right.hlines(row["l2_median"], i - 0.3, i + 0.3, color="black", lw=2)
    right.set_xticks(
        range(len(rows)),
        [f"{r['label'].replace(' ', chr(10), 1)}\n({r['seeds']} seeds)" for r in rows],
        fontsize=8,
    )
    right.set(
        yscale="log",
        ylabel="final relative L2 error (each seed; bar: median)",
        title="Final error on a 101 x 101 grid",
    )
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
    parser.add_argument(
        "--adam-eps", type=float, nargs="*", default=[], help="extra Adam runs with these eps"
    )
    parser.add_argument("--no-ablation", action="store_true", help="skip the c2=1e-30 row")
    parser.add_argument(
        "--interior", type=int, default=2000, help="interior points (2000 is the benchmark)"
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/pinn_wave"))
    parser.add_argument(
        "--report",
        action="store_true",
        help="train nothing: analyse the runs of OUT/runs.jsonl with these --steps, --interior "
        "and --eval-every, write OUT/results.json and the plot, print the Markdown tables",
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.eval_every < 1:
        parser.error(
            f"--steps and --eval-every must be positive, got {args.steps}, {args.eval_every}"
        )
    args.out.mkdir(parents=True, exist_ok=True)

    # (optimizer, c2, Adam's eps or None for LAdam, transformation)
    configs = [("adam", None, ADAM_EPS, optax.adam(1e-3))]
    configs += [("adam", None, eps, optax.adam(1e-3, eps=eps)) for eps in args.adam_eps]
    c2_values = list(args.c2) + ([] if args.no_ablation else [ABLATION_C2])
    configs += [("ladam", c2, None, ladam_optax.ladam(1e-3, c2=c2)) for c2 in c2_values]
    # Every finished run is appended to runs.jsonl; a restarted command skips the runs it holds
    # (same seed, configuration, steps and points), so a long run can be resumed.
    journal = args.out / "runs.jsonl"
    if args.report:
        setting = (args.steps, args.interior, args.eval_every)
        return write_results(
            [r for r in read_journal(journal) if key(r)[4:] == setting], args, markdown=True
        )
    done = {key(run): run for run in read_journal(journal)}
    runs = []
    for seed in range(args.seeds):
        for optimizer, c2, eps, tx in configs:
            name = label({"optimizer": optimizer, "c2": c2, "eps": eps})
            run_key = (seed, optimizer, c2, eps, args.steps, args.interior, args.eval_every)
            if run_key in done:
                run = done[run_key]
                print(f"seed {seed} {name:<16} L2 {run['l2_error']:.4f}  (from {journal.name})")
            else:
                desc = f"seed {seed} {name}"
                run = train(tx, seed, args.steps, desc, args.interior, args.eval_every)
                run = {"seed": seed, "optimizer": optimizer, "c2": c2, "eps": eps,
                       "steps": args.steps, "interior": args.interior,
                       "eval_every": args.eval_every, **run}  # fmt: skip
                with journal.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                print(f"seed {seed} {name:<16} L2 {run['l2_error']:.4f}  {run['seconds']:.0f} s")
            runs.append(run)
    return write_results(runs, args)


def write_results(runs: list[dict], args, markdown: bool = False) -> dict:
    """Summarizes ``runs``, prints the tables, writes OUT/results.json and OUT/pinn_wave.png."""
    summary = summarize(runs)
    rows = summary["configurations"]
    print(f"\n{'optimizer':<18}{'runs':>5}{'mean':>9}{'median':>9}{'std':>9}  worst (seed: L2)")
    for r in rows:
        worst = ", ".join(f"{seed}: {l2:.4f}" for seed, l2 in r["worst"])
        print(
            f"{r['label']:<18}{r['seeds']:>5}{r['l2_mean']:>9.4f}{r['l2_median']:>9.4f}"
            f"{r['l2_std']:>9.4f}  {worst}"
        )
    print(f"\n{'paired (first - second)':<44}{'seeds':>6}  mean [simult. 95% CI]   p (Holm)")
    for c in summary["comparisons"]:
        print(f"{c['comparison']:<44}{c['n']:>6}  {_interval(c)}   {c['p_holm']:.3f}")
    results = {
        "problem": "wave equation u_tt = u_xx on [0,1]^2, exact sin(pi x) cos(pi t)",
        "steps": args.steps,
        "interior_points": args.interior,
        "eval_every": args.eval_every,
        "runs": runs,
        "summary": rows,
        "comparisons": summary["comparisons"],
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot(runs, rows, args.out / "pinn_wave.png")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'pinn_wave.png'}")
    if markdown:
        for name, table in report_tables(results).items():
            print(f"\n<!-- {name} -->\n{table}")
    return results


def _interval(row: dict) -> str:
    if not np.isfinite(row["diff"]):
        return "not tested"
    return f"{row['diff']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"


def report_tables(results: dict) -> dict[str, str]:
    """The Markdown the README (``pinn``) and ``docs/evidence.md`` (``pinn-runs``) show, from
    ``results.json``'s content."""
    comparisons = [
        "| paired comparison (first - second) | paired seeds | mean difference of final L2 "
        "[simultaneous 95% CI] | median difference | first lower on | p | p (Holm) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in results["comparisons"]:
        comparisons.append(
            f"| {c['comparison']} | {c['n']} | {_interval(c)} | {c['median_diff']:+.4f} | "
            f"{c['lower']}/{c['n']} | {c['p']:.3f} | {c['p_holm']:.3f} |"
        )
    detected = [c["comparison"] for c in results["comparisons"] if c["p_holm"] < 0.05]
    verdict = "Differences detected (Holm p < 0.05): " + ("; ".join(detected) or "none") + "."
    beyond = paired_stats.detected_beyond_intervals(
        {c["comparison"]: c for c in results["comparisons"]}
    )
    if beyond:
        verdict += (
            " The simultaneous intervals (Bonferroni) are more conservative than Holm's"
            " step-down test: those of " + "; ".join(beyond) + " still touch 0."
        )
    comparisons += ["", verdict]
    versus = [
        f"{r['label']} {100 * r['vs_adam']['relative']:+.0f}% ({r['vs_adam']['seeds']} seeds)"
        for r in results["summary"]
        if "vs_adam" in r
    ]
    if versus:
        comparisons += [
            "",
            "Mean final L2 error against Adam's on the same seeds: " + "; ".join(versus) + ".",
        ]
    runs = [
        "| configuration | seeds | final L2 mean | median | std | min | max | worst runs "
        "(seed: L2) | best L2 of the curve (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["summary"]:
        worst = ", ".join(f"{seed}: {l2:.4f}" for seed, l2 in r["worst"])
        runs.append(
            f"| {r['label']} | {r['seeds']} | {r['l2_mean']:.4f} | {r['l2_median']:.4f} | "
            f"{r['l2_std']:.4f} | {r['l2_min']:.4f} | {r['l2_max']:.4f} | {worst} | "
            f"{r['best_l2_mean']:.4f} |"
        )
    return {"pinn": "\n".join(comparisons), "pinn-runs": "\n".join(runs)}


if __name__ == "__main__":
    main()
