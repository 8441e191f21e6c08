"""MoE strategy benchmark: collective bytes, per-device memory and CPU step time.

For each strategy (and FSDP / FSSDP with re-materialisation) this compiles one
training step of the Hecate model on all local devices and reports:

* ``plan_bytes``: the bytes the step's plan must move per device (tokens
  that leave their device, replicas that leave their owner, FSDP's gathers);
* ``hlo_bytes``: per-device wire bytes of the collectives in the compiled
  HLO (padding included: the fixed-slot SparseAllGather moves every slot);
* ``memory``: per-device ``arg + out + temp - alias`` from
  ``memory_analysis()``;
* ``residual_bytes``: per-device bytes the forward pass keeps for the
  backward pass (``jax.vjp`` residuals), which re-materialisation cuts;
* ``cpu_ms``: median wall time of a few steps on this machine.

The default shape has large experts and few tokens, so the materialised
parameters dominate memory and the re-materialisation saving is visible::

    JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python benchmarks/moe.py --out=runs/moe_bench.json
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

flags.DEFINE_string("out", "runs/moe_bench.json", "Where to write the JSON.")
flags.DEFINE_string(
    "config",
    "small,model.hidden=128,model.ffn=256,model.layers=4,model.seq_len=8,"
    "model.batch_per_device=1,fssdp.overlap=4",
    "configs/hecate.py argument.",
)
flags.DEFINE_integer("steps", 3, "Timed steps per strategy.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import jax

    from configs import hecate
    from jaxsuite.moe import experiment, measure, strategies
    from jaxsuite.moe.replay import plan_bytes, planner

    config = hecate.get_config(FLAGS.config)
    setup = experiment._Setup(config)
    overlap = config.fssdp.overlap
    rows = []
    variants = [(s, False) for s in ("ep", "fsdp", "fastermoe", "fssdp")]
    variants += [("fsdp", True), ("fssdp", True)]
    for strategy, remat in variants:
        plnr = planner(config, strategy, overlap)
        state = setup.state(plnr.pool_id)
        loads = []
        walls = []
        for step in range(FLAGS.steps):
            plan = strategies.put_plan(setup.mesh, plnr.plan_arrays(plnr.materialise()))
            tokens = setup.tokens(step, config.train_skew)
            compiled = setup.step(strategy, state, tokens, plan, remat=remat)
            t0 = time.perf_counter()
            with jax.set_mesh(setup.mesh):
                state, scalars = compiled(state, tokens, plan)
            load = np.asarray(scalars["load"])
            walls.append(time.perf_counter() - t0)
            plnr.observe(load)
            loads.append(load)
        name = strategy + ("_rm" if remat else "")
        hlo = measure.hlo_collective_bytes(compiled.as_text(), jax.device_count())
        loss_fn = strategies.make_loss_fn(
            setup.mesh, experiment._spec(config, strategy, remat)
        )
        with jax.set_mesh(setup.mesh):
            residual = measure.residual_bytes(
                lambda p, f=loss_fn, d=state["dense"], t=tokens, a=plan: f(d, p, t, a)[
                    0
                ],
                state["pools"],
            )
        row = {
            "strategy": name,
            "plan_bytes": plan_bytes(config, strategy, np.stack(loads), overlap),
            "hlo_bytes": hlo["total"],
            "hlo_by_kind": hlo,
            "residual_bytes": residual,
            "memory": measure.memory_bytes(compiled)["total"],
            "cpu_ms": 1e3 * float(np.median(walls[1:])),
        }
        rows.append(row)
        print(
            f"{name:12s} plan {row['plan_bytes'] / 1e6:8.3f} MB  "
            f"HLO {row['hlo_bytes'] / 1e6:8.3f} MB  "
            f"memory {row['memory'] / 1e6:8.3f} MB  "
            f"residuals {residual / 1e6:8.3f} MB  CPU {row['cpu_ms']:7.1f} ms"
        )
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump({"config": FLAGS.config, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
