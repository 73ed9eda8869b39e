"""The result tables of README.md and docs/, generated from the committed runs.

    python examples/report.py            # print every table
    python examples/report.py --write    # write them into README.md and docs/
    python examples/report.py --check    # exit 1 where a file's table differs from the runs

The tables come from ``examples/results/``: ``c2_sweep/runs.jsonl`` (``c2_sweep.py``'s
analysis) and ``c2_sweep/drift.json`` (``c2_sweep.py --drift``), ``pinn_wave/runs.jsonl``
(``pinn_wave.py``'s, the full setting: 5000 steps, 2000 interior points),
``transformer_digits/results.json`` (``transformer_digits.py``'s) and the quickstart's output
from ``quickstart/quickstart.json`` (``quickstart.py --out``); the README's performance table
from ``benchmarks/results/`` (:func:`performance_table`). In a file, each table sits between
the lines ``<!-- NAME -->`` and ``<!-- /NAME -->``. Nothing is trained or measured, and nothing
is written under ``examples/results`` or ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import c2_sweep
import pinn_wave
import quickstart
import transformer_digits

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "examples" / "results"
# Which tables each file shows.
FILES = {
    "README.md": ("quickstart", "pinn", "performance"),
    "docs/evidence.md": ("pinn", "pinn-runs", "transformer", "c2-sweep-tasks"),
    "docs/choosing_c2.md": ("c2-sweep", "c2-drift"),
}
PINN_SETTING = (5000, 2000, pinn_wave.CURVE_EVERY)  # steps, interior points, evaluation period
AXES = ("auto", "explicit")  # the mesh axis types sharded_step.py measures each layout on


def tables() -> dict[str, str]:
    """Every table, by name, from the journals under ``examples/results``."""
    sweep_runs = c2_sweep.read_journal(RESULTS / "c2_sweep" / "runs.jsonl")
    settings = {}
    for run in sweep_runs:
        settings.setdefault(run["task"], run["settings"])
    sweep = {"summary": c2_sweep.analyze(sweep_runs), "settings": settings}
    pinn_runs = [
        run
        for run in pinn_wave.read_journal(RESULTS / "pinn_wave" / "runs.jsonl")
        if pinn_wave.key(run)[4:] == PINN_SETTING
    ]
    summary = pinn_wave.summarize(pinn_runs)
    pinn = {"summary": summary["configurations"], "comparisons": summary["comparisons"]}
    drift = {
        "c2-drift": c2_sweep.drift_table(
            json.loads((RESULTS / "c2_sweep" / "drift.json").read_text())
        )
    }
    transformer = json.loads((RESULTS / "transformer_digits" / "results.json").read_text())
    started = json.loads((RESULTS / "quickstart" / "quickstart.json").read_text())
    return (
        c2_sweep.report_tables(sweep)
        | drift
        | pinn_wave.report_tables(pinn)
        | {"transformer": transformer_digits.report_table(transformer)}
        | {"quickstart": f"```text\n{quickstart.printout(started)}\n```"}
        | {"performance": performance_table()}
    )


def performance_table() -> str:
    """The README's performance table, from the benchmarks' committed results
    (``benchmarks/results/``: ``optimizer_step.py``'s ``results.json``, ``folds.json``,
    ``train_step.json``, ``sharded_step.json``, ``compile_time.json`` and, once an accelerator
    has run ``accelerator_check.sh``, ``accelerator/accelerator_check.json``)."""
    results = REPO / "benchmarks" / "results"
    step, folds, train, sharded, compile_time = (
        json.loads((results / f"{name}.json").read_text())
        for name in ("results", "folds", "train_step", "sharded_step", "compile_time")
    )
    compiled = compile_time["programs"]
    tree = next(row for row in step["tree"] if row["config"] == "ladam[slices]")
    memory = step["memory"]
    same_state = memory["ladam"]["state_bytes"] == memory["adam"]["state_bytes"]
    layouts = sharded["layouts"]

    def spread(layout: str) -> str:
        ratios = sorted(layouts[f"{layout}_{axes}"]["ratio_to_adam"]["ratio"] for axes in AXES)
        return "-".join(f"{r:.2f}" for r in ratios) + "x"

    header = (
        f"{step['machine']['cpu_count']} CPU cores, jax {step['machine']['jax']}, medians of "
        f"{step['reps']} interleaved steps ({sharded['reps']} on 8 devices); commands and details "
        "in [docs/performance.md](docs/performance.md):"
    )
    rows = [
        (
            f"update, {tree['params'] / 1e6:.2f}M-parameter transformer-like tree: `ladam` / "
            "`optax.adam`",
            f"{tree['ratio']:.2f}x (`optimizer_step.py`)",
        ),
        (
            "update, same tree: PyTorch `ladam` 0.2.0 / `ladam`",
            f"{tree['speedup_vs_torch']:.1f}x faster than the reference",
        ),
        (
            "update with `fold=torch_folds` / without: that tree; a "
            f"{folds['trees']['cnn']['params'] / 1e6:.1f}M all-conv tree",
            f"{folds['trees']['transformer']['ratio']:.2f}x; "
            f"{folds['trees']['cnn']['ratio']:.2f}x (`folds.py`)",
        ),
        (
            "whole train step `ladam` / `adam`: PINN; small transformer",
            "; ".join(f"{row['ratio']:.2f}x" for row in train["rows"]) + " (`train_step.py`)",
        ),
        (
            "first compile of a whole train step, `ladam` / `optax.adam`: one device; 8 "
            "simulated devices, FSDP",
            f"{compiled['train_one_device']['ratio']:.2f}x; "
            f"{compiled['train_fsdp_auto']['ratio']:.2f}x (`compile_time.py`)",
        ),
        (
            f"update on 8 simulated devices, {sharded['parameters'] / 1e6:.1f}M params: data "
            "parallel; FSDP; tensor parallel; 2-D mixed (Auto and Explicit axes, no flag)",
            "; ".join(spread(layout) for layout in ("dp", "fsdp", "tp", "mixed"))
            + ", halo exchanges only (`sharded_step.py`, [docs/multi_device.md]"
            "(docs/multi_device.md))",
        ),
        (
            "persistent optimizer state",
            "exactly `optax.adam`'s" if same_state else "larger than `optax.adam`'s",
        ),
        (
            "GPU / TPU",
            "measured: [docs/performance.md](docs/performance.md)"
            if (results / "accelerator" / "accelerator_check.json").exists()
            else "not yet measured",
        ),
    ]
    table = ["| measured | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return header + "\n\n" + "\n".join(table)


def _pattern(name: str) -> re.Pattern:
    name = re.escape(name)
    return re.compile(rf"(<!-- {name} -->\n)(?:(.*?)\n)?(<!-- /{name} -->)", re.S)


def shown(text: str, name: str) -> str | None:
    """The table ``name`` as ``text`` shows it, or ``None`` where it has no such markers."""
    match = _pattern(name).search(text)
    return None if match is None else (match.group(2) or "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="update the files' tables")
    action.add_argument("--check", action="store_true", help="exit 1 if a table is stale")
    args = parser.parse_args(argv)
    generated = tables()
    if not (args.write or args.check):
        for name, table in generated.items():
            print(f"<!-- {name} -->\n{table}\n<!-- /{name} -->\n")
        return 0
    stale = []
    for file, names in FILES.items():
        path = REPO / file
        text = path.read_text()
        for name in names:
            if shown(text, name) is None:
                raise SystemExit(f"{file} has no <!-- {name} --> ... <!-- /{name} --> markers")
            if shown(text, name) != generated[name]:
                stale.append(f"{file}: {name}")
                # A function as the replacement: the table's backslashes stay as they are.
                text = _pattern(name).sub(lambda m, t=generated[name]: f"{m[1]}{t}\n{m[3]}", text)
        if args.write:
            path.write_text(text)
    for entry in stale:
        print(("updated " if args.write else "stale: ") + entry)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
