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

Every c2 of one seed shares that seed's initialisation, data split and minibatches, so each c2 is
compared with Adam on the per-seed differences (paired t-test, ``paired_stats.py``; ``scipy``,
which scikit-learn installs), over the seeds both ran: the mean difference with a simultaneous
95% interval (Bonferroni over the task's c2 > 0) and Holm-corrected p-values.

    python examples/c2_sweep.py [--tasks mlp cnn pinn] [--seeds 10] [--pinn-seeds 5]
        [--c2 0 1e-5 1e-4 1e-3 1e-2 3e-2 0.1 0.2 0.3] [--out runs/c2_sweep]
    python examples/c2_sweep.py --report [--out DIR]   # no training: the tables of DIR's runs

Writes OUT/results.json and OUT/c2_sweep.png from every run in OUT/runs.jsonl, which it appends
to as it goes: run the same command again after an interruption and it resumes from the runs
already finished; run it with other --c2 values and their runs join the same analysis.
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
import paired_stats  # the paired statistics, shared with pinn_wave.py
import pinn_wave  # the PINN's model, points, loss and metric

GRID = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3)
LEARNING_RATE = 1e-3
BATCH = 128  # digits minibatch, drawn with replacement each step (seeded)
METRICS = {"pinn": ("l2_error", "relative L2 error"), "mlp": ("test_accuracy", "test accuracy")}
METRICS["cnn"] = METRICS["mlp"]
SHORT = {"pinn": "L2 error", "mlp": "test acc", "cnn": "test acc"}  # the README's Adam column
WIDTHS = (8, 6, 9, 9, 32, 10, 10)  # columns of the printed table
LIMIT = 0.3  # the stability limit of variance_lap with the 9-point stencil
DRIFT_C2 = (1e-30, 1e-4)  # the floor alone, and the reference's recommended c2
DRIFT_STEPS = (30, 500)
# The journal's format: 2 since the step change and clamped fraction come from
# smoothing_effect(tx, state, grads, params) (the step at c2 against the step at c2 = 0).
JOURNAL_FORMAT = 2


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


def all_finite(params) -> bool:
    """Whether every parameter is finite (accuracy stays finite when they are not)."""
    return all(
        bool(jnp.isfinite(x).all())
        for x in jax.tree.leaves(params)
        if jnp.issubdtype(x.dtype, jnp.inexact)
    )


def effect_summary(tx, state, grads, params) -> dict:
    """The diagnostic over every smoothed leaf: size-weighted median effect and clamped
    fraction, largest 99th percentile (NaN for a diverged run, which it cannot measure)."""
    if not all_finite((state, grads)):
        nan = float("nan")
        return {"effect_median": nan, "effect_p99": nan, "clamped_fraction": nan}
    effects = ladam_optax.smoothing_effect(tx, state, grads, params)
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
        params, state, loss, accuracy = train(params, with_c2(tx.init(params), c2), data, key)
        grads = jax.grad(lambda p: loss_fn(p, data["x"], data["y"])[0])(params)
        return {
            "test_accuracy": float(accuracy),
            "test_loss": float(loss),
            "params_finite": all_finite(params),
            **effect_summary(tx, state, grads, params),
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
            "params_finite": all_finite(params),
            **effect_summary(tx, state, jax.grad(loss_fn)(params, points), params),
        }

    return run


