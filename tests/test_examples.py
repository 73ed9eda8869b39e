"""Smoke tests of the examples: tiny settings, real runs, outputs checked (not the science)."""

from __future__ import annotations

import importlib.util
import json

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
