"""One policy's GraphSAGE training run through its feature cache.

``make_step_fn`` builds the ``train_loop`` step: fetch a batch's features
through the policy's cache, train, and add the step's counters (hits by
level, bytes), measured times and modelled time to its epoch's row of the
state's ``acc (epochs, len(ACC_KEYS))``; ``train_policy`` runs it resumably,
``policy_summary`` turns the final state into the policy's summary. The
experiment (``jaxsuite.gnn.experiment``) builds the data and the fetcher.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jax
import numpy as np
import optax

from jaxsuite.core import train as train_lib
from jaxsuite.gnn import cache as cache_lib
from jaxsuite.gnn import fetcher as fetcher_lib
from jaxsuite.gnn import model as model_lib
from jaxsuite.gnn import report
from jaxsuite.gnn import storage as storage_lib

ACC_KEYS = (
    *fetcher_lib.COUNTERS,
    "t_batch",
    "t_train",
    "steps",
    "loss",
    "measured_s",
    "modelled_s",
)


def _host(x: Any) -> np.ndarray:
    """A writable numpy copy (restored checkpoints may hold jax arrays)."""
    if isinstance(x, np.ndarray) and x.flags.writeable:
        return x
    return np.array(x)


def modelled_step_seconds(
    counts: dict[str, float], io: storage_lib.IOModel, compute_s: float
) -> float:
    """Cost model of one step: blocking storage reads, the exchange, compute.

    Victim prefetches run on a separate stream during the previous step, so
    only their excess over the compute time counts.
    """
    storage = io.storage_seconds(counts["storage_pages"])
    link = io.link_seconds(counts["link_bytes_max"])
    h2d = io.host_seconds(counts["h2d_bytes_max"])
    return storage + link + max(0.0, h2d - compute_s) + compute_s


def params_checksum(params: Any) -> str:
    """SHA-256 of the parameters' bytes (equal iff bitwise equal)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:16]


def init_state(
    dims: tuple[int, ...],
    mesh: Any,
    fetcher: fetcher_lib.FeatureFetcher,
    *,
    seed: int,
    learning_rate: float,
    epochs: int,
) -> dict[str, Any]:
    """A policy run's first state: the GraphSAGE model of layer widths
    ``dims`` (drawn from ``PRNGKey(seed)``) and its Adam state at
    ``learning_rate`` (replicated), the fetcher's cache state and per-epoch
    sums ``acc (epochs, len(ACC_KEYS))``."""
    params = model_lib.init_sage(jax.random.PRNGKey(seed), dims)
    tx = optax.adam(learning_rate)
    return {
        # Replicated on the mesh, so a restored checkpoint lands there too.
        **fetcher_lib.put_global(
            {"params": params, "opt_state": tx.init(params)},
            jax.sharding.NamedSharding(mesh, jax.P()),
        ),
        "fetch": fetcher.init_state(),
        "acc": np.zeros((epochs, len(ACC_KEYS)), np.float64),
    }


# Measured seconds of a step's fetch (sampling and the fetcher's stages).
TIME_KEYS = ("t_batch", *fetcher_lib.STAGES)
HOST_KEYS = ("next_use", "ring_ids", "ring_step", "ring_rows", "ring_count")


def host_fetch_state(fs: dict[str, Any], copy: bool = False) -> dict[str, Any]:
    """The fetcher state with its host parts as writable numpy arrays.

    ``copy=True`` copies them, so planning a later step on the result leaves
    ``fs`` as it was (the device parts, immutable jax arrays, are shared).
    """
    out = dict(fs)
    conv = np.array if copy else _host
    for k in HOST_KEYS:
        out[k] = conv(fs[k])
    out["meta"] = {k: conv(v) for k, v in fs["meta"].items()}
    return out


def _fetch_batch(
    data: Any, fetcher: fetcher_lib.FeatureFetcher, fs: dict[str, Any], g: int
) -> tuple[dict[str, Any], jax.Array, dict[str, float], Any]:
    """Samples global step ``g``'s batch and fetches its features.

    Returns:
      ``(fetch state, features [n, U, D], counters with t_batch, batch)``.
    """
    t0 = time.perf_counter()
    batch = data.sampler.batch(*data.order[g])
    t1 = time.perf_counter()
    fs, feats, counts = fetcher.step(fs, g, batch)
    return fs, feats, dict(counts, t_batch=t1 - t0), batch


def _fetch_ahead(
    data: Any,
    fetcher: fetcher_lib.FeatureFetcher,
    fs: dict[str, Any],
    g: int,
    counts: dict[str, float],
) -> tuple[tuple, float]:
    """Plans step ``g`` on a copy of ``fs`` and books its fetch times to the
    current step's ``counts``.

    Returns:
      ``(the _fetch_batch result with its TIME_KEYS zeroed, seconds moved)``.
    """
    ahead = _fetch_batch(data, fetcher, host_fetch_state(fs, copy=True), g)
    ahead_s = 0.0
    for k in TIME_KEYS:  # spent in this step's wall time
        counts[k] += ahead[2][k]
        ahead_s += ahead[2][k]
        ahead[2][k] = 0.0
    return ahead, ahead_s


def _policy_scalars(
    name: str, counts: dict[str, float], loss: Any, acc: Any
) -> dict[str, Any]:
    """The logged scalars of a step: hit fractions by level, loss, accuracy."""
    req = max(counts["requests"], 1.0)
    scalars = {
        f"{name}/{k}": counts[k] / req for k in ("local", "remote", "victim", "storage")
    }
    scalars[f"{name}/loss"] = loss
    scalars[f"{name}/train_acc"] = acc
    return scalars


