#!/usr/bin/env bash
# The floor run: the oldest jax, jaxlib, optax and flax that pyproject.toml admits (each `>=`
# bound of the dependencies and of the flax extra, installed exactly) in a virtual environment of
# its own, .venv-floor/, with the test extra and PyTorch CPU 2.13.0; then the tests that cover
# every module, the Flax (NNX and Linen) and Orbax paths, the export and the multi-device
# layouts. The PyTorch references come from .refs/, installed by tests/run.sh before this runs:
# with CI=true a test that needs one fails rather than skips when it is missing.
#
# Left out to keep the run short, the tests kept taking the same jax, optax and flax paths: the
# parity tests against the PyTorch references (test_parity, test_model_parity; test_auto,
# test_nn, test_reorder, test_schedules and test_smoothing still compare with them here), the
# property tests, the docs, README, examples and benchmark scripts, and the multi-device sharding
# and multi-host tests (the layouts cover the same operator paths). The per-optimizer tables run
# once per transformation (ladam, wave_ladam, ladagrad, lrmsprop in their default modes): the
# mode variants (update_lap, weight_lap, ladamw, momentum) take the same paths, and
# test_diagnostics' wrapper battery is test_alias's again. About 5 minutes on 2 cores, 1 of it
# installing.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-floor
. .venv-floor/bin/activate
pip() { python -m pip --disable-pip-version-check -q "$@"; }
floors="$(mktemp)"
trap 'rm -f "$floors"' EXIT
python - > "$floors" <<'PY'
import re
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["flax"]:
    name, floor = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)", requirement).groups()
    print(f"{name}=={floor}")
PY
pip install --upgrade pip
pip install torch==2.13.0
pip install -c "$floors" -e ".[test]"
python - "$floors" <<'PY'
import importlib.metadata
import pathlib
import sys

pins = dict(line.split("==") for line in pathlib.Path(sys.argv[1]).read_text().split())
installed = {name: importlib.metadata.version(name) for name in pins}
assert installed == pins, (installed, pins)
print("floor run:", ", ".join(f"{name} {version}" for name, version in installed.items()))
PY
tests=(
  tests/test_alias.py tests/test_auto.py tests/test_checkpoint.py tests/test_checks.py
  tests/test_diagnostics.py tests/test_export.py tests/test_flax.py tests/test_folds.py
  tests/test_laplacian.py tests/test_nn.py tests/test_reliability.py tests/test_reorder.py
  tests/test_schedules.py tests/test_smoothing.py tests/test_stacked.py
)
once="not (update_lap or weight_lap or ladamw or momentum or inside_wrappers)"
python -m pytest -n 2 -k "$once" "${tests[@]}" "$@"
LADAM_MULTIDEVICE=1 python -m pytest tests/multidevice/test_layouts.py "$@"