def drift(c2: float, seeds: int, steps: tuple[int, ...]) -> dict:
    """How close LAdam at ``c2`` stays to Adam on the digits MLP, entry by entry.

    Per seed, LAdam and Adam (``c2 = 0``) train from the same init on the same minibatches. At
    every LAdam step, its update ``u`` is compared with the update ``u0`` at ``c2 = 0`` from the
    same state and gradients: ``step_max`` is the largest ``|u - u0|`` over steps and entries
    divided by the largest ``|u0|`` of that step and leaf, ``step_median`` the median over
    steps of the median over entries of ``|u - u0| / |u0|`` (entries with ``u0 != 0``). After
    each number of ``steps``, the two runs' parameters ``p`` and ``p0`` are compared:
    ``drift_median`` is the median over entries of ``|p - p0| / |p0 - p_init|`` (Adam's own
    movement), ``drift_max`` the largest ``|p - p0|`` over the largest ``|p0 - p_init|``.

    Returns:
      ``{"c2", "seeds", "steps", "leaves": {name: {statistic: [min, max] over seeds}}}``, the
      drift statistics keyed ``drift_median@N`` and ``drift_max@N`` for each ``N`` of ``steps``.
    """
    tx = optimizer(None)
    graphdef, template = nnx.split(DigitsMLP(nnx.Rngs(0)), nnx.Param)

    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    # One compiled program for all three updates (c2 is in the state): at c2 = 0 LAdam's run is
    # Adam's bit for bit, so what differs is the smoothing's doing, not a rounding of XLA's.
    @jax.jit
    def step(params, state, data, key):
        batch = jax.random.randint(key, (BATCH,), 0, len(data["y"]))
        grads = jax.grad(loss_fn)(params, data["x"][batch], data["y"][batch])
        return tx.update(grads, state, params)

    names = [
        jax.tree_util.keystr(path, simple=True, separator=".").removesuffix(".value")
        for path, _ in jax.tree_util.tree_flatten_with_path(template)[0]
    ]
    per_seed: dict[str, dict[str, list[float]]] = {}
    for seed in range(seeds):
        _, init = nnx.split(DigitsMLP(nnx.Rngs(seed)), nnx.Param)
        data = jax.tree.map(jnp.asarray, digits(seed))
        key = jax.random.key(seed)
        params, params0 = init, init
        state = with_c2(tx.init(init), c2)
        state0 = with_c2(tx.init(init), 0.0)
        step_max: dict[str, float] = {}
        step_medians: dict[str, list[float]] = {}
        for index in range(max(steps)):
            batch_key = jax.random.fold_in(key, index)
            adam_state = state._replace(hyperparams={**state.hyperparams, "c2": jnp.zeros([])})
            counterfactual, _ = step(params, adam_state, data, batch_key)
            update, state = step(params, state, data, batch_key)
            update0, state0 = step(params0, state0, data, batch_key)
            for name, u, c in zip(
                names, jax.tree.leaves(update), jax.tree.leaves(counterfactual), strict=True
            ):
                u, c = np.asarray(u), np.asarray(c)
                largest = np.abs(c).max()
                if largest > 0:
                    step_max[name] = max(step_max.get(name, 0.0), np.abs(u - c).max() / largest)
                moving = c != 0
                if moving.any():
                    relative = np.abs(u - c)[moving] / np.abs(c)[moving]
                    step_medians.setdefault(name, []).append(float(np.median(relative)))
            params = optax.apply_updates(params, update)
            params0 = optax.apply_updates(params0, update0)
            if index + 1 in steps:
                for name, p, p0, p_init in zip(
                    names,
                    jax.tree.leaves(params),
                    jax.tree.leaves(params0),
                    jax.tree.leaves(init),
                    strict=True,
                ):
                    gap = np.abs(np.asarray(p) - np.asarray(p0))
                    moved = np.abs(np.asarray(p0) - np.asarray(p_init))
                    stats = per_seed.setdefault(name, {})
                    stats.setdefault(f"drift_median@{index + 1}", []).append(
                        float(np.median(gap[moved > 0] / moved[moved > 0]))
                    )
                    stats.setdefault(f"drift_max@{index + 1}", []).append(
                        float(gap.max() / moved.max())
                    )
        for name, value in step_max.items():
            per_seed[name].setdefault("step_max", []).append(float(value))
            per_seed[name].setdefault("step_median", []).append(
                float(np.median(step_medians[name]))
            )
    leaves = {
        name: {k: [min(v), max(v)] for k, v in stats.items()} for name, stats in per_seed.items()
    }
    return {"c2": c2, "seeds": seeds, "steps": list(steps), "leaves": leaves}


