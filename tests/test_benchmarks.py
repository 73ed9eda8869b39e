"""Smoke tests of the benchmark scripts: tiny settings, real runs, the results they write checked
for structure and for the memory facts (never for speed: timing is the scripts' job)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

from helpers import REPO, load_reference, require


def _load(name: str):
    for module in ("tqdm", "matplotlib"):
        require(module, "by the benchmarks")
    folder = str(REPO / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the scripts import their sibling _harness
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_optimizer_step(tmp_path):
    argv = [*"--reps 1 --compile-reps 1 --sweep-reps 1 --large --out".split(), str(tmp_path)]
    script = _load("optimizer_step")
    script.SWEEP_SIZES = (16, 32)
    # Both trees of the kind, small: the script's work, not its timings, is tested.
    script.TREE = {"blocks": 1, "d_model": 64, "vocab": 100}
    script.LARGE_TREE = {"blocks": 1, "d_model": 32}
    results = script.main(argv)
    configs = [row["config"] for row in results["tree"]]
    assert configs == [
        "ladam[auto]",
        "ladam[conv]",
        "ladam[5point]",
        "lrmsprop[auto]",
        "ladagrad[auto]",
    ]
    shapes = script.transformer_shapes(**script.TREE).values()
    n_params = sum(math.prod(s) for s in shapes)
    assert all(row["ratio"] > 0 and row["params"] == n_params for row in results["tree"])
    # The PyTorch column: the reference interleaved with each ladam implementation.
    load_reference("0.2.0")  # skips outside CI without the reference, fails in CI
    torch = results["torch"]
    assert torch["torch_ladam"]["median_ms"] > 0 and set(torch["ours"]) == set(configs[:2])
    for row in results["tree"][:2]:
        ours = torch["ours"][row["config"]]["median_ms"]
        assert row["speedup_vs_torch"] == row["torch_ladam_ms"] / ours > 0
    assert all("speedup_vs_torch" not in row for row in results["tree"][2:])
    memory = results["memory"]
    # The state is optax.adam's, leaf for leaf; the update's only temporaries are the ring
    # vectors, 2 (h + w) floats per smoothed 2-D leaf: nothing of a field's size.
    assert memory["ladam"]["state_bytes"] == memory["adam"]["state_bytes"]
    ring_floats = sum(2 * (s[0] + math.prod(s[1:])) for s in shapes if len(s) > 1)
    for label, temp in memory["ladam"]["temp_bytes"].items():
        assert temp <= 4 * ring_floats + 1024, label
        # Peak = what adam holds (same arguments, outputs, aliasing) plus those temporaries.
        extra = memory["ladam"]["peak_bytes"][label] - memory["adam"]["peak_bytes"][label]
        # (not to the byte: XLA's buffer assignment moves with its versions)
        assert abs(extra - (temp - memory["adam"]["temp_bytes"][label])) <= 4096, label
    assert set(results["compile"]) == {
        "adam",
        "ladam",
        "rmsprop",
        "lrmsprop",
        "adagrad",
        "ladagrad",
    }
    assert all(c["total_s"] > 0 for c in results["compile"].values())
    assert json.loads((tmp_path / "results.json").read_text())["tree"][0]["config"] == configs[0]
    # The sweep: each size timed for every implementation, small sizes for more steps.
    assert [(row["size"], row["reps"]) for row in results["sweep"]] == [(16, 50), (32, 50)]
    assert all(row[f"{impl}_ratio"] > 0 for row in results["sweep"] for impl in script.IMPLS)
    assert (tmp_path / "optimizer_step.png").stat().st_size > 10_000
    assert [script.sweep_reps(10, n) for n in (64, 256, 512, 1024, 4096)] == [500, 160, 40, 10, 10]
    large = results["large_tree"]
    large_shapes = script.transformer_shapes(**script.LARGE_TREE).values()
    assert large["params"] == sum(math.prod(s) for s in large_shapes)
    assert large["ratio"] == large["ladam"]["median_ms"] / large["adam"]["median_ms"] > 0


def test_rounds_shuffle_each_round_reproducibly():
    harness = _load("_harness")
    names = ["a", "b", "c", "d"]
    orders = list(harness.rounds(names, 40))
    assert len(orders) == 40 and all(sorted(o) == names for o in orders)
    assert orders == list(harness.rounds(names, 40))  # seeded
    assert len({tuple(o) for o in orders}) > 10  # not one fixed order
    # Every variant follows every other: what a step leaves behind is not charged to one.
    pairs = {(o[i], o[i + 1]) for o in orders for i in range(3)}
    assert pairs == {(x, y) for x in names for y in names if x != y}


def test_accelerator_check_dry_run_and_train_step(tmp_path):
    """The one-command accelerator check on CPU (its tests collected, a tiny update benchmark,
    the whole train step of ``train_step.py`` for one step): what CI can run of it."""
    import subprocess

    script = REPO / "benchmarks" / "accelerator_check.sh"
    done = subprocess.run(
        ["bash", str(script), "--dry-run", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tests collected" in done.stdout
    results = json.loads((tmp_path / "accelerator_check.json").read_text())
    assert results["dry_run"] and set(results["update"]) == {"adam", "ladam", "ladam[conv]"}
    assert all(row["ratio_to_adam"] > 0 for row in results["update"].values())
    assert [row["workload"] for row in results["train_step"]] == [
        "pinn_wave (c2=1e-5)",
        "transformer (c2=1e-4)",
    ]
    assert all(row["ratio"] > 0 for row in results["train_step"])
    assert (tmp_path / "train_step.json").exists()
