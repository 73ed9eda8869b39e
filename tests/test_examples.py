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
    example = _load("quickstart")
    results = example.main(["--steps", "40", "--out", str(tmp_path)])
    assert [r["optimizer"] for r in results] == ["adam", "ladam"]
    for r in results:
        assert r["test_accuracy"] > 0.5  # 40 full-batch steps already learn the digits
    saved = json.loads((tmp_path / "quickstart.json").read_text())
    assert saved["steps"] == 40 and saved["runs"] == results
    # What it saves gives back what it printed (the README's output block is made from it).
    assert capsys.readouterr().out == example.printout(saved) + "\n"


def test_pinn_wave(tmp_path, capsys):
    args = ["--steps", "30", "--eval-every", "15", "--seeds", "2", "--c2", "1e-3"]
    args += ["--adam-eps", "1e-4", "--interior", "32", "--out", str(tmp_path)]
    _load("pinn_wave").main(args)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 30 and isinstance(results["problem"], str)
    runs = results["runs"]
    assert [(r["optimizer"], r["c2"], r["eps"]) for r in runs[:4]] == [
        ("adam", None, 1e-8),
        ("adam", None, 1e-4),
        ("ladam", 1e-3, None),
        ("ladam", 1e-30, None),
    ]
    assert len(runs) == 8  # 4 configurations x 2 seeds
    for run in runs:
        assert set(run) >= {"optimizer", "c2", "eps", "seed", "l2_error", "final_loss", "l2_curve"}
        assert [s for s, _ in run["l2_curve"]] == [15, 30]
        assert run["l2_curve"][-1][1] == run["l2_error"]
        assert 0.0 < run["l2_error"] < 10.0 and np.isfinite(run["final_loss"])
    summary = {row["label"]: row for row in results["summary"]}
    assert list(summary) == ["adam", "adam eps=0.0001", "ladam c2=1e-30", "ladam c2=0.001"]
    for row in summary.values():
        config = (row["optimizer"], row["c2"], row["eps"])
        values = [r["l2_error"] for r in runs if (r["optimizer"], r["c2"], r["eps"]) == config]
        assert row["seeds"] == 2 and row["l2_mean"] == pytest.approx(np.mean(values))
        assert row["l2_median"] == pytest.approx(np.median(values))
        assert row["worst"][0][1] == max(values)
    # The five paired comparisons, each over both seeds, as one family.
    comparisons = {c["comparison"]: c for c in results["comparisons"]}
    assert len(comparisons) == 5 and {c["n"] for c in comparisons.values()} == {2}
    floor = comparisons["floor: LAdam c2=1e-30 - Adam"]
    by = {(r["optimizer"], r["c2"], r["seed"]): r["l2_error"] for r in runs if r["eps"] != 1e-4}
    expected = np.mean([by["ladam", 1e-30, s] - by["adam", None, s] for s in (0, 1)])
    assert floor["diff"] == pytest.approx(expected)
    assert (tmp_path / "pinn_wave.png").stat().st_size > 10_000

    # Resuming: with one more seed, the 8 journaled runs are read back, only seed 2 trains.
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 8
    capsys.readouterr()
    resumed = _load("pinn_wave").main([*args[:5], "3", *args[6:]])
    assert resumed["runs"][:8] == runs
    assert capsys.readouterr().out.count("(from runs.jsonl)") == 8
    assert len(resumed["runs"]) == 12
    # --report trains nothing and prints the Markdown tables of the journal's runs.
    reported = _load("pinn_wave").main([*args[:5], "3", *args[6:], "--report"])
    out = capsys.readouterr().out
    assert reported["comparisons"] == resumed["comparisons"]
    assert "<!-- pinn -->" in out and "| floor: LAdam c2=1e-30 - Adam | 3 |" in out


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
    table = _load("transformer_digits").report_table(saved).splitlines()
    assert table[0].startswith("| optimizer | test accuracy (mean +/- std, 1 seeds)")
    for line, run in zip(table[2:], saved["runs"], strict=True):  # one seed: std 0, that seed
        accuracy = f"{run['test_accuracy']:.4f}"
        assert line.endswith(f"| {accuracy} +/- 0.0000 | {accuracy} |"), line


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
        assert adam["effect"] == 0.0 and "p_holm" not in adam
        # The diagnostic grows with c2: ~c2 relative at these scales.
        assert 0.0 < small["effect"] < large["effect"], task
        for row in (small, large):
            assert row["ci_low"] <= row["diff"] <= row["ci_high"] and 0.0 <= row["p_holm"] <= 1.0
            assert row["n"] == 2 and row["finite"] == 2
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


