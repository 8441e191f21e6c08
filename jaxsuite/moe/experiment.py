"""The Hecate experiment: train under each strategy, measure, model, report.

1. **Train** the MoE model under each strategy at ``train_skew`` (they
   compute the same function, so their losses agree), and under FSSDP at
   every skew level to record per-step, per-device expert loads. Each
   strategy is compiled once; placement plans are arguments.
2. **Measure** each compiled step: collective bytes in its HLO, per-device
   memory (``memory_analysis``, with and without re-materialisation), CPU
   wall time, and the useful bytes its plans move.
3. **Model** the step time on 2 nodes x 4 devices by replaying each skew's
   load trace through every strategy's planner and the cost model of
   :mod:`jaxsuite.moe.cost`.

Runs resume per phase: a finished training run's trace is kept in
``workdir/traces`` and not recomputed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import NamedSharding

from jaxsuite.core import devices
from jaxsuite.core import train as train_lib
from jaxsuite.moe import data, gating, measure, model, plans, report, strategies
from jaxsuite.moe.replay import cost_model, overlap_degree, planner

AXIS = "x"


def _spec(config: Any, strategy: str, remat: bool = False) -> strategies.Spec:
    m = config.model
    return strategies.Spec(
        strategy=strategy,
        hidden=m.hidden,
        ffn=m.ffn,
        heads=m.heads,
        experts=m.experts,
        cap=gating.capacity(
            m.batch_per_device * m.seq_len, m.experts, m.capacity_factor
        ),
        slots=config.fssdp.slots,
        mat_slots=config.fssdp.mat_slots,
        aux_weight=m.aux_weight,
        remat=remat,
        axis=AXIS,
    )


class _Setup:
    """Mesh, optimizer, initial parameters and compiled steps (cached)."""

    def __init__(self, config: Any):
        self.config = config
        self.mesh = devices.make_mesh((jax.device_count(),), (AXIS,))
        self.tx = optax.adam(config.model.learning_rate)
        m = config.model
        self.dense, self.experts = model.init_params(
            jax.random.PRNGKey(config.seed),
            vocab=m.vocab,
            hidden=m.hidden,
            ffn=m.ffn,
            layers=m.layers,
            experts=m.experts,
        )
        self.compiled: dict[tuple[str, bool], Any] = {}

    def state(self, pool_expert: np.ndarray) -> dict[str, Any]:
        pools = strategies.experts_to_pools(self.experts, pool_expert)
        state = {"dense": self.dense, "pools": pools}
        state["opt"] = self.tx.init(state)
        return strategies.put_state(self.mesh, state, AXIS)

    def tokens(self, step: int, skew: float) -> jax.Array:
        c = self.config
        toks = data.batch(
            step,
            batch_size=jax.device_count() * c.model.batch_per_device,
            seq_len=c.model.seq_len,
            vocab=c.model.vocab,
            skew=skew,
            seed=c.seed,
            period=c.data.period,
            follow=c.data.follow,
        )
        return jax.device_put(toks, NamedSharding(self.mesh, jax.P(AXIS)))

    def step(self, strategy: str, state, tokens, plan, remat: bool = False):
        """The AOT-compiled step (compiled once per strategy and remat)."""
        key = (strategy, remat)
        if key not in self.compiled:
            spec = _spec(self.config, strategy, remat)
            run = strategies.make_train_step(self.mesh, spec, self.tx)
            with jax.set_mesh(self.mesh):
                self.compiled[key] = run.jitted.lower(state, tokens, plan).compile()
        return self.compiled[key]


def train(setup: _Setup, strategy: str, skew: float, overlap: int) -> dict[str, Any]:
    """Trains one strategy at one skew; returns its per-step trace."""
    config = setup.config
    topo = cost_model(config).topo
    plnr = planner(config, strategy, overlap)
    state = setup.state(plnr.pool_expert)
    reshard = None
    trace: dict[str, list] = {"loss": [], "dropped": [], "load": [], "wall": []}
    trace["moved"] = []
    for step in range(config.steps):
        old = plnr.pool_expert
        new = plnr.maybe_reshard()
        if new is not None:
            reshard = reshard or strategies.make_reshard(state)
            state = reshard(state, plans.reshard_index(old, new))
            trace["moved"].append(plans.moved_experts(old, new))
        mat = plnr.materialise()
        plan = strategies.put_plan(
            setup.mesh, plans.plan_arrays(plnr.pool_expert, mat, topo), AXIS
        )
        tokens = setup.tokens(step, skew)
        compiled = setup.step(strategy, state, tokens, plan)
        t0 = time.perf_counter()
        with jax.set_mesh(setup.mesh):
            state, scalars = compiled(state, tokens, plan)
        load = np.asarray(devices.to_host(scalars["load"]))
        trace["wall"].append(time.perf_counter() - t0)
        trace["loss"].append(float(scalars["loss"]))
        trace["dropped"].append(float(np.sum(devices.to_host(scalars["dropped"]))))
        trace["load"].append(load)
        plnr.observe(load)
    out = {k: np.asarray(v) for k, v in trace.items()}
    out["state"] = state
    return out


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Runs the experiment and writes ``results.json``; returns it."""
    t_start = time.time()
    train_lib.prepare_workdir(workdir, config)
    setup = _Setup(config)
    overlap = overlap_degree(config)
    trace_dir = os.path.join(workdir, "traces")
    os.makedirs(trace_dir, exist_ok=True)
    runs = [(s, float(config.train_skew)) for s in config.strategies]
    runs += [("fssdp", float(k)) for k in config.skews if float(k) != config.train_skew]
    traces: dict[tuple[str, float], dict[str, np.ndarray]] = {}
    measured: dict[str, dict[str, Any]] = {}
    for strategy, skew in runs:
        path = os.path.join(trace_dir, f"{strategy}_skew{skew:g}.npz")
        fresh = not os.path.exists(path)
        if fresh:
            tr = train(setup, strategy, skew, overlap)
            tr.pop("state")
            if jax.process_index() == 0:
                np.savez(path, **tr)
        else:
            tr = dict(np.load(path))
        traces[(strategy, skew)] = tr
        if skew == config.train_skew and strategy not in measured:
            mpath = os.path.join(trace_dir, f"{strategy}_measured.json")
            if fresh or not os.path.exists(mpath):
                measured[strategy] = _measure(setup, strategy, skew, overlap)
                if jax.process_index() == 0:
                    with open(mpath, "w") as f:
                        json.dump(measured[strategy], f)
            else:
                with open(mpath) as f:
                    measured[strategy] = json.load(f)
        print(f"[hecate] {strategy} skew={skew:g}: final loss {tr['loss'][-1]:.4f}")
    return report.write_report(config, workdir, traces, measured, overlap, t_start)


