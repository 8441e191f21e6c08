"""One process of the 2-process FSSDP check run by ``multiprocess_test.py``.

Run by ``tests/multiprocess_harness.py`` (never collected by pytest)::

    JAX_PLATFORMS=cpu python -m tests.moe.multiprocess_worker \
        --coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=I \
        --local_device_count=4 --out_dir=DIR

Each process starts ``jax.distributed`` (gloo), runs two FSSDP training steps
with fixed plans on the 8 global devices, and writes the gathered loss,
pools and loads. The test imports :func:`compute` to run the same code in one
process.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding

from jaxsuite.core import devices
from jaxsuite.moe import sharding, strategies
from tests.moe import common as h

NAMES = ("loss", "pools", "load")


def compute(mesh) -> tuple[dict[str, np.ndarray], dict]:
    """Two FSSDP steps with seeded plans; ``(arrays, {})`` gathered to every
    host."""
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
    arrays = {
        "loss": np.asarray(losses),
        "pools": devices.to_host(state["pools"]),
        "load": devices.to_host(scalars["load"]),
    }
    return arrays, {}


if __name__ == "__main__":
    from tests import multiprocess_harness

    multiprocess_harness.worker_main(compute, num_devices=h.D, axis="x")
