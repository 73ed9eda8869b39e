"""Smoke tests of the examples: tiny settings, real runs, outputs checked (not the science)."""

from __future__ import annotations

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import REPO, require


def _load(name: str):
    for module in ("flax", "sklearn", "tqdm", "matplotlib"):
        require(module, "by the examples")
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart(tmp_path, capsys):
    results = _load("quickstart").main(["--steps", "40", "--out", str(tmp_path)])
    assert [r["optimizer"] for r in results] == ["adam", "ladam"]
    for r in results:
        assert r["test_accuracy"] > 0.5  # 40 full-batch steps already learn the digits
    saved = json.loads((tmp_path / "quickstart.json").read_text())
    assert saved["steps"] == 40 and len(saved["runs"]) == 2
    assert "ladam" in capsys.readouterr().out


def test_pinn_wave(tmp_path, capsys):
    args = [
        "--steps",
        "50",
        "--eval-every",
        "25",
        "--seeds",
        "2",
        "--c2",
        "1e-4",
        "--interior",
        "64",
        "--out",
        str(tmp_path),
    ]
    _load("pinn_wave").main(args)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 50 and isinstance(results["problem"], str)
    runs = results["runs"]
    assert [(r["optimizer"], r["c2"]) for r in runs[:3]] == [
        ("adam", None),
        ("ladam", 1e-4),
        ("ladam", 1e-30),
    ]
    assert len(runs) == 6  # 3 configurations x 2 seeds
    for run in runs:
        assert set(run) >= {
            "optimizer",
            "c2",
            "seed",
            "l2_error",
            "final_loss",
            "seconds",
            "l2_curve",
        }
        assert [s for s, _ in run["l2_curve"]] == [25, 50] and run["l2_curve"][-1][1] == run[
            "l2_error"
        ]
        assert 0.0 < run["l2_error"] < 10.0 and np.isfinite(run["final_loss"])
    assert {row["seeds"] for row in results["summary"]} == {2}
    assert (tmp_path / "pinn_wave.png").stat().st_size > 10_000

    # Resuming: with one more seed, the 6 journaled runs are read back, only seed 2 trains.
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 6
    capsys.readouterr()
    resumed = _load("pinn_wave").main([*args[:4], "--seeds", "3", *args[6:]])
    assert resumed["runs"][:6] == runs
    assert capsys.readouterr().out.count("(from runs.jsonl)") == 6
    assert len(resumed["runs"]) == 9


def test_pinn_wave_evaluates_at_the_end_of_any_step_count():
    import optax

    example = _load("pinn_wave")
    run = example.train(optax.adam(1e-3), 0, 30, "test", interior=16, eval_every=25, width=8)
    assert [step for step, _ in run["l2_curve"]] == [25, 30]
    assert run["l2_error"] == run["l2_curve"][-1][1] and len(run["loss_curve"]) == 3


def test_pinn_residual_is_u_tt_minus_u_xx():
    example = _load("pinn_wave")
    model = example.MLP(example.nnx.Rngs(0), width=16, depth=2)
    xt = jax.random.uniform(jax.random.key(1), (50, 2))
    expected = example.second_derivative(model, xt, 1) - example.second_derivative(model, xt, 0)
    np.testing.assert_allclose(example.wave_residual(model, xt), expected, rtol=1e-4, atol=1e-5)
    # and the helper itself on a known function: d2/dt2 of sin(pi x) cos(pi t)
    u_tt = example.second_derivative(example.exact, xt, 1)
    np.testing.assert_allclose(u_tt, -(jnp.pi**2) * example.exact(xt), rtol=1e-4, atol=1e-4)


def test_transformer_digits(tmp_path):
    results = _load("transformer_digits").main(
        ["--epochs", "1", "--seeds", "1", "--out", str(tmp_path)]
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["epochs"] == 1 and [r["optimizer"] for r in saved["runs"]] == ["adam", "ladam"]
    for run in saved["runs"]:
        assert set(run) >= {"optimizer", "c2", "seed", "test_accuracy", "test_loss", "curve"}
        assert 0.1 < run["test_accuracy"] <= 1.0  # one epoch learns something
    assert [r["optimizer"] for r in results["summary"]] == ["adam", "ladam"]
    assert (tmp_path / "transformer_digits.png").stat().st_size > 10_000


def test_c2_sweep(tmp_path, capsys):
    require("scipy", "for the c2 sweep's statistics")
    args = ["--tasks", "mlp", "pinn", "--seeds", "2", "--pinn-seeds", "2"]
    args += ["--c2", "1e-4", "0.1", "--digits-steps", "20", "--pinn-steps", "20"]
    args += ["--pinn-width", "8", "--pinn-interior", "32", "--out", str(tmp_path)]
    results = _load("c2_sweep").main(args)
    assert results["grid"] == [0.0, 1e-4, 0.1]
    assert len(results["runs"]) == 2 * 2 * 3  # tasks x seeds x c2
    for task, rows in results["summary"].items():
        assert [r["c2"] for r in rows] == [0.0, 1e-4, 0.1], task
        adam, small, large = rows
        assert adam["effect_median"] == 0.0 and "p_holm" not in adam
        # The diagnostic grows with c2: ~c2 relative at these scales.
        assert 0.0 < small["effect_median"] < large["effect_median"], task
        for row in (small, large):
            assert row["ci_low"] <= row["diff"] <= row["ci_high"] and 0.0 <= row["p_holm"] <= 1.0
    assert (tmp_path / "c2_sweep.png").stat().st_size > 10_000
    # Resuming: every run comes back from the journal, none trains again.
    capsys.readouterr()
    again = _load("c2_sweep").main(args)
    assert again["runs"] == results["runs"]
    out = capsys.readouterr().out
    assert ": test_accuracy" not in out and ": l2_error" not in out  # no run trained again
    # The CNN task (torch_folds on its conv kernels), one short run.
    example = _load("c2_sweep")
    run = example.classifier_task(example.DigitsCNN, example.ladam_optax.torch_folds, 5)(0, 0.1)
    assert 0.0 < run["effect_median"] and 0.0 <= run["test_accuracy"] <= 1.0


def test_c2_sweep_holm_correction():
    example = _load("c2_sweep")
    runs = [
        {"c2": c2, "seed": s, "m": v, "effect_median": 0.0, "clamped_fraction": c2 / 10}
        for c2, values in ((0.0, [1.0, 1.1, 0.9]), (0.1, [2.0, 2.1, 1.9]), (0.2, [1.0, 1.2, 0.8]))
        for s, v in enumerate(values)
    ]
    rows = example.compare(runs, "m", [0.0, 0.1, 0.2])
    p = {r["c2"]: r for r in rows if "p" in r}
    # Holm: the smallest p doubled (two tests), the next one at least as large.
    assert p[0.1]["p_holm"] == pytest.approx(min(1.0, 2 * p[0.1]["p"]))
    assert p[0.2]["p_holm"] >= p[0.1]["p_holm"]
    assert example.verdict(p[0.1]) == "differs"
    # 0.2: 1% more entries at the eps floor than at the smallest c2 (0.1), the edge of "breaks".
    assert p[0.2]["clamped_increase"] == pytest.approx(0.01)
    assert example.verdict(rows[0]) == "Adam"