def drift_table(measured: list[dict]) -> str:
    """``drift``'s results as a Markdown table (each cell: min-max over seeds)."""
    steps = measured[0]["steps"]
    lines = [
        "| c2 | leaf | one step: largest change / the leaf's largest step | one step: median "
        "relative change | "
        + " | ".join(f"after {n} steps: median / largest drift" for n in steps)
        + " |",
        "|---|---|---|---|" + "---|" * len(steps),
    ]

    def span(values: list[float], form: str) -> str:
        low, high = (format(v, form) for v in values)
        return low if low == high else f"{low}-{high}"

    for result in measured:
        for name, stats in result["leaves"].items():
            cells = [f"{result['c2']:g}", f"`{name}`", span(stats["step_max"], ".2f")]
            cells.append(span(stats["step_median"], ".1e"))
            for n in steps:
                median = span(stats[f"drift_median@{n}"], ".2%")
                cells.append(f"{median} / {span(stats[f'drift_max@{n}'], '.1%')}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_is_finite(run: dict, metric: str) -> bool:
    """The metric, the test loss and (where recorded) every parameter are finite."""
    values = (run[metric], run.get("test_loss", 0.0))
    return bool(np.isfinite(values).all()) and run.get("params_finite", True)


def compare(task_runs: list[dict], metric: str, grid) -> list[dict]:
    """Per c2 of ``grid``: the metric over seeds (``paired_stats.distribution``), the mean of
    the runs' ``effect_median`` (``effect``) and clamped fraction, whether every run stayed
    finite; for each c2 > 0 the paired comparison with Adam (c2 = 0) over the seeds both ran:
    ``diff`` (mean of LAdam - Adam), a simultaneous 95% interval (Bonferroni over the c2 > 0),
    the paired t-test's ``p`` and ``p_holm`` (Holm across the c2 > 0)."""
    by_c2 = {c2: [r for r in task_runs if r["c2"] == c2] for c2 in grid}
    per_seed = {c2: {r["seed"]: r[metric] for r in runs} for c2, runs in by_c2.items()}
    tests = paired_stats.compare_pairs({c2: (per_seed[c2], per_seed[0.0]) for c2 in grid if c2 > 0})
    rows = []
    for c2, runs in by_c2.items():
        row = {"c2": c2, **paired_stats.distribution([r[metric] for r in runs])}
        row["seeds"] = row.pop("n")
        row["effect"] = float(np.mean([r["effect_median"] for r in runs]))
        row["clamped_fraction"] = float(np.mean([r["clamped_fraction"] for r in runs]))
        row["finite"] = sum(run_is_finite(r, metric) for r in runs)
        if c2 in tests:
            row |= {key: value for key, value in tests[c2].items() if key != "paired_seeds"}
        rows.append(row)
    # Entries the floor changes at the smallest c2 are Adam's own (zero gradients, dead units,
    # barely lifted by a tiny Laplacian); more than those at a larger c2 is the smoothing's doing.
    # The baseline is a c2 within the limit: a grid without one has no baseline (NaN increase).
    floor = next((r["clamped_fraction"] for r in rows if 0 < r["c2"] <= LIMIT), float("nan"))
    for row in rows:
        row["clamped_increase"] = row["clamped_fraction"] - floor
    return rows


def verdict(row: dict) -> str:
    """``"Adam"``; ``"breaks"`` (a run whose metric, test loss or parameters are not finite, or
    the floor changing the step of more than 1% more entries than at the grid's smallest
    c2 > 0 within the limit); ``"differs"`` (Holm p < 0.05) or ``"same as Adam"``."""
    if row["c2"] == 0.0:
        return "Adam"
    if row["finite"] < row["seeds"] or row["clamped_increase"] > 0.01:
        return "breaks"
    return "differs" if row["p_holm"] < 0.05 else "same as Adam"


def analyze(runs: list[dict]) -> dict:
    """``compare`` for each task of ``runs``, over every c2 it ran; all runs of a task must share
    its settings (steps, sizes): one analysis mixes no two settings."""
    summary = {}
    for task in ("mlp", "cnn", "pinn"):
        task_runs = [r for r in runs if r["task"] == task]
        if not task_runs:
            continue
        settings = {json.dumps(r["settings"], sort_keys=True) for r in task_runs}
        if len(settings) > 1:
            raise ValueError(
                f"the {task} runs have several settings ({', '.join(sorted(settings))}); "
                "keep the runs of other settings in another --out"
            )
        grid = sorted({0.0, *(r["c2"] for r in task_runs)})
        summary[task] = compare(task_runs, METRICS[task][0], grid)
    return summary


def _c2(c2: float) -> str:
    return f"{c2:g}"


def _interval(row: dict, digits: int) -> str:
    if not np.isfinite(row["diff"]):
        return "not tested"
    f = f"{{:+.{digits}f}}"
    return f"{f.format(row['diff'])} [{f.format(row['ci_low'])}, {f.format(row['ci_high'])}]"


TASK_TITLES = {
    "mlp": "MLP on digits, test accuracy",
    "cnn": "CNN on digits with `torch_folds`, test accuracy",
    "pinn": "wave PINN ({steps} steps), relative L2 error",
}
README_TASKS = {
    "mlp": "MLP on digits",
    "cnn": "CNN on digits, `torch_folds`",
    "pinn": "wave PINN, {steps} steps",
}


def report_tables(results: dict) -> dict[str, str]:
    """The Markdown the README (``c2-sweep``) and ``docs/evidence.md`` (``c2-sweep-tasks``) show,
    from ``results.json``'s content."""
    summary, settings = results["summary"], results["settings"]
    readme = [
        "| task (seeds) | Adam (mean +/- std) | c2 <= 0.3 where LAdam differs from Adam "
        "(Holm p < 0.05) | largest paired difference, c2 <= 0.3: c2, LAdam - Adam "
        "[simultaneous 95% CI] | c2 = 0.5 (above the limit) |",
        "|---|---|---|---|---|",
    ]
    effects = []
    for task, rows in summary.items():
        adam, smoothed = rows[0], [r for r in rows[1:] if r["c2"] <= LIMIT]
        digits = 3 if task == "pinn" else 4
        differs = [_c2(r["c2"]) for r in smoothed if verdict(r) == "differs"]
        holm = min(r["p_holm"] for r in smoothed)
        largest = max(smoothed, key=lambda r: abs(r["diff"]))
        above = [r for r in rows if r["c2"] > LIMIT]
        beyond = "; ".join(
            f"{_c2(r['c2'])}: {verdict(r)}, {SHORT[task]} {r['mean']:.2f}; parameters not "
            f"finite in {r['seeds'] - r['finite']} of {r['seeds']} seeds"
            for r in above
        )
        name = README_TASKS[task].format(**settings[task])
        readme.append(
            f"| {name} ({adam['seeds']}) | "
            f"{SHORT[task]} {adam['mean']:.3f} +/- {adam['std']:.3f} | "
            f"{', '.join(differs) or f'none (smallest Holm p {holm:.2f})'} | "
            f"{_c2(largest['c2'])}: {_interval(largest, digits)} | {beyond or 'not run'} |"
        )
        effects.append(
            f"{task} {smoothed[0]['effect']:.1e} at c2 = {_c2(smoothed[0]['c2'])}, "
            f"{smoothed[-1]['effect']:.2f} at c2 = {_c2(smoothed[-1]['c2'])}"
        )
    readme.append("")
    readme.append(
        "Step change at the end of training (`smoothing_effect`: each leaf's median relative "
        "change of the step, averaged over the leaves weighted by their size, leaves the "
        f"smoothing skips counting 0): {'; '.join(effects)}."
    )
    evidence = []
    for task, rows in summary.items():
        adam = rows[0]
        digits = 3 if task == "pinn" else 4
        title = TASK_TITLES[task].format(**settings[task])
        evidence += [
            f"**{title}** ({adam['seeds']} seeds; Adam {adam['mean']:.4f} +/- {adam['std']:.4f}):",
            "",
            "| c2 | paired seeds | mean +/- std | LAdam - Adam, paired [simultaneous 95% CI] | "
            "lower than Adam on | p | p (Holm) | step change | clamped | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows[1:]:
            evidence.append(
                f"| {_c2(r['c2'])} | {r['n']} | {r['mean']:.4f} +/- {r['std']:.4f} | "
                f"{_interval(r, digits)} | {r['lower']}/{r['n']} | "
                f"{r['p']:.3f} | {r['p_holm']:.3f} | "
                f"{r['effect']:.1e} | {r['clamped_fraction']:.4f} | {verdict(r)} |"
            )
        beyond = paired_stats.detected_beyond_intervals({_c2(r["c2"]): r for r in rows[1:]})
        if beyond:
            evidence += [
                "",
                f"Holm detects c2 = {', '.join(beyond)} although the simultaneous interval "
                "(Bonferroni, more conservative than Holm's step-down test) still touches 0.",
            ]
        evidence.append("")
    return {"c2-sweep": "\n".join(readme), "c2-sweep-tasks": "\n".join(evidence).rstrip()}


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
            if verdict(r) == "differs":
                ax.annotate("*", (r["c2"], r["mean"]), ha="center", va="bottom", fontsize=14)
        ax.set(
            xscale="log",
            xlabel="c2",
            ylabel=METRICS[task][1],
            title=f"{task} ({adam['seeds']} seeds)",
        )
        twin = ax.twinx()
        twin.plot(c2, [max(r["effect"], 1e-12) for r in smoothed], "k:", label="step change")
        twin.set(yscale="log", ylabel="step change vs Adam (dotted)")
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
    parser.add_argument(
        "--report",
        action="store_true",
        help="train nothing: analyse OUT/runs.jsonl, write OUT/results.json and the plot, and "
        "print the Markdown tables of the README and docs/evidence.md",
    )
    parser.add_argument(
        "--drift",
        action="store_true",
        help="train nothing else: measure how close LAdam stays to Adam on the digits MLP "
        f"entry by entry (c2 in {DRIFT_C2}, --seeds seeds, {DRIFT_STEPS} steps), write "
        "OUT/drift.json",
    )
    args = parser.parse_args(argv)
    if args.drift:
        args.out.mkdir(parents=True, exist_ok=True)
        measured = [drift(c2, args.seeds, DRIFT_STEPS) for c2 in DRIFT_C2]
        (args.out / "drift.json").write_text(json.dumps(measured, indent=1))
        print(drift_table(measured))
        return {"drift": measured}
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
    journaled = read_journal(journal)
    if args.report:
        return write_results(journaled, args.out, markdown=True)
    done = {run_key(run): run for run in journaled}
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
        key = run_key({"task": task, "c2": c2, "seed": seed, "settings": settings[task]})
        if key in done:
            runs.append(done[key])
            continue
        if task not in tasks:
            tasks[task] = makers[task]()
        start = time.perf_counter()
        run = {
            "format": JOURNAL_FORMAT,
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
    # The analysis covers every run of the journal (earlier invocations' too), this one's first.
    planned = {run_key(r) for r in runs}
    return write_results(runs + [r for r in journaled if run_key(r) not in planned], args.out)


def run_key(run: dict) -> tuple:
    """What identifies a run in the journal: task, c2, seed and settings."""
    return (run["task"], run["c2"], run["seed"], json.dumps(run["settings"]))


def read_journal(path: pathlib.Path) -> list[dict]:
    """The runs journaled at ``path`` (none where it does not exist), all of
    :data:`JOURNAL_FORMAT`: a run of another format was measured differently and is refused."""
    if not path.exists():
        return []
    runs = [json.loads(line) for line in path.read_text().splitlines()]
    for number, run in enumerate(runs, 1):
        if run.get("format") != JOURNAL_FORMAT:
            raise ValueError(
                f"{path}:{number} is a run of journal format {run.get('format', 1)}, not "
                f"{JOURNAL_FORMAT}: its step change and clamped fraction were measured another "
                "way; move the file aside and run the sweep again"
            )
    return runs


def write_results(runs: list[dict], out: pathlib.Path, markdown: bool = False) -> dict:
    """Analyses ``runs``, prints the tables, writes OUT/results.json and OUT/c2_sweep.png."""
    summary = analyze(runs)
    for task, rows in summary.items():
        print(f"\n{task}: {METRICS[task][1]} by c2 ({rows[0]['seeds']} seeds)")
        header = ("c2", "pairs", "mean", "std", "LAdam - Adam [simult. 95%]", "p (Holm)", "effect")
        print("".join(f"{h:>{w}}" for h, w in zip(header, WIDTHS, strict=True)), " verdict")
        for r in rows:
            ci = "" if r["c2"] == 0.0 else _interval(r, 4)
            p = "" if r["c2"] == 0.0 else f"{r['p_holm']:.3f}"
            cells = (_c2(r["c2"]), str(r.get("n", "")), f"{r['mean']:.4f}", f"{r['std']:.4f}")
            cells += (ci, p, f"{r['effect']:.1e}")
            print("".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True)), "", verdict(r))
    settings = {}
    for run in runs:
        settings.setdefault(run["task"], run["settings"])
    results = {
        "settings": settings,
        "learning_rate": LEARNING_RATE,
        "grid": sorted({r["c2"] for r in runs} | {0.0}),
        "runs": runs,
        "summary": summary,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot(summary, out / "c2_sweep.png")
    print(f"wrote {out / 'results.json'} and {out / 'c2_sweep.png'}")
    if markdown:
        for name, table in report_tables(results).items():
            print(f"\n<!-- {name} -->\n{table}")
    return results


if __name__ == "__main__":
    main()
