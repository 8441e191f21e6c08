"""MoE strategy benchmark: collective bytes, per-device memory and CPU step time.

For each strategy (and FSDP / FSSDP with re-materialisation) this compiles
one training step of the Hecate model on all local devices (8 emulated CPU
devices on a CPU-only machine) through the library's
:class:`jaxsuite.moe.runtime.Runtime`, and reports:

* ``plan_bytes``: the bytes the step's plan must move per device (tokens
  that leave their device, replicas that leave their owner, FSDP's gathers);
* ``hlo_bytes``: per-device wire bytes of the collectives in the compiled
  HLO, padding included, and ``spag_hlo_bytes``, the part in the
  SparseAllGather and its transpose (bucketed capacity);
* ``memory``: per-device ``arg + out + temp - alias`` from
  ``memory_analysis()``;
* ``residual_bytes``: per-device bytes the forward pass keeps for the
  backward pass (``jax.vjp`` residuals), which re-materialisation cuts;
* ``cpu_ms``: median wall time of the timed steps on this machine.

The default shape has large experts and few tokens, so the materialised
parameters dominate memory and the re-materialisation saving is visible::

    python benchmarks/moe.py --out=runs/moe_bench.json
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    "configs/hecate.py:small,model.hidden=128,model.ffn=256,model.layers=4,"
    "model.experts=16,fssdp.slots=8,fssdp.layer_slots=4,fssdp.mat_slots=4,"
    "model.seq_len=8,model.batch_per_device=1,fssdp.overlap=4",
    "Hecate config file and argument.",
)
_OUT = flags.DEFINE_string("out", "runs/moe_bench.json", "Where to write the JSON.")
_STEPS = flags.DEFINE_integer("steps", 3, "Steps per strategy; the first compiles.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 8, "Devices a CPU-only machine emulates."
)


def main(argv):
    del argv
    import jax

    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
    import numpy as np

    from jaxsuite.moe import measure, runtime
    from jaxsuite.moe import settings as settings_lib
    from jaxsuite.moe.replay import overlap_degree, plan_bytes, planner

    config = _CONFIG.value
    settings = settings_lib.from_config(config)
    rt = runtime.Runtime(settings)
    overlap = overlap_degree(settings)
    rows = []
    variants = [(s, False) for s in ("ep", "fsdp", "fastermoe", "fssdp")]
    variants += [("fsdp", True), ("fssdp", True)]
    for strategy, remat in variants:
        plnr = planner(settings, strategy, overlap)
        state = rt.state(plnr.pool_id)
        loads, walls = [], []
        for step in range(_STEPS.value):
            plan = rt.put_plan(plnr.plan_arrays(plnr.materialise()))
            tokens = rt.tokens(step, settings.train_skew)
            compiled = rt.step(strategy, state, tokens, plan, remat=remat)
            t0 = time.perf_counter()
            with jax.set_mesh(rt.mesh):
                state, scalars = compiled(state, tokens, plan)
                load = np.asarray(scalars["load"])
            walls.append(time.perf_counter() - t0)
            plnr.observe(load)
            loads.append(load)
        name = strategy + ("_rm" if remat else "")
        text = compiled.as_text()
        hlo = measure.hlo_collective_bytes(text, jax.device_count())
        spag = measure.hlo_collective_bytes(
            text, jax.device_count(), scope="sparse_all_gather"
        )
        loss_fn = rt.loss_fn(strategy, remat)
        with jax.set_mesh(rt.mesh):
            residual = measure.residual_bytes(
                lambda p, f=loss_fn, d=state["dense"], t=tokens, a=plan: f(d, p, t, a)[
                    0
                ],
                state["pools"],
            )
        row = {
            "strategy": name,
            "plan_bytes": plan_bytes(settings, strategy, np.stack(loads), overlap),
            "hlo_bytes": hlo["total"],
            "spag_hlo_bytes": spag["total"],
            "hlo_by_kind": hlo,
            "residual_bytes": residual,
            "memory": measure.memory_bytes(compiled)["total"],
            "cpu_ms": 1e3 * float(np.median(walls[1:])),
        }
        rows.append(row)
        print(
            f"{name:12s} plan {row['plan_bytes'] / 1e6:8.3f} MB  "
            f"HLO {row['hlo_bytes'] / 1e6:8.3f} MB  "
            f"spAG {row['spag_hlo_bytes'] / 1e6:8.3f} MB  "
            f"memory {row['memory'] / 1e6:8.3f} MB  "
            f"residuals {residual / 1e6:8.3f} MB  CPU {row['cpu_ms']:7.1f} ms"
        )
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump({"config": config.to_dict(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