def test_holm_is_the_whole_step_down_procedure():
    holm = _load("paired_stats").holm
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> the last is
    # raised to 0.06 (monotone); returned in the order given.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.01, 0.02, 0.03]), [0.03, 0.04, 0.04])
    np.testing.assert_allclose(holm([0.4, 0.7, 0.9]), [1.0, 1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(holm([0.02]), [0.02])
    # Ties keep their multipliers in the order given: 0.01 x 3, then 0.01 x 2 -> max is 0.03.
    np.testing.assert_allclose(holm([0.01, 0.01, 0.5]), [0.03, 0.03, 0.5])


def test_paired_test_matches_scipy_and_a_hand_computation():
    require("scipy", "for the paired statistics")
    from scipy import stats

    paired = _load("paired_stats")
    # Differences 1..5: mean 3, sd sqrt(2.5), t = 3 / (sqrt(2.5) / sqrt(5)) = 4.2426, df 4.
    result = paired.paired_test([1.0, 2.0, 3.0, 4.0, 5.0], 0.95)
    assert result["diff"] == pytest.approx(3.0)
    assert result["p"] == pytest.approx(0.013236, abs=1e-6)
    half = 2.776445 * np.sqrt(2.5) / np.sqrt(5)  # t(0.975, 4) x standard error
    assert result["ci_low"] == pytest.approx(3.0 - half, rel=1e-6)
    assert result["ci_high"] == pytest.approx(3.0 + half, rel=1e-6)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12) + 0.3
    for confidence in (0.95, 0.99, 1 - 0.05 / 8):
        ours = paired.paired_test(a - b, confidence)
        theirs = stats.ttest_rel(a, b)
        interval = theirs.confidence_interval(confidence)
        assert ours["p"] == pytest.approx(theirs.pvalue, rel=1e-9)
        assert (ours["ci_low"], ours["ci_high"]) == pytest.approx(
            (interval.low, interval.high), rel=1e-9
        )
    assert paired.paired_test([0.0, 0.0], 0.95)["p"] == 1.0
    with pytest.raises(ValueError, match="at least 2 paired seeds"):
        paired.paired_test([1.0], 0.95)


def test_compare_pairs_pairs_by_seed_and_corrects_the_family():
    require("scipy", "for the paired statistics")
    from scipy import stats

    paired = _load("paired_stats")
    base = {0: 1.0, 1: 2.0, 2: 3.5, 3: 4.0, 5: 9.0}
    a = {0: 1.5, 1: 2.9, 2: 3.6, 3: 5.1, 4: 0.0}  # seed 4 has no partner, seed 5 no run
    b = {0: 0.9, 1: 2.2, 2: 3.4, 3: 4.05, 5: 8.0}
    broken = {0: float("nan"), 1: 2.0, 2: 3.0}
    rows = paired.compare_pairs({"a": (a, base), "b": (b, base), "broken": (broken, base)})
    assert rows["a"]["paired_seeds"] == [0, 1, 2, 3] and rows["b"]["n"] == 5
    for name, values in (("a", a), ("b", b)):
        seeds = rows[name]["paired_seeds"]
        x, y = [values[s] for s in seeds], [base[s] for s in seeds]
        reference = stats.ttest_rel(x, y)
        # Two tested comparisons (the broken one does not count): Bonferroni at 1 - 0.05 / 2.
        interval = reference.confidence_interval(1 - 0.05 / 2)
        assert rows[name]["p"] == pytest.approx(reference.pvalue, rel=1e-9)
        assert rows[name]["ci_low"] == pytest.approx(interval.low, rel=1e-9)
        assert rows[name]["ci_high"] == pytest.approx(interval.high, rel=1e-9)
        assert rows[name]["diff"] == pytest.approx(np.mean(np.subtract(x, y)))
    expected = paired.holm([rows["a"]["p"], rows["b"]["p"]])
    assert [rows["a"]["p_holm"], rows["b"]["p_holm"]] == pytest.approx(expected)
    assert rows["a"]["lower"] == 0 and rows["b"]["lower"] == 3
    assert np.isnan(rows["broken"]["p_holm"]) and np.isnan(rows["broken"]["diff"])


def test_detected_beyond_intervals_names_holm_rejections_whose_interval_touches_0():
    require("scipy", "for the paired statistics")
    paired = _load("paired_stats")
    # One clear difference and three with raw p of 0.015, 0.0137 and 0.0124: Holm adjusts all
    # three to 0.037, below 0.05, while Bonferroni's intervals (each at 1 - 0.05 / 4) reach
    # past 0 for the two whose p exceeds 0.05 / 4 = 0.0125.
    rng = np.random.default_rng(3)
    base = dict(enumerate(rng.normal(size=10)))
    pairs = {}
    for name, shift in (("clear", 0.9), ("a", 0.51), ("b", 0.52), ("c", 0.53)):
        noise = np.linspace(-0.8, 0.8, 10)
        pairs[name] = ({s: base[s] + shift + noise[s] for s in base}, base)
    rows = paired.compare_pairs(pairs)
    beyond = paired.detected_beyond_intervals(rows)
    for name, row in rows.items():
        straddles = row["ci_low"] <= 0.0 <= row["ci_high"]
        assert (name in beyond) == (row["p_holm"] < 0.05 and straddles), name
    assert beyond == ["a", "b"] and rows["c"]["ci_low"] > 0.0 and rows["clear"]["ci_low"] > 0.0
    undetected = {"x": {"p_holm": 0.2, "ci_low": -1.0, "ci_high": 1.0}}
    assert paired.detected_beyond_intervals(undetected) == []


def test_c2_sweep_compare_and_verdicts():
    require("scipy", "for the c2 sweep's statistics")
    example = _load("c2_sweep")
    seeds = range(4)
    metric = {0.0: [1.0, 1.1, 0.9, 1.3], 0.1: [2.0, 2.2, 1.9, 2.3], 0.2: [1.0, 1.2, 0.8, 1.3]}
    runs = [
        {"c2": c2, "seed": s, "m": metric[c2][s], "effect_median": c2, "clamped_fraction": c2 / 10}
        for c2 in metric
        for s in seeds
    ]
    runs.append({**runs[-1], "c2": 0.5, "params_finite": False})  # one seed, parameters NaN
    rows = {r["c2"]: r for r in example.compare(runs, "m", [0.0, 0.1, 0.2, 0.5])}
    paired = _load("paired_stats").compare_pairs(
        {c2: ({s: metric[c2][s] for s in seeds}, dict(enumerate(metric[0.0]))) for c2 in (0.1, 0.2)}
    )  # the 0.5 comparison has one paired seed: not tested, not counted
    for c2 in (0.1, 0.2):
        for key in ("diff", "ci_low", "ci_high", "p", "p_holm", "n"):
            assert rows[c2][key] == pytest.approx(paired[c2][key]), (c2, key)
    assert example.verdict(rows[0.0]) == "Adam"
    assert example.verdict(rows[0.1]) == "differs"  # +1.0 on every seed
    assert example.verdict(rows[0.2]) == "same as Adam"
    assert example.verdict(rows[0.5]) == "breaks"  # accuracy finite, parameters not
    # 0.2: 1% more entries at the eps floor than at the smallest c2 (0.1), the edge of "breaks".
    assert rows[0.2]["clamped_increase"] == pytest.approx(0.01)
    assert example.verdict({**rows[0.2], "clamped_increase": 0.011}) == "breaks"


def test_c2_sweep_refuses_journals_of_another_format_and_baselines_within_the_limit(tmp_path):
    require("scipy", "for the c2 sweep's statistics")
    example = _load("c2_sweep")
    journal = tmp_path / "runs.jsonl"
    run = {"task": "mlp", "c2": 0.0, "seed": 0, "settings": {"steps": 1}, "test_accuracy": 0.5}
    journal.write_text(json.dumps({**run, "format": example.JOURNAL_FORMAT}) + "\n")
    assert example.read_journal(journal)[0]["test_accuracy"] == 0.5
    journal.write_text(journal.read_text() + json.dumps(run) + "\n")  # an old run: no format
    with pytest.raises(ValueError, match=r"runs.jsonl:2 is a run of journal format 1, not 2"):
        example.read_journal(journal)
    # A grid with nothing within the limit has no clamp baseline: 0.5 is not its own baseline.
    runs = [
        {"c2": c2, "seed": s, "m": 1.0 + s + c2, "effect_median": c2, "clamped_fraction": c2}
        for c2 in (0.0, 0.5)
        for s in range(3)
    ]
    rows = {r["c2"]: r for r in example.compare(runs, "m", [0.0, 0.5])}
    assert np.isnan(rows[0.5]["clamped_increase"])
    assert example.verdict(rows[0.5]) == "differs"  # +0.5 on every seed, nothing broke


def test_readme_and_evidence_tables_are_what_the_report_prints(capsys):
    require("scipy", "for the paired statistics")
    report = _load("report")
    generated = report.tables()
    assert report.main([]) == 0
    printed = capsys.readouterr().out
    for file, names in report.FILES.items():
        text = (REPO / file).read_text()
        for name in names:
            assert report.shown(text, name) == generated[name], f"{file}: {name} is stale"
            assert f"<!-- {name} -->\n{generated[name]}\n<!-- /{name} -->" in printed
    assert report.main(["--check"]) == 0
    # A stale table is found: the check reads the markers, not just any matching text.
    stale = "<!-- pinn -->\n| old |\n<!-- /pinn -->"
    assert report.shown(stale, "pinn") == "| old |" and report.shown("no markers", "pinn") is None


def test_c2_sweep_drift_is_zero_at_c2_zero_and_sees_the_floor():
    example = _load("c2_sweep")
    adam = example.drift(0.0, 1, (2, 3))
    assert set(adam["leaves"]) == {f"{layer}.{leaf}" for layer in ("layers.0", "layers.1", "head")
                                   for leaf in ("kernel", "bias")}  # fmt: skip
    for stats in adam["leaves"].values():  # one compiled program: Adam's run, bit for bit
        assert all(v == [0.0, 0.0] for v in stats.values()), stats
    floor = example.drift(1e-30, 1, (3,))["leaves"]
    # c2 = 1e-30: no Laplacian to speak of, but the eps floor changes some entries' steps.
    assert floor["layers.0.kernel"]["step_median"] == [0.0, 0.0]
    assert floor["layers.0.kernel"]["step_max"][0] > 0.1
    assert floor["head.bias"]["step_max"] == [0.0, 0.0]  # 10 entries: not smoothed, no floor
    table = example.drift_table([adam])
    assert table.count("\n") == 1 + 6 and "| 0 | `head.bias` | 0.00 | 0.0e+00 |" in table
