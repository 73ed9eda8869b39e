"""The PyTorch reference's step on this machine, split into its convolutions and the rest.

The reference LAdam (``ladam==0.2.0``, torch CPU, all cores) smooths every leaf with a
circular ``F.pad`` and a one-channel ``F.conv2d`` (``F.conv1d`` for vectors). Its step on the
transformer-like tree ran at ~60 ms in some runs of ``optimizer_step.py`` and at ~125 ms in
others. This script runs the reference alone (no JAX step in between) for ``--steps`` steps,
times every convolution it calls (the reference module's ``F`` wrapped), and prints, per block
of ``--block`` steps, the median step, the convolutions' share of it and the rest (moments,
padding, the update: memory-bound work). Writes ``OUT/reference_modes.json``.

    python benchmarks/reference_modes.py [--steps 300] [--block 15] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np
from _harness import load_torch_reference, machine, save, torch_tree, transformer_shapes

TREE: dict = {}  # transformer_shapes() arguments; the defaults are the tree
OPS = ("conv2d", "conv1d")


class _TimedConvolutions:
    """``torch.nn.functional`` with ``conv1d`` and ``conv2d`` timed into ``log`` as
    ``(name, seconds)``. PyTorch runs CPU ops synchronously: a wall clock around the call
    times the op."""

    def __init__(self, functional, log: list[tuple[str, float]]):
        self._functional, self._log = functional, log

    def __getattr__(self, name):
        return getattr(self._functional, name)

    def _timed(self, name, *args, **kwargs):
        start = time.perf_counter()
        out = getattr(self._functional, name)(*args, **kwargs)
        self._log.append((name, time.perf_counter() - start))
        return out

    def conv1d(self, *args, **kwargs):
        return self._timed("conv1d", *args, **kwargs)

    def conv2d(self, *args, **kwargs):
        return self._timed("conv2d", *args, **kwargs)


def measure(steps: int, warmup: int = 2) -> dict | None:
    """Per step of the reference on the tree: wall time, time in ``conv2d`` and in ``conv1d``
    (ms), and the number of calls of each; ``None`` when PyTorch or the reference is not
    installed."""
    loaded = load_torch_reference("0.2.0")
    if loaded is None:
        return None
    torch, reference = loaded
    rng = np.random.default_rng(0)
    shapes = transformer_shapes(**TREE)
    tensors = torch_tree(torch, [rng.standard_normal(s, dtype=np.float32) for s in shapes.values()])
    optimizer = reference.LAdam(tensors, lr=1e-3, c2=1e-4)
    log: list[tuple[str, float]] = []
    module = sys.modules[reference.LAdam.__module__]
    functional, module.F = module.F, _TimedConvolutions(module.F, log)
    try:
        run = {"step_ms": []} | {f"{op}_{x}": [] for op in OPS for x in ("ms", "calls")}
        for i in range(warmup + steps):
            log.clear()
            start = time.perf_counter()
            optimizer.step()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                run["step_ms"].append(1e3 * elapsed)
                for op in OPS:
                    run[f"{op}_ms"].append(1e3 * sum(s for name, s in log if name == op))
                    run[f"{op}_calls"].append(sum(name == op for name, _ in log))
    finally:
        module.F = functional
    params = int(sum(t.numel() for t in tensors))
    return {"params": params, "torch_threads": torch.get_num_threads(), **run}


def blocks(run: dict, size: int) -> list[dict]:
    """Medians per block of ``size`` consecutive steps: the step, each convolution op, and
    the rest of the step."""
    out = []
    for start in range(0, len(run["step_ms"]), size):
        part = slice(start, start + size)
        row = {"first_step": start, "step_ms": statistics.median(run["step_ms"][part])}
        row |= {f"{op}_ms": statistics.median(run[f"{op}_ms"][part]) for op in OPS}
        steps = range(len(run["step_ms"]))[part]
        rest = [run["step_ms"][k] - sum(run[f"{op}_ms"][k] for op in OPS) for k in steps]
        out.append(row | {"rest_ms": statistics.median(rest)})
    return out


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps (default 300)")
    parser.add_argument("--block", type=int, default=15, help="steps per block (default 15)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    args = parser.parse_args(argv)
    for name in ("steps", "block"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    run = measure(args.steps)
    if run is None:
        print("PyTorch reference not installed (bash tests/run.sh installs it): nothing to time")
        return None
    table = blocks(run, args.block)
    print(
        f"PyTorch reference LAdam alone, {run['params'] / 1e6:.2f}M parameters, "
        f"{run['torch_threads']} threads, "
        + ", ".join(f"{run[f'{op}_calls'][0]} {op} calls" for op in OPS)
        + " per step; medians per block of steps"
    )
    columns = ("step", *OPS, "rest")
    print(f"{'steps':>9}" + "".join(f"{c + ' ms':>11}" for c in columns))
    for row in table:
        last = min(row["first_step"] + args.block, args.steps) - 1
        cells = "".join(f"{row[c + '_ms']:>11.1f}" for c in columns)
        print(f"{row['first_step']:>4}-{last:<4}{cells}")
    args.out.mkdir(parents=True, exist_ok=True)
    return save(
        {"machine": machine(), "block": args.block, "blocks": table, "run": run},
        args.out / "reference_modes.json",
    )


if __name__ == "__main__":
    main()
