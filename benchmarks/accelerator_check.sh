#!/usr/bin/env bash
# The one-command accelerator check: on a GPU or TPU host (with jax, optax, pytest and, for the
# NNX tests, flax installed for it; the package itself is taken from this checkout, so it runs
# where nothing can be installed), the tests that exercise the Laplacian and the four optimizers
# run on that backend, then the benchmark rows (update vs optax.adam for the default and "conv"
# forms, whole train step) are written to OUT/accelerator_check.json.
# About 5 minutes on one accelerator.
#
#   bash benchmarks/accelerator_check.sh [--dry-run] [OUT]
#
# --dry-run: the CPU smoke that CI runs: the tests are only collected, the benchmark runs a tiny
# tree for one step.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=""
if [ "${1:-}" = "--dry-run" ]; then
  dry="--dry-run"
  shift
fi
out="${1:-benchmarks/results/accelerator}"
# This checkout's package, for the benchmark scripts too (pytest's `python -m` finds it anyway).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import jax; print('backend:', jax.default_backend(), jax.devices())"
tests=(tests/test_laplacian.py tests/test_alias.py tests/test_folds.py tests/test_properties.py)
if [ -n "$dry" ]; then
  python -m pytest -q --collect-only "${tests[@]}" | tail -n 1
else
  python -m pytest -q -x "${tests[@]}"
fi
python benchmarks/accelerator_check.py $dry --out "$out"
