"""LSM-GNN experiment: GraphSAGE trained from storage under each feature cache.

For every policy in the config's ``policies`` the same GraphSAGE run (same seed,
same batches) is repeated with features fetched through that policy's cache;
all policies share one total cache budget. Because caching is transparent,
every run must end with bitwise identical parameters: their checksums are
recorded and compared. Per policy the run records the hit-rate split (local /
remote device / victim buffer / storage), storage and inter-device bytes,
the duplication ratio, modelled and measured epoch times and test accuracy,
measured on the last (warm) epoch.

Each policy is a resumable ``train_loop`` (Orbax checkpoints under
``workdir/checkpoints/<policy>``); a finished policy's summary is kept in
``workdir/policies/<policy>.json`` (``jaxsuite.core.phases.PhaseCache``) and
not recomputed on resume.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jaxsuite.core import devices, phases
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import train as train_lib
from jaxsuite.gnn import cache as cache_lib
from jaxsuite.gnn import fetcher as fetcher_lib
from jaxsuite.gnn import graph as graph_lib
from jaxsuite.gnn import model as model_lib
from jaxsuite.gnn import report, training
from jaxsuite.gnn import sampler as sampler_lib
from jaxsuite.gnn import storage as storage_lib
from jaxsuite.gnn.settings import Settings, from_config

AXIS = "dev"
POLICY_TABLE: dict[str, dict[str, Any]] = {
    "none": {"mode": "none"},
    "independent_lru": {"mode": "independent", "policy": "lru"},
    "static_pagerank": {"mode": "independent", "policy": "static"},
    "presampled_hotness": {
        "mode": "independent",
        "policy": "static",
        "static": "hotness",
    },
    "shared_lru": {"mode": "shared", "policy": "lru"},
    "shared_static": {"mode": "shared", "policy": "static"},
    "lsm_gnn": {"mode": "shared", "policy": "hybrid"},
    # The victim ring's rows count against the budget: device cache + ring =
    # the others' cache.
    "lsm_gnn_pvp": {"mode": "shared", "policy": "hybrid", "victim": True},
    # The same ring on top of a full-budget device cache (unequal budgets).
    "lsm_gnn_pvp_ring_extra": {
        "mode": "shared",
        "policy": "hybrid",
        "victim": True,
        "ring_in_budget": False,
    },
    # Belady with the full future inside the shared cache's constraints: the
    # set-associative geometry and owners, optionally pinning hit lines.
    "belady_set_assoc": {"mode": "shared", "policy": "dynamic", "window": "run"},
    "belady_set_assoc_pinned": {
        "mode": "shared",
        "policy": "dynamic",
        "window": "run",
        "pin_hits": True,
    },
    # The true bound: unconstrained Belady over the whole budget (no training).
    "belady": {"mode": "bound"},
}


class Data:
    """Graph, feature store, sampler, static scores and the run's requests.

    Built from the run's ``settings`` (graph, split, sampler and static
    scores seeded by ``settings.seed``); the features are written once to
    ``workdir/data/features.f32`` (``graph.num_nodes x graph.feature_dim``
    float32) and reused while their size matches.

    Attributes:
      graph: the power-law graph.
      store: the feature store (``io.page_bytes`` pages).
      train_ids, test_ids: the node split.
      sampler: the data-parallel neighbour sampler.
      order: the run's ``(epoch, step)`` pairs, in training order.
      inputs: per step, ``(inputs (devices, U), num_inputs (devices,))``.
      static: quantized static scores ``(N,) uint8`` by name (``pagerank``,
        ``hotness``).
    """

    def __init__(self, settings: Settings, workdir: str):
        g = settings.graph
        self.graph = graph_lib.power_law_graph(
            settings.seed,
            g.num_nodes,
            avg_degree=g.avg_degree,
            num_classes=g.num_classes,
            p_in=g.p_in,
            exponent=g.exponent,
        )
        path = os.path.join(workdir, "data", "features.f32")
        expected = g.num_nodes * g.feature_dim * 4
        if not os.path.exists(path) or os.path.getsize(path) != expected:
            feats = graph_lib.class_features(
                settings.seed + 1,
                self.graph.labels,
                g.feature_dim,
                g.num_classes,
                noise=g.noise,
            )
            storage_lib.write_features(path, feats)
        self.store = storage_lib.FeatureStore(
            path, g.num_nodes, g.feature_dim, page_bytes=settings.io.page_bytes
        )
        self.train_ids, _, self.test_ids = graph_lib.split_nodes(
            settings.seed, g.num_nodes
        )
        t = settings.train
        self.sampler = sampler_lib.NodeSampler(
            self.graph,
            self.train_ids,
            t.fanouts,
            t.batch_per_device,
            settings.devices,
            settings.seed,
        )
        self.order = self.sampler.schedule(t.epochs)
        batches = (self.sampler.batch(*es) for es in self.order)
        self.inputs = [(b.inputs, b.num_inputs) for b in batches]
        c = settings.cache
        pagerank = graph_lib.reverse_pagerank(
            self.graph, iterations=c.pagerank_iterations, damping=c.damping
        )
        self.static = {"pagerank": graph_lib.quantize_u8(pagerank)}
        # Pre-sampled hotness (GNNLab): access counts of epochs drawn with
        # another seed, never the ones trained on.
        pre = sampler_lib.NodeSampler(
            self.graph,
            self.train_ids,
            t.fanouts,
            t.batch_per_device,
            settings.devices,
            settings.seed + 7919,
        )
        counts = np.zeros(g.num_nodes, np.int64)
        for e, s in pre.schedule(c.presample_epochs):
            x = pre.batch(e, s).inputs
            np.add.at(counts, x[x >= 0], 1)
        self.static["hotness"] = graph_lib.quantize_u8(counts.astype(np.float64))
        self._reuse: dict[bool, fetcher_lib.ReuseSchedule] = {}

    def reuse(self, shared: bool) -> fetcher_lib.ReuseSchedule:
        if shared not in self._reuse:
            self._reuse[shared] = fetcher_lib.ReuseSchedule(self.inputs, shared)
        return self._reuse[shared]


class Budget(NamedTuple):
    """Rows of the total cache budget and how one policy spends them.

    Attributes:
      budget_rows: total rows every policy may hold (all devices, host ring).
      device_rows: rows of the device caches (all devices).
      ring_rows: most rows the victim ring holds (all caches).
      ring_in_budget: whether ``ring_rows`` is taken out of the budget.
    """

    budget_rows: int
    device_rows: int
    ring_rows: int
    ring_in_budget: bool


def budget_of(name: str, settings: Settings) -> Budget:
    """Splits the run's budget for policy ``name`` (sets of whole ways).

    Equal budgets: ``device_rows + ring_rows <= budget_rows`` with less than
    one set per device left over, unless the policy is the named unequal
    ablation (``ring_in_budget`` False, the ring on top of the budget).
    """
    entry = POLICY_TABLE[name]
    c, n = settings.cache, settings.devices
    budget = int(c.budget_fraction * settings.graph.num_nodes)
    if entry["mode"] == "none":
        return Budget(budget, 0, 0, True)
    if entry["mode"] == "bound":
        return Budget(budget, budget, 0, True)
    ring = 0
    if entry.get("victim", False):
        ring = max(int(c.ring_fraction * budget) // n, 1) * n
    inside = entry.get("ring_in_budget", True)
    per_device = (budget - (ring if inside else 0)) // n
    lines = max(1, per_device // c.ways) * c.ways
    return Budget(budget, lines * n, ring, inside)


def fetch_config(
    name: str, settings: Settings, total_steps: int
) -> fetcher_lib.FetchConfig:
    """The cache of policy ``name`` at the run's total budget (``settings``;
    a ``window="run"`` policy sees all ``total_steps`` steps ahead)."""
    entry = POLICY_TABLE[name]
    if entry["mode"] == "bound":
        raise ValueError(f"{name!r} is a bound computed from the trace, not a cache")
    c = settings.cache
    b = budget_of(name, settings)
    spec = None
    if entry["mode"] != "none":
        window = total_steps if entry.get("window") == "run" else c.window
        spec = cache_lib.PolicySpec(
            entry["policy"],
            window=window,
            protect=c.protect,
            pin_hits=entry.get("pin_hits", False),
        )
    return fetcher_lib.FetchConfig(
        entry["mode"],
        spec,
        num_sets=max(1, b.device_rows // settings.devices // c.ways),
        ways=c.ways,
        victim=entry.get("victim", False),
        ring_slots=c.ring_slots,
        ring_depth=c.ring_depth,
        ring_capacity=b.ring_rows // settings.devices,
    )


def make_fetcher(
    name: str, settings: Settings, data: Data, mesh: Any
) -> tuple[fetcher_lib.FetchConfig, fetcher_lib.FeatureFetcher]:
    """Policy ``name``'s cache configuration and fetcher over ``data``."""
    fcfg = fetch_config(name, settings, len(data.order))
    reuse = None if fcfg.mode == "none" else data.reuse(fcfg.mode == "shared")
    static = data.static[POLICY_TABLE[name].get("static", "pagerank")]
    fetcher = fetcher_lib.FeatureFetcher(
        fcfg, mesh, AXIS, data.store, static, reuse, data.sampler.input_len
    )
    return fcfg, fetcher


