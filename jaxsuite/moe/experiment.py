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
5. **Gating study** (``gating_study``): the dense reference trained under
   this library's gating and under GShard's (random routing of second
   choices, global capacity) shows what the two departures do to the loads.

Runs resume: a finished training run's trace is kept in ``workdir/traces``
(written atomically; an unreadable one is recomputed) and not recomputed, and
a run cut off mid-training continues from its last Orbax checkpoint in
``workdir/checkpoints``. A loss that turns NaN stops the run with the step
named (``train_loop``'s check) before it is checkpointed.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxsuite.core import devices, phases
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import train as train_lib
from jaxsuite.moe import (
    collectives,
    gating_study,
    measure,
    model,
    report,
    runtime,
    sharding,
    strategies,
)
from jaxsuite.moe import settings as settings_lib
from jaxsuite.moe.replay import overlap_degree, planner, with_experts
from jaxsuite.moe.settings import Settings

Runtime = runtime.Runtime


def empty_trace(settings: Settings) -> dict[str, np.ndarray]:
    """The per-step trace of a run of ``N = settings.steps`` steps, unfilled.

    ``loss``, ``dropped``, ``wall``, ``spag_hlo`` and ``spag_plan`` are
    ``(N,)``; ``load`` is ``(N, L, D, E)``; ``moved`` ``(N,)`` (-1 where no
    re-shard); ``bucket`` ``(N, 3)``: the SparseAllGather bucket of each step
    (mode index in ``collectives.MODES``, c, c2). ``spag_hlo`` holds the
    HLO-parsed bytes of the program that ran (gather + transpose, per
    device), ``spag_plan`` the planned bytes.
    """
    n, m = settings.steps, settings.model
    return {
        "loss": np.zeros(n, np.float32),
        "dropped": np.zeros(n, np.float32),
        "load": np.zeros((n, m.layers, jax.device_count(), m.experts), np.float32),
        "wall": np.zeros(n, np.float32),
        "moved": -np.ones(n, np.int32),
        "bucket": -np.ones((n, 3), np.int32),
        "spag_hlo": np.zeros(n, np.float32),
        "spag_plan": np.zeros(n, np.float32),
    }


def _record_gather(trace, i, compiled, plnr, mat, strategy, settings, cache):
    """Step ``i``'s SparseAllGather bucket, compiled bytes and planned bytes.

    ``cache`` keeps each compiled program's HLO-parsed bytes (parsed once).
    """
    if id(compiled) not in cache:
        cache[id(compiled)] = measure.hlo_collective_bytes(
            compiled.as_text(), jax.device_count(), scope="sparse_all_gather"
        )["total"]
    mode, c, c2 = plnr.bucket
    trace["bucket"][i] = (collectives.MODES.index(mode), c, c2)
    trace["spag_hlo"][i] = cache[id(compiled)]
    if strategy in ("fastermoe", "fssdp"):
        m = settings.model
        chunks = collectives.plan_chunks(plnr.pool_expert, mat, m.experts)
        chunk_bytes = 4 * model.expert_size(m.hidden, m.ffn)
        trace["spag_plan"][i] = 2 * chunks * chunk_bytes / jax.device_count()


def train(
    setup: Runtime,
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
    settings = setup.settings
    plnr = planner(settings, strategy, overlap)
    init = {
        "model": setup.state(plnr.pool_id),
        "pool_id": plnr.pool_id.copy(),
        "trace": empty_trace(settings),
    }
    cache: dict[Any, Any] = {}

    def step_fn(state, step):
        i = step - 1
        trace = {k: np.array(v) for k, v in state["trace"].items()}
        plnr.restore(np.asarray(state["pool_id"]), trace["load"][:i])
        if i > 0 and trace["bucket"][i - 1, 0] >= 0:
            mode, c, c2 = (int(v) for v in trace["bucket"][i - 1])
            plnr.bucket = (collectives.MODES[mode], c, c2)
        model_state, old = state["model"], plnr.pool_id
        new = plnr.maybe_reshard()
        if new is not None:
            if "reshard" not in cache:
                cache["reshard"] = strategies.make_reshard(model_state)
            index = sharding.reshard_index(old, new)
            model_state = cache["reshard"](model_state, index)
            trace["moved"][i] = sharding.moved_experts(old, new)
        mat = plnr.materialise()
        host_plan = plnr.plan_arrays(mat)
        plan = setup.put_plan(host_plan)
        tokens = setup.tokens(i, skew)
        compiled = setup.step(strategy, model_state, tokens, plan)
        _record_gather(trace, i, compiled, plnr, mat, strategy, settings, cache)
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
        num_steps=settings.steps,
        workdir=workdir,
        checkpoint_every=settings.checkpoint_every,
        name=name,
        hooks=hooks,
    )
    out = {k: np.asarray(v) for k, v in state["trace"].items()}
    out["state"] = state["model"]
    return out


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Runs the experiment and writes ``results.json``; returns it.

    ``config`` (``configs/hecate.py``) is read once into typed
    :class:`settings.Settings` (:func:`settings.from_config`), which the
    library functions take; the config itself only fixes the workdir's
    identity and is echoed into the hyper-parameters and ``results.json``.
    """
    t_start = time.time()
    train_lib.prepare_workdir(workdir, config)
    echo = config.to_dict()
    settings = settings_lib.from_config(config)
    setup = Runtime(settings)
    overlap = overlap_degree(settings)
    runs = [(name, settings.train_skew) for name in settings.strategies]
    runs += [("fssdp", k) for k in settings.skews if k != settings.train_skew]
    with metrics_lib.MetricWriter(workdir) as writer:
        writer.write_hparams(echo)
        traces, measured = _train_all(settings, setup, runs, overlap, workdir, writer)
        sweep = _expert_sweep(settings, traces, workdir, writer)
    gating = None
    if settings.gating_study:
        gating = _trace_cache(workdir).get_or_run(
            "gating_study", lambda: gating_study.run_study(study_settings(settings))
        )
        logging.info("gating study: %s", gating)
    return report.write_report(
        settings, echo, workdir, traces, measured, overlap, t_start, sweep, gating
    )


def study_settings(settings: Settings) -> gating_study.StudySettings:
    """The gating study's settings: the experiment's model, data and steps."""
    return gating_study.StudySettings(
        model=settings.model,
        data=settings.data,
        devices=jax.device_count(),
        steps=settings.steps,
        skew=settings.train_skew,
        seed=settings.seed,
    )


def _log_trace(writer: metrics_lib.MetricWriter, name: str, tr) -> None:
    """Per-step loss, dropped tokens, wall time and gathered bytes of a run."""
    keys = [k for k in ("loss", "dropped", "wall", "spag_hlo") if k in tr]
    for i in range(len(tr["loss"])):
        writer.write_scalars(i + 1, {f"{name}/{k}": tr[k][i] for k in keys})
    writer.flush()


def _trace_cache(workdir: str) -> phases.PhaseCache:
    """Finished runs' traces (``<run>.npz``) and measurements (``<strategy>_
    measured.json``) under ``workdir/traces``."""
    return phases.PhaseCache(workdir, "traces")


def _train_all(settings, setup, runs, overlap, workdir, writer):
    """Traces and step measurements of every (strategy, skew) run."""
    cache = _trace_cache(workdir)
    traces: dict[tuple[str, float], dict[str, np.ndarray]] = {}
    measured: dict[str, dict[str, Any]] = {}
    for strategy, skew in runs:
        name = f"{strategy}_skew{skew:g}"
        tr = cache.load(name)
        fresh = tr is None
        if fresh:
            tr = train(setup, strategy, skew, overlap, workdir=workdir, name=name)
            tr.pop("state")
            cache.save(name, tr)
        traces[(strategy, skew)] = tr
        if skew == settings.train_skew and strategy not in measured:
            mname = f"{strategy}_measured"
            saved = None if fresh else cache.load(mname)
            if saved is None:
                saved = cache.save(mname, _measure(setup, strategy, skew, overlap))
            measured[strategy] = saved
        _log_trace(writer, name, tr)
        logging.info(
            "%s skew=%g: final loss %.4f", strategy, skew, float(tr["loss"][-1])
        )
    return traces, measured


def _expert_sweep(
    settings: Settings, traces, workdir: str, writer
) -> dict[int, np.ndarray]:
    """FSSDP load traces ``(N, L, D, E)`` per expert count at ``train_skew``
    (kept in ``_trace_cache(workdir)``)."""
    cache = _trace_cache(workdir)
    skew = float(settings.train_skew)
    out = {}
    for experts in (int(e) for e in settings.expert_sweep):
        if experts == settings.model.experts:
            out[experts] = traces[("fssdp", skew)]["load"]
            continue
        name = f"fssdp_skew{skew:g}_experts{experts}"
        saved = cache.load(name)
        if saved is not None and "load" in saved:
            out[experts] = saved["load"]
            continue
        sub = with_experts(settings, experts)
        tr = train(
            Runtime(sub), "fssdp", skew, overlap_degree(sub), workdir=workdir, name=name
        )
        cache.save(name, {"load": tr["load"], "loss": tr["loss"]})
        out[experts] = tr["load"]
        _log_trace(writer, name, tr)
        logging.info("fssdp experts=%d: final loss %.4f", experts, tr["loss"][-1])
    return out


def _measure(setup: Runtime, strategy: str, skew: float, overlap: int):
    """HLO bytes, memory and backward residuals of a strategy's step.

    FSSDP and FSDP are also measured with re-materialisation.
    """
    plnr = planner(setup.settings, strategy, overlap)
    state = setup.state(plnr.pool_id)
    plan = setup.put_plan(plnr.plan_arrays(plnr.materialise()))
    tokens = setup.tokens(0, skew)
    out = {}
    gathers = strategy in ("fssdp", "fsdp") and setup.settings.measure_remat
    for remat in (False, True) if gathers else (False,):
        compiled = setup.step(strategy, state, tokens, plan, remat=remat)
        suffix = "_remat" if remat else ""
        out["hlo" + suffix] = measure.hlo_collective_bytes(
            compiled.as_text(), jax.device_count()
        )
        out["memory" + suffix] = measure.memory_bytes(compiled)
        if strategy == "fsdp" and not remat:
            out["fsdp_hlo"] = measure.hlo_collective_bytes(
                compiled.as_text(), jax.device_count(), scope="fsdp_all_gather"
            )["total"]
        if not gathers:
            continue
        loss_fn = setup.loss_fn(strategy, remat)
        with jax.set_mesh(setup.mesh):
            out["residual" + suffix] = measure.residual_bytes(
                lambda p, f=loss_fn: f(state["dense"], p, tokens, plan)[0],
                state["pools"],
            )
    return out
