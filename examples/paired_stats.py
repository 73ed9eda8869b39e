"""Paired comparisons across seeds, shared by ``c2_sweep.py`` and ``pinn_wave.py``.

Every configuration of one seed shares that seed's initialisation and data, so a comparison is
made on the per-seed differences (a paired t-test), over the seeds where both configurations
finished. A family of comparisons is corrected with Holm's step-down procedure, and its
intervals are simultaneous (Bonferroni: each at level ``1 - alpha / m`` for ``m`` comparisons),
so that together they cover every true difference with probability ``>= 1 - alpha``. An
interval that excludes 0 implies a Holm p-value below ``alpha``; the converse need not hold
(Holm rejects at least what Bonferroni does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given.

    The ``k``-th smallest of ``m`` p-values is multiplied by ``m - k + 1`` (``k`` from 1), each
    adjusted value is at least the one before it in sorted order (step-down), capped at 1.
    """
    order = np.argsort(pvalues, kind="stable")
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * float(pvalues[index])))
        adjusted[index] = running
    return adjusted


def paired_test(differences: Sequence[float], confidence: float) -> dict:
    """Mean of ``differences`` with a two-sided t interval at ``confidence`` and the paired
    t-test's two-sided p-value (is the mean difference 0?). Needs at least two differences.

    All differences equal (no spread): the interval is that value, the p-value 1 if it is 0
    and 0 otherwise.
    """
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        raise ValueError(f"a paired test needs at least 2 paired seeds, got {d.size}")
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return {"diff": mean, "ci_low": mean, "ci_high": mean, "p": 1.0 if mean == 0.0 else 0.0}
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1)) * sd / np.sqrt(d.size)
    t = mean / (sd / np.sqrt(d.size))
    p = float(2 * stats.t.sf(abs(t), d.size - 1))
    return {"diff": mean, "ci_low": mean - half, "ci_high": mean + half, "p": p}


def compare_pairs(
    pairs: Mapping[Any, tuple[Mapping[int, float], Mapping[int, float]]],
    *,
    alpha: float = 0.05,
) -> dict[Any, dict]:
    """Each pair ``(a, b)`` of per-seed metrics as ``a - b``, paired by seed, as one family.

    A comparison with fewer than two paired seeds, or a non-finite difference (a diverged run),
    is not tested: its ``diff``, interval and p-values are NaN and it does not count in the
    family's size.

    Args:
      pairs: per name, ``(a, b)``: two configurations' metric per seed.
      alpha: the family-wise error rate.

    Returns:
      Per name: ``n`` (seeds where both finished) and ``paired_seeds``, ``diff`` (mean of
      ``a - b``), ``median_diff``, ``lower`` (seeds where ``a < b``), ``ci_low``/``ci_high``
      (the simultaneous ``1 - alpha`` interval), ``p`` (paired t-test) and ``p_holm``.
    """
    differences = {}
    for name, (a, b) in pairs.items():
        seeds = sorted(set(a) & set(b))
        differences[name] = (seeds, np.array([a[s] - b[s] for s in seeds], dtype=float))
    tested = [n for n, (_, d) in differences.items() if d.size >= 2 and np.isfinite(d).all()]
    rows = {}
    for name, (seeds, d) in differences.items():
        row: dict[str, Any] = {"n": len(seeds), "paired_seeds": seeds}
        if name in tested:
            row |= paired_test(d, 1 - alpha / len(tested))
        else:
            row |= dict.fromkeys(("diff", "ci_low", "ci_high", "p", "p_holm"), float("nan"))
        row["median_diff"] = float(np.median(d)) if d.size else float("nan")
        row["lower"] = int((d < 0).sum())
        rows[name] = row
    for name, p in zip(tested, holm([rows[n]["p"] for n in tested]), strict=True):
        rows[name]["p_holm"] = p
    return rows


def detected_beyond_intervals(rows: Mapping[Any, dict], alpha: float = 0.05) -> list:
    """The names of ``compare_pairs`` rows that Holm detects (``p_holm < alpha``) although their
    simultaneous interval still contains 0: Holm's step-down test is more powerful than the
    Bonferroni intervals, so the two can disagree near ``alpha``."""
    return [
        name
        for name, row in rows.items()
        if row["p_holm"] < alpha and row["ci_low"] <= 0.0 <= row["ci_high"]
    ]


def distribution(values: Sequence[float]) -> dict:
    """``n``, mean, median, standard deviation (``ddof=1``, 0 for one value), min and max."""
    x = np.asarray(values, dtype=float)
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "min": float(x.min()),
        "max": float(x.max()),
    }