def _measure(setup: _Setup, strategy: str, skew: float, overlap: int):
    """HLO bytes, memory and backward residuals of a strategy's step.

    FSSDP and FSDP are also measured with re-materialisation.
    """
    plnr = planner(setup.config, strategy, overlap)
    topo = cost_model(setup.config).topo
    state = setup.state(plnr.pool_expert)
    plan = strategies.put_plan(
        setup.mesh,
        plans.plan_arrays(plnr.pool_expert, plnr.materialise(), topo),
        AXIS,
    )
    tokens = setup.tokens(0, skew)
    out = {}
    gathers = strategy in ("fssdp", "fsdp") and setup.config.measure_remat
    for remat in (False, True) if gathers else (False,):
        compiled = setup.step(strategy, state, tokens, plan, remat=remat)
        suffix = "_remat" if remat else ""
        out["hlo" + suffix] = measure.hlo_collective_bytes(
            compiled.as_text(), jax.device_count()
        )
        out["memory" + suffix] = measure.memory_bytes(compiled)
        if not gathers:
            continue
        loss_fn = strategies.make_loss_fn(
            setup.mesh, _spec(setup.config, strategy, remat)
        )
        with jax.set_mesh(setup.mesh):
            out["residual" + suffix] = measure.residual_bytes(
                lambda p, f=loss_fn: f(state["dense"], p, tokens, plan)[0],
                state["pools"],
            )
    return out
