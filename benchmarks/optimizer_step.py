"""Cost of one optimizer update: the LAdam family vs its optax counterpart vs the PyTorch reference.

Every timing is of a jitted update + apply with donated buffers, warm-up excluded, the variants
of one table interleaved in the same process, one step each per round, each round in a shuffled
order (``_harness.rounds``); medians with min-max spread.

1. The transformer-like tree (~6.8M parameters): ladam / optax.adam, lrmsprop / optax.rmsprop,
   ladagrad / optax.adagrad, each Laplacian implementation; then the PyTorch reference
   (``ladam==0.2.0`` on torch CPU, all cores) and torch.optim.Adam, interleaved with each
   ladam implementation in a group of their own (:func:`versus_torch`).
2. Memory and compilation: persistent state bytes and the compiled update's temp memory
   (``memory_analysis()``), ladam vs adam; the time to trace, lower and compile the update
   from cold caches, each LAdam-family optimizer vs its optax counterpart.
3. A sweep of square leaves 64..4096: ratio to adam for each implementation (small leaves
   timed for more steps, :func:`sweep_reps`).
4. With ``--large``: ladam / optax.adam on a ~100M-parameter tree of the same kind (8 blocks of
   d_model 1024), the issue's second tree for the GPU column; ~4 GB of host or device memory.

Writes ``OUT/results.json`` and ``OUT/optimizer_step.png`` (ratio vs leaf size).

    python benchmarks/optimizer_step.py [--reps 100] [--sweep-reps 10] [--large]
        [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import jax
import optax
from _harness import (
    PAIRS,
    Timer,
    apply_step,
    cold_compiles,
    interleaved,
    load_torch_reference,
    machine,
    paired_ratios,
    random_params,
    save,
    torch_tree,
    transformer_shapes,
)
from tqdm import tqdm

import ladam_optax

IMPLS = ("auto", "conv")
SWEEP_SIZES = (64, 128, 256, 512, 1024, 2048, 4096)
TREE: dict = {}  # transformer_shapes() arguments of the main tree: the issue's, ~6.8M parameters
LARGE_TREE = {"blocks": 8, "d_model": 1024}  # 101.8M parameters


def family(c2: float = 1e-4) -> dict:
    """(name, adam-like baseline, ladam-like) rows of the main table."""
    rows = {base: (base_tx, {"auto": make(c2=c2)}) for base, base_tx, make in PAIRS.values()}
    make_ladam = PAIRS["ladam"][2]
    rows["adam"][1].update({i: make_ladam(c2=c2, laplacian_impl=i) for i in IMPLS})
    rows["adam"][1]["5point"] = make_ladam(c2=c2, stencil="5point")
    return rows


def versus_torch(timer: Timer, params: dict, reps: int) -> dict | None:
    """torch.optim.Adam and the reference LAdam (``ladam==0.2.0``, torch CPU, all cores) on
    the same tree, interleaved with each ``ladam`` implementation; ``None`` when PyTorch or
    the reference is not installed.

    A group of its own: PyTorch's OpenMP threads keep spinning after a step and slow the step
    timed next, so in the main table's rounds they would tax the JAX rows unevenly. Here the
    tax falls on our side of the speed-up: the default ``ladam`` took 13.6-15.9 ms beside
    PyTorch against 11.5-14.2 ms in the main table (six runs on 2 CPU cores), slower in
    each run."""
    loaded = load_torch_reference("0.2.0")
    if loaded is None:
        return None
    torch, reference = loaded
    tensors = torch_tree(torch, jax.device_get(list(params.values())))
    optimizers = {
        "torch_adam": torch.optim.Adam(tensors, lr=1e-3),
        "torch_ladam": reference.LAdam(tensors, lr=1e-3, c2=1e-4),
    }

    def runner(opt):
        def run():
            start = time.perf_counter()
            opt.step()
            return time.perf_counter() - start

        for _ in range(2):
            run()
        return run

    make_ladam = PAIRS["ladam"][2]
    runs = {f"ladam[{i}]": timer.prepare(make_ladam(c2=1e-4, laplacian_impl=i)) for i in IMPLS}
    result = interleaved(runs | {k: runner(v) for k, v in optimizers.items()}, reps)
    ours = {name: result.pop(name) for name in runs}
    return result | {"torch_threads": torch.get_num_threads(), "ours": ours}


DONATIONS = {"none": (), "state": (1,), "state+params": (1, 2)}


def compile_times(params: dict, grads: dict, reps: int) -> dict:
    """Seconds to trace + lower and to compile the donated update + apply step, each pair
    interleaved in shuffled rounds, every time from cold caches (:func:`_harness.cold_compiles`)."""
    out = {}
    for ours_name, (base_name, base_tx, make) in PAIRS.items():
        pair = {base_name: base_tx, ours_name: make(c2=1e-4)}
        samples = cold_compiles(pair, grads, params, reps)
        for name, runs in samples.items():
            lower = [r["trace_s"] + r["lower_s"] for r in runs]
            total = [r["total_s"] for r in runs]
            out[name] = {
                "lower_s": statistics.median(lower),
                "compile_s": statistics.median(r["compile_s"] for r in runs),
                "total_s": statistics.median(total),
                "total_min_s": min(total),
            }
        totals = [[r["total_s"] for r in samples[name]] for name in pair]
        out[ours_name] |= paired_ratios(*totals)
    return out


def memory(params: dict, grads: dict) -> dict:
    """Persistent state bytes, and the compiled update's temp bytes and peak bytes (arguments +
    outputs not aliased to a donated input + temps), per donation setting, ladam vs adam."""
    out = {}
    _, adam, make_ladam = PAIRS["ladam"]
    for name, tx in {"adam": adam, "ladam": make_ladam(c2=1e-4)}.items():
        state = tx.init(params)
        temp, peak = {}, {}
        for label, donate in DONATIONS.items():
            compiled = jax.jit(apply_step(tx), donate_argnums=donate).lower(grads, state, params)
            stats = compiled.compile().memory_analysis()
            temp[label] = int(stats.temp_size_in_bytes)
            # What the step holds at once: its inputs, the outputs that do not reuse a donated
            # input, and its temporaries.
            peak[label] = int(
                stats.argument_size_in_bytes
                + stats.output_size_in_bytes
                - stats.alias_size_in_bytes
                + stats.temp_size_in_bytes
            )
        out[name] = {
            "state_bytes": sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)),
            "temp_bytes": temp,
            "peak_bytes": peak,
        }
    return out


def sweep_reps(reps: int, n: int) -> int:
    """Timed steps at side ``n``: ``reps`` from 1024 up, ``reps * (1024 / n)**2`` below, at
    most ``50 * reps``. A small leaf's step is ~0.1 ms, near the timer's and the dispatch's
    noise, so it needs many more samples than a large one."""
    return min(max(reps, round(reps * (1024 / n) ** 2)), 50 * reps)


def sweep(reps: int) -> list[dict]:
    rows = []
    for n in tqdm(SWEEP_SIZES, desc="sweep", disable=None):
        timer = Timer(random_params({"w": (n, n)}))
        runs = {"adam": timer.prepare(optax.adam(1e-3))}
        impls = IMPLS if n <= 2048 else ("auto",)  # conv at 4096^2: minutes
        for impl in impls:
            runs[impl] = timer.prepare(ladam_optax.ladam(1e-3, c2=1e-4, laplacian_impl=impl))
        n_reps = sweep_reps(reps, n)
        result = interleaved(runs, n_reps)
        base = result["adam"]["median_ms"]
        rows.append(
            {"size": n, "reps": n_reps, "adam_ms": base}
            | {f"{i}_ratio": result[i]["median_ms"] / base for i in impls}
            | {f"{i}_ms": result[i]["median_ms"] for i in impls}
        )
    return rows


def large_tree(reps: int) -> dict:
    """ladam (default implementation) vs optax.adam on the ~100M-parameter tree, interleaved."""
    params = random_params(transformer_shapes(**LARGE_TREE))
    _, adam, make_ladam = PAIRS["ladam"]
    timer = Timer(params)
    runs = {"adam": timer.prepare(adam), "ladam": timer.prepare(make_ladam(c2=1e-4))}
    result = interleaved(runs, reps)
    return {
        "params": sum(x.size for x in jax.tree.leaves(params)),
        "tree": LARGE_TREE,
        "ratio": result["ladam"]["median_ms"] / result["adam"]["median_ms"],
    } | result


def plot(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for impl in IMPLS:
        points = [(r["size"], r[f"{impl}_ratio"]) for r in rows if f"{impl}_ratio" in r]
        ax.plot(*zip(*points, strict=True), marker="o", label=f"ladam ({impl})")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--", label="optax.adam")
    ax.set(xscale="log", yscale="log", xlabel="square leaf side n (n x n parameters)")
    ax.set(ylabel="update time / optax.adam", title=f"LAdam update cost ({jax.default_backend()})")
    ax.set_xticks(SWEEP_SIZES, [str(s) for s in SWEEP_SIZES])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100, help="timed steps per variant (trees)")
    parser.add_argument(
        "--sweep-reps",
        type=int,
        default=10,
        help="timed steps per sweep point, n >= 1024 (more below)",
    )
    parser.add_argument("--no-sweep", action="store_true", help="skip the square-leaf sweep")
    parser.add_argument(
        "--compile-reps", type=int, default=15, help="cold compiles per optimizer (interleaved)"
    )
    parser.add_argument(
        "--large", action="store_true", help="also time ladam vs adam on a ~100M-parameter tree"
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    params = random_params(transformer_shapes(**TREE))
    n_params = sum(x.size for x in jax.tree.leaves(params))
    timer = Timer(params)
    table = []
    for base_name, (base_tx, variants) in tqdm(family().items(), desc="tree", disable=None):
        runs = {base_name: timer.prepare(base_tx)}
        runs |= {f"l{base_name}[{impl}]": timer.prepare(tx) for impl, tx in variants.items()}
        result = interleaved(runs, args.reps)
        for name, r in result.items():
            if name != base_name:
                table.append(
                    {"config": name, "params": n_params, "baseline": base_name}
                    | {f"baseline_{k}": v for k, v in result[base_name].items()}
                    | r
                    | {"ratio": r["median_ms"] / result[base_name]["median_ms"]}
                )
    torch_times = versus_torch(timer, params, args.reps)
    grads = random_params(transformer_shapes(**TREE), seed=1)  # distinct buffers from the params
    mem = memory(params, grads)
    compiled = compile_times(params, grads, args.compile_reps)
    rows = [] if args.no_sweep else sweep(args.sweep_reps)
    large = large_tree(args.reps) if args.large else None

    print(f"\n{n_params / 1e6:.2f}M parameters, {jax.default_backend()}, {args.reps} reps")
    header = f"{'config':<22}{'base ms':>9}{'ours ms':>9}{'spread ms':>16}{'ratio':>7}"
    print(header + f"{'torch ms':>10}{'speed-up':>10}")
    for row in table:
        spread = f"{row['min_ms']:.1f}-{row['max_ms']:.1f}"
        line = f"{row['config']:<22}{row['baseline_median_ms']:>9.1f}{row['median_ms']:>9.1f}"
        line += f"{spread:>16}{row['ratio']:>7.2f}"
        if torch_times and row["config"] in torch_times["ours"]:
            torch_ms = torch_times["torch_ladam"]["median_ms"]
            ours_ms = torch_times["ours"][row["config"]]["median_ms"]
            row |= {"torch_ladam_ms": torch_ms, "ours_beside_torch_ms": ours_ms}
            row["speedup_vs_torch"] = torch_ms / ours_ms
            line += f"{torch_ms:>10.1f}{row['speedup_vs_torch']:>9.1f}x"
        print(line)
    if torch_times:
        t_adam, t_ladam = (
            torch_times["torch_adam"]["median_ms"],
            torch_times["torch_ladam"]["median_ms"],
        )
        ours = torch_times["ours"]["ladam[auto]"]["median_ms"]
        print(
            f"PyTorch ({torch_times['torch_threads']} threads): Adam {t_adam:.1f} ms, "
            f"reference LAdam {t_ladam:.1f} ms ({t_ladam / t_adam:.1f}x Adam); interleaved "
            f"with them, ladam[auto] {ours:.1f} ms"
        )
    else:
        print("PyTorch reference not installed (bash tests/run.sh installs it): no torch column")
    adam, ladam = mem["adam"], mem["ladam"]
    mib = 2.0**20
    print(f"persistent state bytes ladam/adam {ladam['state_bytes'] / adam['state_bytes']:.3f}")
    for label in DONATIONS:
        a, b = adam["temp_bytes"][label], ladam["temp_bytes"][label]
        ratio = f"{b / a:.2f}x" if a > 2**16 else "(adam needs none)"
        peak = ladam["peak_bytes"][label] / adam["peak_bytes"][label]
        print(
            f"compiled temp, donating {label:<13} {b / mib:6.2f} MiB"
            f" vs adam {a / mib:6.2f} MiB {ratio}; peak ladam/adam {peak:.4f}"
        )
    print(
        f"\ncold trace+lower / compile / total s, medians of {args.compile_reps} interleaved;"
        " ratio: median (min-max) of the paired ratios"
    )
    for name, c in compiled.items():
        line = f"{name:<10}{c['lower_s']:>7.3f}{c['compile_s']:>8.3f}{c['total_s']:>8.3f}"
        if "ratio" in c:
            line += f"   ratio {c['ratio']:.2f} ({c['ratio_min']:.2f}-{c['ratio_max']:.2f})"
        print(line)
    if large:
        a, b = large["adam"], large["ladam"]
        print(
            f"\n{large['params'] / 1e6:.1f}M parameters ({large['tree']}): adam "
            f"{a['median_ms']:.1f} ms ({a['min_ms']:.1f}-{a['max_ms']:.1f}), ladam "
            f"{b['median_ms']:.1f} ms ({b['min_ms']:.1f}-{b['max_ms']:.1f}), "
            f"ratio {large['ratio']:.2f}"
        )
    if rows:
        print(f"\n{'n':>6}{'adam ms':>10}" + "".join(f"{i + ' x':>12}" for i in IMPLS))
        for r in rows:
            ratios = "".join(
                f"{r[f'{i}_ratio']:>12.2f}" if f"{i}_ratio" in r else f"{'-':>12}" for i in IMPLS
            )
            print(f"{r['size']:>6}{r['adam_ms']:>10.2f}{ratios}")
        plot(rows, args.out / "optimizer_step.png")
        print(f"wrote {args.out / 'optimizer_step.png'}")
    results = {
        "machine": machine(),
        "reps": args.reps,
        "tree": table,
        "torch": torch_times,
        "memory": mem,
        "compile": compiled,
        "sweep": rows,
        "large_tree": large,
    }
    return save(results, args.out / "results.json")


if __name__ == "__main__":
    main()
