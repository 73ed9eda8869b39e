"""Two processes x 4 CPU devices through JAX's own multi-process runtime (``jax.distributed`` on
127.0.0.1, gloo collectives), running ``examples/sharded_training.py`` as a user would on two
hosts: ``ladam`` / ``ladamw`` with ``torch_folds`` on a Flax model sharded across both processes
equal one process with 8 devices after 20 steps, and the Orbax checkpoint both processes write
halfway resumes bit-identically."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sharded_training.py"
STEPS = "20"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment() -> dict:
    env = dict(os.environ, TQDM_DISABLE="1")
    env.pop("XLA_FLAGS", None)
    return env


def _run(out: Path, optimizer: str, processes: int, *extra: str) -> dict:
    """Final params (gathered by process 0) of a run of the example."""
    params = out / "params.npz"
    command = [sys.executable, str(EXAMPLE), "--steps", STEPS, "--out", str(out)]
    command += ["--optimizer", optimizer, "--save-params", str(params), *extra]
    if processes == 1:
        commands = [[*command, "--cpu-devices", "8"]]
    else:
        address = f"127.0.0.1:{_free_port()}"
        command += ["--cpu-devices", "4", "--coordinator", address]
        command += ["--num-processes", str(processes)]
        commands = [[*command, "--process-id", str(i)] for i in range(processes)]
    running = [
        subprocess.Popen(c, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for c in commands
    ]
    outputs = [p.communicate(timeout=600)[0].decode() for p in running]
    for p, output in zip(running, outputs, strict=True):
        assert p.returncode == 0, output[-3000:]
    assert f"in {processes} process(es)" in outputs[0]
    with np.load(params) as saved:
        return dict(saved)


@pytest.mark.parametrize("optimizer", ["ladam", "ladamw"])
def test_two_processes_equal_one_and_resume_bit_identically(optimizer, tmp_path):
    two = _run(tmp_path / "two", optimizer, 2)
    one = _run(tmp_path / "one", optimizer, 1)
    assert two.keys() == one.keys() and any("conv" in k for k in two)
    for key in two:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
    if optimizer == "ladam":  # the halfway save and restore changes no bit
        straight = _run(tmp_path / "straight", optimizer, 2, "--no-checkpoint")
        for key in two:
            np.testing.assert_array_equal(two[key], straight[key], err_msg=key)
