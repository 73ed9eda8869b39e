#!/usr/bin/env bash
# Builds the sdist and wheel, installs the wheel (not editable) into a fresh environment and runs
# a smoke test from a folder outside the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Built from a copy of the tracked files: nothing untracked slips in, and nothing races with an
# editable install of the checkout running at the same time.
mkdir "$work/src"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/src"
python -m build -q --outdir "$work/dist" "$work/src" > "$work/build.log" 2>&1 || {
  cat "$work/build.log"
  exit 1
}
ls "$work"/dist/*.tar.gz > /dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --disable-pip-version-check -q "$(ls "$work"/dist/*.whl)[flax]"
cd "$work"
"$work/venv/bin/python" - <<'PY'
import pathlib

import jax
import jax.numpy as jnp
import optax

import ladam_optax

assert "site-packages" in ladam_optax.__file__, ladam_optax.__file__
assert (pathlib.Path(ladam_optax.__file__).parent / "py.typed").exists()
tx = ladam_optax.ladam(1e-2, c2=0.1, fold=ladam_optax.torch_folds)
params = {"Conv_0": {"kernel": jnp.ones((3, 3, 4, 8))}, "w": jnp.ones((16, 16))}


@jax.jit
def step(params, state):
    grads = jax.tree.map(lambda p: 0.1 * p, params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


params, state = step(params, tx.init(params))
assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
norm = ladam_optax.nn.WaveNorm(8, rngs=__import__("flax").nnx.Rngs(0))
assert norm(jnp.ones((2, 8))).shape == (2, 8)
print("wheel smoke test passed:", pathlib.Path(ladam_optax.__file__).parent)
PY
