"""Data- and model-parallel training with LAdam on a device mesh, with a checkpoint halfway.

A Flax NNX classifier (a 3 x 3 conv with 8 channels, then 512 -> 512 -> 10) on scikit-learn's
bundled digits, with ``fold=torch_folds`` (the conv kernel smoothed as PyTorch lays it out). The
mesh is ("data", "model"): the batch is split over "data"; the conv kernel by output channels,
the first dense kernel by columns and the second by rows over "model" (Megatron-style), so every
LAdam moment lives where its parameter does and the Laplacian exchanges only one-row /
one-column halos between devices. Halfway, {params, opt_state} is saved with Orbax, restored
into a sharded abstract target and training continues from the restored copy.

On a CPU-only machine it simulates --cpu-devices devices (default 8); with accelerators it
uses the real ones. On several hosts, start the same command on each with the coordinator's
address, the number of processes and each one's id (JAX's own multi-process runtime; on a TPU
pod slice or a SLURM cluster ``jax.distributed.initialize()`` finds them itself: pass
``--distributed``):

    python examples/sharded_training.py [--steps 200] [--cpu-devices 8] [--out DIR]
        [--optimizer ladam|ladamw] [--coordinator HOST:PORT --num-processes N --process-id I]
"""

from __future__ import annotations

import argparse
import pathlib

import jax


def _configure_devices(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="total training steps")
    parser.add_argument("--batch", type=int, default=256, help="global batch size")
    parser.add_argument("--c2", type=float, default=1e-4, help="LAdam's Laplacian coupling")
    parser.add_argument("--cpu-devices", type=int, default=8, help="simulated CPU devices")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/sharded"))
    parser.add_argument("--optimizer", choices=("ladam", "ladamw"), default="ladam")
    parser.add_argument("--no-checkpoint", action="store_true", help="skip the halfway restore")
    parser.add_argument("--save-params", type=pathlib.Path, help="final params (.npz), gathered")
    hosts = parser.add_argument_group("several processes (hosts)")
    hosts.add_argument("--coordinator", help="HOST:PORT of process 0")
    hosts.add_argument("--num-processes", type=int)
    hosts.add_argument("--process-id", type=int)
    hosts.add_argument(
        "--distributed", action="store_true", help="jax.distributed.initialize() from the cluster"
    )
    args = parser.parse_args(argv)
    try:  # must happen before JAX starts its CPU backend; harmless with accelerators
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    except RuntimeError:
        pass  # the backend is already up (e.g. imported by a test runner): use what exists
    if args.coordinator is not None:
        if args.num_processes is None or args.process_id is None:
            parser.error("--coordinator needs --num-processes and --process-id")
        # CPU processes exchange through gloo; accelerators use their own interconnect.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    elif args.distributed:
        jax.distributed.initialize()
    return args


def main(argv=None) -> dict:
    args = _configure_devices(argv)
    import jax.numpy as jnp
    import numpy as np
    import optax
    import orbax.checkpoint as ocp
    from flax import nnx
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P
    from sklearn.datasets import load_digits
    from tqdm import tqdm

    import ladam_optax

    devices = jax.device_count()
    model_axis = 4 if devices % 4 == 0 else 1
    mesh = jax.make_mesh(  # Auto axes: XLA's partitioner places the activations
        (devices // model_axis, model_axis),
        ("data", "model"),
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
    )
    processes = jax.process_count()
    print(
        f"{devices} {jax.default_backend()} devices in {processes} process(es),"
        f" mesh {dict(mesh.shape)}"
    )

    class Classifier(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
            self.hidden1 = nnx.Linear(512, 512, rngs=rngs)
            self.hidden2 = nnx.Linear(512, 512, rngs=rngs)
            self.out = nnx.Linear(512, 10, rngs=rngs)

        def __call__(self, x):
            h = nnx.relu(self.conv(x.reshape(-1, 8, 8, 1))).reshape(x.shape[0], -1)
            return self.out(nnx.relu(self.hidden2(nnx.relu(self.hidden1(h)))))

    layout = {  # parameter path -> how it is split over the mesh
        ("conv", "kernel"): P(None, None, None, "model"),
        ("hidden1", "kernel"): P(None, "model"),
        ("hidden1", "bias"): P("model"),
        ("hidden2", "kernel"): P("model", None),
    }

    def place(x, sharding):
        """A host array laid out over the mesh: each process supplies its own shards (the same
        call on one host or many)."""
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    graphdef, params = nnx.split(Classifier(nnx.Rngs(0)), nnx.Param)
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: place(
            x, NamedSharding(mesh, layout.get(tuple(str(p.key) for p in path[:2]), P()))
        ),
        nnx.to_pure_dict(params),
    )
    make = ladam_optax.ladamw if args.optimizer == "ladamw" else ladam_optax.ladam
    tx = make(1e-3, c2=args.c2, fold=ladam_optax.torch_folds)
    opt_state = jax.jit(tx.init)(params)  # every moment is sharded like its parameter

    digits = load_digits()
    x_all = np.asarray(digits.data / 16.0, np.float32)
    y_all = np.asarray(digits.target)
    batch_sharding = NamedSharding(mesh, P("data"))

    def loss_fn(params, x, y):
        model = nnx.merge(graphdef, nnx.State(params))
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    def train_step(opt_state, params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return opt_state, optax.apply_updates(params, updates), loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))

    def abstract(a):  # the restore target: shapes and shardings; the step count replicated
        sharding = a.sharding if a.ndim else NamedSharding(mesh, P())
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)

    rng = np.random.default_rng(0)
    checkpointer = ocp.StandardCheckpointer()
    checkpoint = args.out.resolve() / "checkpoint"
    losses = []
    for step in tqdm(range(1, args.steps + 1), desc="train", disable=None):
        index = rng.choice(x_all.shape[0], args.batch, replace=False)
        x = place(x_all[index], batch_sharding)
        y = place(y_all[index], batch_sharding)
        opt_state, params, loss = train_step(opt_state, params, x, y)
        losses.append(float(loss))
        if step == args.steps // 2 and not args.no_checkpoint:
            checkpointer.save(checkpoint, {"params": params, "opt_state": opt_state}, force=True)
            checkpointer.wait_until_finished()
            target = jax.tree.map(abstract, {"params": params, "opt_state": opt_state})
            restored = checkpointer.restore(checkpoint, target)
            params, opt_state = restored["params"], restored["opt_state"]
            tqdm.write(f"step {step}: loss {loss:.4f}; saved and restored {checkpoint}")
    everything = NamedSharding(mesh, P())
    predict = jax.jit(lambda p, x: jnp.argmax(nnx.merge(graphdef, nnx.State(p))(x), -1))
    accuracy = float(np.mean(np.asarray(predict(params, place(x_all, everything))) == y_all))
    kernel = params["hidden1"]["kernel"]
    mu = optax.tree.get(opt_state, "mu")["hidden1"]["kernel"]
    print(f"final loss {losses[-1]:.4f}, accuracy on all digits {accuracy:.4f}")
    print(f"hidden1 kernel {kernel.sharding.spec}; its LAdam first moment {mu.sharding.spec}")
    if args.save_params is not None:
        args.save_params.parent.mkdir(parents=True, exist_ok=True)
        gathered = multihost_utils.process_allgather(params, tiled=True)
        if jax.process_index() == 0:
            flat = jax.tree_util.tree_flatten_with_path(gathered)[0]
            np.savez(args.save_params, **{jax.tree_util.keystr(k): v for k, v in flat})
    return {"losses": losses, "accuracy": accuracy, "devices": devices, "processes": processes}


if __name__ == "__main__":
    main()