def model_dims(settings: Settings) -> tuple[int, ...]:
    """GraphSAGE layer widths: features, hidden per extra layer, classes."""
    t = settings.train
    hidden = [t.hidden] * (len(t.fanouts) - 1)
    return (settings.graph.feature_dim, *hidden, settings.graph.num_classes)


def policy_cache(workdir: str) -> phases.PhaseCache:
    """Finished policies' summaries: ``workdir/policies/<policy>.json``."""
    return phases.PhaseCache(workdir, "policies")


def run_policy(
    name: str,
    settings: Settings,
    data: Data,
    mesh: Any,
    workdir: str,
    writer: Any,
    train_step: Any,
    stop_at: int | None = None,
) -> dict[str, Any] | None:
    """Trains under one policy; returns its summary (also in policies/<name>.json).

    ``stop_at`` ends the run after that many steps, leaving its checkpoint
    for a later call to resume from, and returns None.
    """
    cache = policy_cache(workdir)
    saved = cache.load(name)
    if saved is not None:
        return saved
    if POLICY_TABLE[name]["mode"] == "bound":
        return cache.save(name, bound_summary(name, settings, data))
    fcfg, fetcher = make_fetcher(name, settings, data, mesh)
    t = settings.train
    state = training.train_policy(
        name,
        data,
        training.init_state(
            model_dims(settings),
            mesh,
            fetcher,
            seed=settings.seed,
            learning_rate=t.learning_rate,
            epochs=t.epochs,
        ),
        training.make_step_fn(
            name,
            data,
            settings.io,
            settings.compute_seconds,
            mesh,
            fetcher,
            train_step,
            overlap=t.overlap_fetch,
        ),
        workdir,
        writer,
        checkpoint_every=settings.checkpoint_every,
        log_every=settings.log_every,
        stop_at=stop_at,
    )
    if state is None:
        return None
    budget = budget_of(name, settings)._asdict()
    summary = training.policy_summary(
        name,
        data,
        fcfg,
        budget,
        state,
        num_devices=settings.devices,
        eval_nodes=t.eval_nodes,
        seed=settings.seed,
    )
    cache.save(name, summary)
    # The policy is done: its cache checkpoints are no longer needed.
    shutil.rmtree(os.path.join(workdir, "checkpoints", name), ignore_errors=True)
    return summary