def make_step_fn(
    name: str,
    data: Any,
    io: storage_lib.IOModel,
    compute_s: float,
    mesh: Any,
    fetcher: fetcher_lib.FeatureFetcher,
    train_step: Any,
    overlap: bool = True,
) -> Any:
    """``step_fn(state, step) -> (state, scalars)`` of policy ``name`` for
    ``train_loop``: fetch the step's features through the cache (``data``:
    the experiment's ``Data``), train, add the step's counters, measured
    times and modelled time (``io``, ``compute_s`` modelled seconds of a
    step's compute: ``modelled_step_seconds``) to its epoch's row of
    ``state["acc"]``.

    With ``overlap``, step ``t`` dispatches its training step and, while the
    devices compute it, samples and plans step ``t + 1`` on the host (the
    plan depends only on the cache state after step ``t``'s fetch, not on
    the trained parameters) on a copy of the fetcher state, then queues its
    exchange behind the training step. The state step ``t`` returns (and a
    checkpoint holds) is the one after step ``t``; the planned next step is
    kept in memory and used only by the call for step ``t + 1``, so a
    resumed run plans it again. Every device runs the same programs in the
    same order as without overlap, so results are bitwise equal. Times are
    booked to the step whose wall time they ran in: step ``t``'s fetch
    stages (``t_batch``, ``t_plan``, ...) hold the planning of step
    ``t + 1``, and ``t_train`` is the rest of its wall time (training not
    hidden behind that planning), so the stages sum to ``measured_s``.
    """
    sharding = jax.sharding.NamedSharding(mesh, jax.P(mesh.axis_names[0]))
    pending: dict[int, tuple] = {}

    def step_fn(state, step):
        t0 = time.perf_counter()
        g = step - 1
        got = pending.pop(g, None)
        if got is None:
            pending.clear()
            got = _fetch_batch(data, fetcher, host_fetch_state(state["fetch"]), g)
        fs, feats, counts, batch = got
        t2 = time.perf_counter()
        pos, masks, labels = fetcher_lib.put_global(
            (batch.positions, batch.masks, batch.labels), sharding
        )
        params, opt_state, loss, acc = train_step(
            state["params"], state["opt_state"], feats, pos, masks, labels
        )
        ahead_s = 0.0
        if overlap and g + 1 < len(data.order):
            pending[g + 1], ahead_s = _fetch_ahead(data, fetcher, fs, g + 1, counts)
        jax.block_until_ready(params)
        epoch = data.order[g][0]
        row = _host(state["acc"])
        counts.update(
            t_train=time.perf_counter() - t2 - ahead_s,
            steps=1.0,
            loss=float(loss),
            measured_s=time.perf_counter() - t0,
            modelled_s=modelled_step_seconds(counts, io, compute_s),
        )
        row[epoch] += np.array([counts[k] for k in ACC_KEYS])
        new = {"params": params, "opt_state": opt_state, "fetch": fs, "acc": row}
        return new, _policy_scalars(name, counts, loss, acc)

    return step_fn


def train_policy(
    name: str,
    data: Any,
    init: dict[str, Any],
    step_fn: Any,
    workdir: str,
    writer: Any,
    *,
    checkpoint_every: int,
    log_every: int,
    stop_at: int | None = None,
) -> dict[str, Any] | None:
    """Policy ``name``'s resumable ``train_loop`` from ``init`` over the run's
    ``len(data.order)`` steps (checkpoints under ``workdir/checkpoints/
    <name>`` every ``checkpoint_every`` steps, 0: once per epoch; scalars
    every ``log_every`` steps); its final state, or None when ``stop_at``
    ended it early."""
    total = len(data.order)
    state = train_lib.train_loop(
        init,
        step_fn,
        num_steps=min(stop_at or total, total),
        workdir=workdir,
        checkpoint_every=checkpoint_every or data.sampler.steps_per_epoch,
        writer=writer,
        log_every=log_every,
        name=name,
    )
    if stop_at is not None and stop_at < total:
        return None
    return state


def policy_summary(
    name: str,
    data: Any,
    fcfg: fetcher_lib.FetchConfig,
    budget: dict[str, Any],
    state: dict[str, Any],
    *,
    num_devices: int,
    eval_nodes: int,
    seed: int,
) -> dict[str, Any]:
    """The summary of a finished policy run: the last (warm) epoch's hit
    split, bytes and times (``report.summarise`` over ``num_devices``, with
    the policy's ``budget``), test accuracy on the first ``eval_nodes`` test
    nodes (sampled with ``seed``), the parameters' checksum, duplication,
    mismatches and per-epoch sums."""
    acc = _host(state["acc"])
    test_ids = data.test_ids[:eval_nodes]
    accuracy = model_lib.evaluate(
        state["params"], data.sampler, data.store, test_ids, seed=seed
    )
    summary = report.summarise(
        name,
        fcfg,
        dict(zip(ACC_KEYS, acc[-1])),
        data.store,
        num_devices,
        budget,
    )
    summary.update(
        test_accuracy=accuracy,
        params_checksum=params_checksum(state["params"]),
        duplication_ratio=cache_lib.duplication_ratio(
            {k: _host(v) for k, v in state["fetch"]["meta"].items()}
        )
        if fcfg.mode != "none"
        else 1.0,
        mismatches=float(acc[:, ACC_KEYS.index("mismatch")].sum()),
        epoch_stats={k: acc[:, i].tolist() for i, k in enumerate(ACC_KEYS)},
    )
    return summary
