"""Smoke tests of the examples: tiny settings, real runs, outputs checked (not the science)."""

from __future__ import annotations

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
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
        "250",
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
    assert results["steps"] == 250 and isinstance(results["problem"], str)
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
        assert run["l2_curve"][-1] == [250, run["l2_error"]]
        assert 0.0 < run["l2_error"] < 10.0 and np.isfinite(run["final_loss"])
    assert {row["seeds"] for row in results["summary"]} == {2}
    assert (tmp_path / "pinn_wave.png").stat().st_size > 10_000

    # Resuming: with one more seed, the 6 journaled runs are read back, only seed 2 trains.
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 6
    capsys.readouterr()
    resumed = _load("pinn_wave").main([*args[:2], "--seeds", "3", *args[4:]])
    assert resumed["runs"][:6] == runs
    assert capsys.readouterr().out.count("(from runs.jsonl)") == 6
    assert len(resumed["runs"]) == 9


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