def bound_summary(name: str, settings: Settings, data: Data) -> dict[str, Any]:
    """The unconstrained Belady bound on the run's requests (last epoch).

    One store of the whole budget over the shared request stream (each step's
    distinct ids, all devices), full future (``cache.belady``). A hit serves
    every device that asked for the id; a miss is one storage read.
    """
    b = budget_of(name, settings)
    reqs = data.reuse(True).ids[0]
    hits = cache_lib.belady(reqs, b.budget_rows, settings.graph.num_nodes)
    steps = range(len(reqs) - data.sampler.steps_per_epoch, len(reqs))
    acc = dict.fromkeys(("requests", "hits", "rows", "pages"), 0.0)
    for t in steps:
        x = data.inputs[t][0]
        ids, mult = np.unique(x[x >= 0], return_counts=True)
        acc["requests"] += float(mult.sum())
        acc["hits"] += float(mult[hits[t]].sum())
        missed = ids[~hits[t]]
        acc["rows"] += float(missed.size)
        acc["pages"] += float(data.store.count(missed))
    return report.summarise_bound(name, acc, data.store, b._asdict())


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Runs every policy, draws the figures and writes ``results.json``.

    ``config`` (``configs/lsmgnn.py``) is read once into :class:`Settings`
    (``settings.from_config``); it is kept only to prepare ``workdir`` and
    to be echoed into the hyperparameters and ``results.json``.
    """
    t0 = time.time()
    s = from_config(config)
    unknown = [p for p in s.policies if p not in POLICY_TABLE]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; valid: {list(POLICY_TABLE)}")
    train_lib.prepare_workdir(workdir, config)
    if jax.device_count() < s.devices:
        raise ValueError(
            f"needs {s.devices} devices, found {jax.device_count()}: pass "
            "--local_device_count=8 on a CPU, or set devices= in the config"
        )
    mesh = devices.make_mesh((s.devices,), (AXIS,), devices=jax.devices()[: s.devices])
    data = Data(s, workdir)
    tx = optax.adam(s.train.learning_rate)
    train_step = model_lib.make_train_step(mesh, AXIS, tx)
    summaries = {}
    with metrics_lib.MetricWriter(workdir) as writer:
        writer.write_hparams(config.to_dict())
        for name in s.policies:
            summaries[name] = run_policy(
                name, s, data, mesh, workdir, writer, train_step
            )
    report.figures_for(workdir, summaries, metrics_lib.read_metrics(workdir))
    metrics, verdict = report.headline(summaries)
    path = metrics_lib.write_results(
        workdir,
        paper="lsmgnn",
        config=config,
        metrics=metrics,
        tables={"policies": report.table(summaries)},
        claim=report.CLAIM,
        verdict=verdict,
        wall_seconds=time.time() - t0,
    )
    return metrics_lib.read_results(path)
