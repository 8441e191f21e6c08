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
4. **Sweep** the number of experts per layer (``expert_sweep``): FSSDP is
   trained with each count at ``train_skew`` to record its loads, and every
   strategy is modelled on them (FSDP's gathers grow with the count).

Runs resume: a finished training run's trace is kept in ``workdir/traces``
(written atomically; an unreadable one is recomputed) and not recomputed, and
a run cut off mid-training continues from its last Orbax checkpoint in
``workdir/checkpoints``. A loss that turns NaN stops the run with the step
named (``train_loop``'s check) before it is checkpointed.
"""

from __future__ import annotations

import os
import time
import zipfile
from typing import Any

import jax
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding

from jaxsuite.core import atomic, devices
from jaxsuite.core import train as train_lib
from jaxsuite.moe import data, gating, measure, model, report, sharding, strategies
from jaxsuite.moe.replay import layer_slots, overlap_degree, planner, with_experts

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
        layer_slots=layer_slots(config, strategy),
        mat_slots=config.fssdp.mat_slots,
        aux_weight=m.aux_weight,
        remat=remat,
        axis=AXIS,
        exchange=exchange_kind(config.fssdp.exchange),
    )


def exchange_kind(name: str) -> str:
    """``auto``: ``ragged_all_to_all`` on GPU/TPU, fixed slots on CPU."""
    if name != "auto":
        return name
    return "slots" if jax.default_backend() == "cpu" else "ragged"


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

    def state(self, pool_id: np.ndarray) -> dict[str, Any]:
        pools = sharding.experts_to_pools(self.experts, pool_id)
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


def train(
    setup: _Setup,
    strategy: str,
    skew: float,
    overlap: int,
    *,
    workdir: str,
    name: str,
    hooks: tuple = (),
) -> dict[str, Any]:
    """Trains one strategy at one skew, resumably; returns its per-step trace.

    A :func:`jaxsuite.core.train.train_loop` under ``workdir/checkpoints/
    <name>``: its Orbax checkpoints hold the model state, the sharding in
    force (``pool_id``) and the trace so far, from which the planner (load
    window, iteration count) is rebuilt each step, so an interrupted run
    resumes to the same parameters and plans.

    Returns:
      ``loss (N,)``, ``dropped (N,)``, ``load (N, L, D, E)``, ``wall (N,)``,
      ``moved (N,)`` (experts moved by re-sharding, -1 where none) and the
      final ``state``.
    """
    config = setup.config
    plnr = planner(config, strategy, overlap)
    n, m = config.steps, config.model
    shape = (n, m.layers, jax.device_count(), m.experts)
    init = {
        "model": setup.state(plnr.pool_id),
        "pool_id": plnr.pool_id.copy(),
        "trace": {
            "loss": np.zeros(n, np.float32),
            "dropped": np.zeros(n, np.float32),
            "load": np.zeros(shape, np.float32),
            "wall": np.zeros(n, np.float32),
            "moved": -np.ones(n, np.int32),
        },
    }
    cache: dict[str, Any] = {}

    def step_fn(state, step):
        i = step - 1
        trace = {k: np.array(v) for k, v in state["trace"].items()}
        plnr.restore(np.asarray(state["pool_id"]), trace["load"][:i])
        model_state, old = state["model"], plnr.pool_id
        new = plnr.maybe_reshard()
        if new is not None:
            if "reshard" not in cache:
                cache["reshard"] = strategies.make_reshard(model_state)
            index = sharding.reshard_index(old, new)
            model_state = cache["reshard"](model_state, index)
            trace["moved"][i] = sharding.moved_experts(old, new)
        plan = strategies.put_plan(
            setup.mesh, plnr.plan_arrays(plnr.materialise()), AXIS
        )
        tokens = setup.tokens(i, skew)
        compiled = setup.step(strategy, model_state, tokens, plan)
        t0 = time.perf_counter()
        with jax.set_mesh(setup.mesh):
            model_state, scalars = compiled(model_state, tokens, plan)
        trace["load"][i] = np.asarray(devices.to_host(scalars["load"]))
        trace["wall"][i] = time.perf_counter() - t0
        trace["loss"][i] = float(scalars["loss"])
        trace["dropped"][i] = float(np.sum(devices.to_host(scalars["dropped"])))
        new_state = {"model": model_state, "pool_id": plnr.pool_id.copy()}
        return {**new_state, "trace": trace}, {"loss": trace["loss"][i]}

    state = train_lib.train_loop(
        init,
        step_fn,
        num_steps=n,
        workdir=workdir,
        checkpoint_every=config.checkpoint_every,
        name=name,
        hooks=hooks,
    )
    out = {k: np.asarray(v) for k, v in state["trace"].items()}
    out["state"] = state["model"]
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
        tr = _load_saved(path, _read_npz)
        fresh = tr is None
        if fresh:
            name = f"{strategy}_skew{skew:g}"
            tr = train(setup, strategy, skew, overlap, workdir=workdir, name=name)
            tr.pop("state")
            if jax.process_index() == 0:
                atomic.save_npz(path, **tr)
        traces[(strategy, skew)] = tr
        if skew == config.train_skew and strategy not in measured:
            mpath = os.path.join(trace_dir, f"{strategy}_measured.json")
            saved = None if fresh else _load_saved(mpath, atomic.read_json)
            if saved is None:
                measured[strategy] = _measure(setup, strategy, skew, overlap)
                if jax.process_index() == 0:
                    atomic.write_json(mpath, measured[strategy], indent=None)
            else:
                measured[strategy] = saved
        print(f"[hecate] {strategy} skew={skew:g}: final loss {tr['loss'][-1]:.4f}")
    sweep = _expert_sweep(config, traces, workdir, trace_dir)
    return report.write_report(
        config, workdir, traces, measured, overlap, t_start, sweep
    )


def _read_npz(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _load_saved(path: str, reader) -> Any:
    """A saved trace or summary, or None if absent or unreadable (then redone).

    Files are written atomically, so an unreadable one was damaged after the
    fact; it is set aside (``.bad``) with a warning and recomputed.
    """
    if not os.path.exists(path):
        return None
    try:
        return reader(path)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        logging.warning("%s cannot be read (%s); recomputing it.", path, e)
        if jax.process_index() == 0:
            os.replace(path, path + ".bad")
        return None


def _expert_sweep(
    config: Any, traces, workdir: str, trace_dir: str
) -> dict[int, np.ndarray]:
    """FSSDP load traces ``(N, L, D, E)`` per expert count at ``train_skew``."""
    skew = float(config.train_skew)
    out = {}
    for experts in (int(e) for e in config.expert_sweep):
        if experts == config.model.experts:
            out[experts] = traces[("fssdp", skew)]["load"]
            continue
        path = os.path.join(trace_dir, f"fssdp_skew{skew:g}_experts{experts}.npz")
        saved = _load_saved(path, _read_npz)
        if saved is not None and "load" in saved:
            out[experts] = saved["load"]
            continue
        sub = with_experts(config, experts)
        name = f"fssdp_skew{skew:g}_experts{experts}"
        tr = train(
            _Setup(sub), "fssdp", skew, overlap_degree(sub), workdir=workdir, name=name
        )
        if jax.process_index() == 0:
            atomic.save_npz(path, load=tr["load"], loss=tr["loss"])
        out[experts] = tr["load"]
        print(f"[hecate] fssdp experts={experts}: final loss {tr['loss'][-1]:.4f}")
    return out


def _measure(setup: _Setup, strategy: str, skew: float, overlap: int):
    """HLO bytes, memory and backward residuals of a strategy's step.

    FSSDP and FSDP are also measured with re-materialisation.
    """
    plnr = planner(setup.config, strategy, overlap)
    state = setup.state(plnr.pool_id)
    plan = strategies.put_plan(setup.mesh, plnr.plan_arrays(plnr.materialise()), AXIS)
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
