"""One process of the 2-process FSSDP check run by ``multiprocess_test.py``.

Run as a script (never collected by pytest)::

    JAX_PLATFORMS=cpu python tests/moe/multiprocess_worker.py \
        --coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=I \
        --local_device_count=4 --out_dir=DIR

Each process starts ``jax.distributed`` (gloo), runs two FSSDP training steps
with fixed plans on the 8 global devices, and writes the gathered loss,
pools and loads to ``DIR/<name>_<I>.npy``. The test imports :func:`compute`
to run the same code in one process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jaxsuite.core import devices  # noqa: E402
from jaxsuite.moe import sharding, strategies  # noqa: E402
from tests.moe import common as h  # noqa: E402

NAMES = ("loss", "pools", "load")


def compute(mesh) -> dict[str, np.ndarray]:
    """Two FSSDP steps with seeded plans; results gathered to every host."""
    rng = np.random.default_rng(3)
    dense, experts = h.init()
    pool = h.random_sharding(rng)
    tx = h.tx()
    state = {"dense": dense, "pools": sharding.experts_to_pools(experts, pool)}
    state["opt"] = tx.init(state)
    state = strategies.put_state(mesh, state)
    step = strategies.make_train_step(mesh, h.spec("fssdp"), tx)
    losses = []
    for i in range(2):
        plan = strategies.put_plan(mesh, h.plan(pool, h.random_mat(rng, pool)))
        toks = jax.device_put(h.tokens(50 + i), NamedSharding(mesh, jax.P("x")))
        state, scalars = step(state, toks, plan)
        losses.append(float(devices.to_host(scalars["loss"])))
    return {
        "loss": np.asarray(losses),
        "pools": devices.to_host(state["pools"]),
        "load": devices.to_host(scalars["load"]),
    }


def main(argv: list[str]) -> None:
    del argv
    from absl import flags

    out_dir = Path(flags.FLAGS.out_dir)
    devices.initialize_from_flags(
        initialization_timeout=60,
        coordinator_bind_address=flags.FLAGS.coordinator_address,
    )
    mesh = devices.make_mesh((h.D,), ("x",))
    results = compute(mesh)
    pid = jax.process_index()
    for name, value in results.items():
        np.save(out_dir / f"{name}_{pid}.npy", value)
    (out_dir / f"done_{pid}").write_text(str(os.getpid()))
    jax.distributed.shutdown()


if __name__ == "__main__":
    from absl import app, flags

    devices.define_distributed_flags()
    flags.DEFINE_string("out_dir", None, "Where to write the results.")
    flags.mark_flags_as_required(["out_dir"])
    app.run(main, argv=sys.argv)
