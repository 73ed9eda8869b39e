#!/usr/bin/env bash
# The test command: installs the package with its test extra, PyTorch (CPU) and the PyTorch
# reference packages it is checked against, then runs the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
pip() { python -m pip --disable-pip-version-check -q "$@"; }
# torch first and pinned: the local CPU build; an unpinned torch would pull gigabytes of CUDA.
pip install torch==2.13.0
pip install -e ".[test]"
for version in 0.2.0 0.4.1; do
  [ -f ".refs/ladam-$version/ladam/__init__.py" ] ||
    pip install --no-deps --target ".refs/ladam-$version" "ladam==$version"
done
[ -f ".refs/torchzero-0.4.4/torchzero/__init__.py" ] ||
  pip install --no-deps --target ".refs/torchzero-0.4.4" "torchzero==0.4.4"
# The main suite on two worker processes (pytest-xdist): most of a test's time is XLA compiling
# on one core, so two workers use this machine's two cores (8.0 -> 6.4 minutes here).
python -m pytest -n 2 "$@"
# The multi-device suite needs 8 simulated CPU devices set before JAX starts: its own process.
LADAM_MULTIDEVICE=1 python -m pytest tests/multidevice "$@"
