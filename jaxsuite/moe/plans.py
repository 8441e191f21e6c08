"""Host-side placement plans: sharding, sparse materialisation and routing.

Everything here is numpy on the host. A plan becomes a few int32 arrays
(:class:`PlanArrays`) that the compiled step takes as ordinary arguments, so
a new plan never recompiles.

Vocabulary (per MoE layer, ``D`` devices, ``E`` experts):

* *local slots*: each device reads ``K`` of its pool slots for the layer
  (see :mod:`jaxsuite.moe.sharding`, where one pool spans all layers);
  ``pool_expert[d, k]`` is the layer's expert in local slot ``k`` or -1.
  Every expert has exactly one owner (one optimizer copy system-wide).
* *materialisation*: ``m`` extra slots per device; ``mat[d, k]`` is the
  expert replicated there this iteration (-1 = empty). SparseAllGather fills
  them from the owners.
* *compute slots*: device ``d`` computes with ``K + m`` slots: its local
  slots, then its materialised replicas. ``route[src, e]`` lists the
  replicas ``(dst, slot)`` over which device ``src`` splits its tokens for
  expert ``e`` evenly.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from jaxsuite.moe import collectives


@dataclass(frozen=True)
class Topology:
    """``devices`` split evenly over ``nodes`` (device d on node d // per_node)."""

    devices: int
    nodes: int

    @property
    def per_node(self) -> int:
        return self.devices // self.nodes

    def node(self, d: int) -> int:
        return d // self.per_node


class PlanArrays(NamedTuple):
    """The integer arrays a compiled step takes (L layers, D devices).

    Attributes:
      local_slot: (L, D, K) pool slot of each local compute slot, or -1.
      route_dev: (L, D, E, R) chosen replica devices of src's tokens for
        expert e (-1 padded); the tokens are split evenly over them.
      route_slot: (L, D, E, R) compute slots on those devices.
      pack, compact, pick: the SparseAllGather plan
        (:class:`collectives.GatherArrays`; its shapes are the bucket).
      gather_slot: (L, E) ``owner_dev * K + owner_local_slot`` (for FSDP).
    """

    local_slot: np.ndarray
    route_dev: np.ndarray
    route_slot: np.ndarray
    pack: np.ndarray
    compact: np.ndarray
    pick: np.ndarray
    gather_slot: np.ndarray


def bucket_of(plan: PlanArrays) -> tuple[str, int, int]:
    """The SparseAllGather bucket ``(mode, c, c2)`` a plan's shapes encode."""
    mode = collectives.mode_of(plan.pack.shape, plan.compact.shape)
    devices = plan.pack.shape[1]
    if mode == "direct":
        return (mode, plan.pack.shape[-1] // devices, 0)
    if mode == "relay":
        return (mode, plan.pack.shape[-1], plan.compact.shape[-1])
    return ("none", 0, 0)


def owners(pool_expert: np.ndarray, experts: int) -> tuple[np.ndarray, np.ndarray]:
    """(owner_dev (E,), owner_slot (E,)) of one layer's ``pool_expert (D, S)``."""
    dev, slot = -np.ones(experts, np.int32), -np.ones(experts, np.int32)
    for d, s in zip(*np.nonzero(pool_expert >= 0)):
        e = pool_expert[d, s]
        if dev[e] >= 0:
            raise ValueError(f"expert {e} has two owners")
        dev[e], slot[e] = d, s
    if (dev < 0).any():
        raise ValueError(f"experts without owner: {np.nonzero(dev < 0)[0]}")
    return dev, slot


def assign_slots_by_load(load: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Splits ``total`` replica slots over experts in proportion to ``load``.

    Largest-remainder rounding; no expert gets more than ``cap``; slots an
    expert cannot take go to the others (the paper leaves rounding open).

    Args:
      load: (t,) non-negative loads of the candidate experts.
      total: slots to hand out.
      cap: most replicas per expert (devices that do not own it).

    Returns:
      (t,) int replica counts, summing to ``min(total, t * cap)``.
    """
    t = len(load)
    counts = np.zeros(t, np.int64)
    left = min(total, t * cap)
    weights = np.asarray(load, np.float64) + 1e-12
    while left > 0:
        open_ = counts < cap
        share = np.where(open_, weights, 0.0)
        quota = share / share.sum() * left
        add = np.minimum(np.floor(quota).astype(np.int64), cap - counts)
        rem = left - add.sum()
        order = np.argsort(-(quota - np.floor(quota)), kind="stable")
        for i in order:
            if rem == 0:
                break
            if open_[i] and counts[i] + add[i] < cap:
                add[i] += 1
                rem -= 1
        if add.sum() == 0:
            break
        counts += add
        left -= add.sum()
    return counts


def sparse_materialization(
    load: np.ndarray, pool_expert: np.ndarray, t: int, m: int, topo: Topology
) -> np.ndarray:
    """Algorithm 1 for one layer: which replicas to materialise.

    Args:
      load: (E,) expected tokens per expert (mean of the last iterations).
      pool_expert: (D, S) current sharding.
      t: overlap degree (experts whose gather hides behind non-MoE work).
      m: materialisation slots per device.
      topo: node layout.

    Returns:
      mat (D, m) int32, -1 = empty. With ``t <= m`` the top-t experts go to
      every device that does not own them; otherwise ``D m`` slots are split
      over the top-t by load and spread over nodes with the most free slots.
    """
    experts = len(load)
    devices = pool_expert.shape[0]
    mat = -np.ones((devices, m), np.int32)
    t = min(int(t), experts)
    mm = min(m, t)
    if t <= 0 or mm <= 0:
        return mat
    owner_dev, _ = owners(pool_expert, experts)
    top = np.argsort(-np.asarray(load), kind="stable")[:t]
    free = np.full(devices, mm)
    holds = np.zeros((devices, experts), bool)
    holds[owner_dev, np.arange(experts)] = True

    def put(d: int, e: int) -> None:
        mat[d, mm - free[d]] = e
        free[d] -= 1
        holds[d, e] = True

    if t <= mm:
        for e in top:
            for d in range(devices):
                if not holds[d, e]:
                    put(d, e)
        return mat
    counts = assign_slots_by_load(load[top], devices * mm, devices - 1)
    for e, n in zip(top, counts):
        for _ in range(int(n)):
            cands = [d for d in range(devices) if free[d] > 0 and not holds[d, e]]
            if not cands:
                break
            node_has = collections.Counter(
                topo.node(d) for d in np.nonzero(holds[:, e])[0]
            )
            node_free = collections.Counter()
            for d in cands:
                node_free[topo.node(d)] += free[d]
            best = min(
                cands,
                key=lambda d: (
                    node_has[topo.node(d)],
                    -node_free[topo.node(d)],
                    -free[d],
                    d,
                ),
            )
            put(best, int(e))
    return mat


def replicate_hot(
    load: np.ndarray, pool_expert: np.ndarray, n: int, m: int
) -> np.ndarray:
    """FasterMoE-style shadowing: the ``n`` hottest experts on every device.

    Returns:
      mat (D, m) int32 (``n <= m``), -1 = empty.
    """
    devices = pool_expert.shape[0]
    owner_dev, _ = owners(pool_expert, len(load))
    mat = -np.ones((devices, m), np.int32)
    top = np.argsort(-np.asarray(load), kind="stable")[: min(n, m)]
    for d in range(devices):
        k = 0
        for e in top:
            if owner_dev[e] != d:
                mat[d, k] = e
                k += 1
    return mat


def fastermoe_shadows(
    load: np.ndarray,
    pool_expert: np.ndarray,
    m: int,
    layer_time: Callable[[np.ndarray], float],
) -> np.ndarray:
    """FasterMoE's greedy policy: shadow the next-hottest expert while it helps.

    Args:
      load: (E,) expected loads.
      pool_expert: (D, S) sharding.
      m: most shadows (slots per device).
      layer_time: modelled layer time of a materialisation ``mat (D, m)``.

    Returns:
      mat (D, m) of the best prefix of hottest experts.
    """
    best = replicate_hot(load, pool_expert, 0, m)
    best_time = layer_time(best)
    for n in range(1, m + 1):
        mat = replicate_hot(load, pool_expert, n, m)
        cost = layer_time(mat)
        if cost >= best_time:
            break
        best, best_time = mat, cost
    return best


def route(
    pool_expert: np.ndarray,
    mat: np.ndarray,
    topo: Topology,
    max_replicas: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Token dispatch of one layer (the paper's section 4.4).

    For each source device and expert the chosen replicas are the ones on
    the source itself if any; otherwise the ones on its node; otherwise all
    of them (cross-node). A source's tokens of that expert are split evenly
    over its chosen replicas: queue position ``p`` goes to chosen replica
    ``p mod n`` (see :func:`split_counts`).

    Args:
      pool_expert: (D, K) expert ids of the layer's local compute slots.
      mat: (D, m) materialised replicas (-1 empty).
      max_replicas: R, chosen replicas kept per (source, expert); default D.

    Returns:
      ``(route_dev (D, E, R), route_slot (D, E, R))`` int32, -1 padded;
      slot indexes the ``K + m`` compute slots of the destination.
    """
    devices, slots = pool_expert.shape
    r_max = devices if max_replicas is None else max_replicas
    experts = max(int(pool_expert.max()), int(mat.max(initial=-1))) + 1
    holders: list[list[tuple[int, int]]] = [[] for _ in range(experts)]
    for d, s in zip(*np.nonzero(pool_expert >= 0)):
        holders[pool_expert[d, s]].append((int(d), int(s)))
    for d, k in zip(*np.nonzero(mat >= 0)):
        holders[mat[d, k]].append((int(d), slots + int(k)))
    r_dev = -np.ones((devices, experts, r_max), np.int32)
    r_slot = -np.ones((devices, experts, r_max), np.int32)
    for e in range(experts):
        for src in range(devices):
            local = [h for h in holders[e] if h[0] == src]
            near = [h for h in holders[e] if topo.node(h[0]) == topo.node(src)]
            chosen = (local or near or holders[e])[:r_max]
            for r, (d, s) in enumerate(chosen):
                r_dev[src, e, r], r_slot[src, e, r] = d, s
    return r_dev, r_slot


def split_counts(counts: np.ndarray, route_dev: np.ndarray) -> np.ndarray:
    """Tokens each chosen replica receives under the even split.

    Args:
      counts: (D_src, E) tokens per source and expert (queue lengths).
      route_dev: (D_src, E, R) chosen replicas, -1 padded.

    Returns:
      (D_src, E, R): for integer counts the ``ceil`` or ``floor`` of
      ``count / n`` per replica (queue position p goes to replica
      ``p mod n``); fractional counts spread the remainder the same way.
      Zero on padding; sums over R equal ``counts``.
    """
    n = np.maximum((route_dev >= 0).sum(-1, keepdims=True), 1)
    r = np.arange(route_dev.shape[-1])
    c = np.asarray(counts, np.float64)[..., None]
    base = np.floor(c / n)
    extra = np.clip(c - base * n - r, 0.0, 1.0)
    return np.where(route_dev >= 0, base + extra, 0.0)


def plan_arrays(
    layer_pool: np.ndarray,
    local_slot: np.ndarray,
    mat: np.ndarray,
    topo: Topology,
    max_replicas: int | None = None,
    current: tuple[str, int, int] | None = None,
) -> PlanArrays:
    """Integer arrays of a whole plan.

    Args:
      layer_pool: (L, D, K) expert ids of each layer's local compute slots.
      local_slot: (L, D, K) their slots in the device pools (-1 empty).
      mat: (L, D, m) materialised replicas.
      current: SparseAllGather bucket to keep if it fits
        (:func:`collectives.choose_bucket`).
    """
    layers, _, slots = layer_pool.shape
    rd, rs, gs = [], [], []
    experts = None
    for layer in range(layers):
        d, s = route(layer_pool[layer], mat[layer], topo, max_replicas)
        rd.append(d)
        rs.append(s)
        experts = d.shape[1]
        od, os_ = owners(layer_pool[layer], experts)
        gs.append(od * slots + os_)
    gather, _ = collectives.gather_arrays(layer_pool, mat, experts, current)
    arrays = (local_slot, np.stack(rd), np.stack(rs), *gather, np.stack(gs))
    return PlanArrays(*(np.asarray(a, np.int32) for a in arrays))


class LoadTracker:
    """Mean expert load over the last ``window`` iterations (Algorithm 1's F)."""

    def __init__(self, window: int = 5):
        self.window = window
        self._loads: collections.deque = collections.deque(maxlen=window)

    def update(self, load: np.ndarray) -> None:
        self._loads.append(np.asarray(load, np.float64))

    def mean(self, default: np.ndarray) -> np.ndarray:
        if not self._loads:
            return np.asarray(default, np.float64)
        return np.mean(np.stack(self._loads), axis=0)


def useful_param_bytes(
    pool_expert: np.ndarray, mat: np.ndarray, topo: Topology, nbytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bytes one SparseAllGather of a layer must move, per device.

    Returns:
      (out_bytes (D, 2), in_bytes (D, 2)); column 0 intra-node, 1 inter-node.
      SparseReduceScatter moves the same amounts the other way.
    """
    devices = pool_expert.shape[0]
    experts = int(pool_expert.max()) + 1
    owner_dev, _ = owners(pool_expert, experts)
    out = np.zeros((devices, 2))
    inn = np.zeros((devices, 2))
    for dst, k in zip(*np.nonzero(mat >= 0)):
        src = owner_dev[mat[dst, k]]
        if src == dst:
            continue
        cross = int(topo.node(src) != topo.node(dst))
        out[src, cross] += nbytes
        inn[dst, cross] += nbytes
    return out, inn
