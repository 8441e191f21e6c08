"""Host-side placement plans: sharding, sparse materialisation and routing.

Everything here is numpy on the host. A plan becomes a few int32 arrays
(:class:`PlanArrays`) that the compiled step takes as ordinary arguments, so
a new plan never recompiles.

Vocabulary (per MoE layer, ``D`` devices, ``E`` experts):

* *pool*: each device owns ``S`` expert slots (params + optimizer state);
  ``pool_expert[d, s]`` is the expert in slot ``s`` of device ``d`` or -1.
  Every expert has exactly one owner (one optimizer copy system-wide).
* *materialisation*: ``m`` extra slots per device; ``mat[d, k]`` is the
  expert replicated there this iteration (-1 = empty). SparseAllGather fills
  them from the owners.
* *compute slots*: device ``d`` computes with ``S + m`` slots: its pool, then
  its materialised replicas. ``route[src, e] = (dst, slot)`` says where
  device ``src`` sends its tokens for expert ``e``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


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
      route_dev: (L, D, E) destination device of src's tokens for expert e.
      route_slot: (L, D, E) compute slot on that device.
      send_slot: (L, D, D, m) on src: pool slot sent to (dst, k), or -1.
      gather_slot: (L, E) ``owner_dev * S + owner_slot`` (for FSDP).
    """

    route_dev: np.ndarray
    route_slot: np.ndarray
    send_slot: np.ndarray
    gather_slot: np.ndarray


def even_sharding(layers: int, experts: int, devices: int, slots: int) -> np.ndarray:
    """Contiguous even sharding: expert e on device e // (E/D).

    Returns:
      pool_expert (L, D, S); slots past E/D are empty (-1).
    """
    per = experts // devices
    if per * devices != experts or slots < per:
        raise ValueError(f"E={experts} must split over D={devices} into <= {slots}")
    pool = -np.ones((layers, devices, slots), np.int32)
    pool[:, :, :per] = np.arange(experts).reshape(devices, per)
    return pool


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


def heterogeneous_sharding(
    load: np.ndarray, t: int, slots: int, topo: Topology
) -> np.ndarray:
    """Algorithm 2 for one layer: re-shard cold experts by load.

    The experts outside the top-t (cold, never materialised) go first in
    descending load, each to the least-loaded node, then its least-loaded
    device with a free slot (ties: fewer free slots). Hot experts fill the
    remaining slots in order. A device may own 0..S experts of the layer.

    Args:
      load: (E,) expected loads.
      t: overlap degree (the hot set size).
      slots: pool slots per device (``D S >= E``).
      topo: node layout.

    Returns:
      pool_expert (D, S) int32.
    """
    experts, devices = len(load), topo.devices
    if devices * slots < experts:
        raise ValueError("not enough slots")
    order = np.argsort(-np.asarray(load), kind="stable")
    hot, cold = order[: min(t, experts)], order[min(t, experts) :]
    pool = -np.ones((devices, slots), np.int32)
    free = np.full(devices, slots)
    dev_load = np.zeros(devices)
    node_load = np.zeros(topo.nodes)
    for e in cold:
        open_nodes = {topo.node(d) for d in range(devices) if free[d] > 0}
        node = min(open_nodes, key=lambda n: (node_load[n], n))
        devs = [d for d in range(devices) if topo.node(d) == node and free[d] > 0]
        d = min(devs, key=lambda d: (dev_load[d], free[d], d))
        pool[d, slots - free[d]] = e
        free[d] -= 1
        dev_load[d] += load[e]
        node_load[node] += load[e]
    for e in hot:
        d = int(np.argmax(free))
        pool[d, slots - free[d]] = e
        free[d] -= 1
    return pool


def route(
    pool_expert: np.ndarray, mat: np.ndarray, topo: Topology
) -> tuple[np.ndarray, np.ndarray]:
    """Local-replica-first token routing for one layer.

    A source device keeps tokens of an expert it holds; otherwise it uses a
    replica on its own node; otherwise any replica. Sources sharing the same
    candidate list are spread over it round-robin (tokens split by source).

    Returns:
      (route_dev (D, E), route_slot (D, E)) int32; slot indexes the
      ``S + m`` compute slots of the destination.
    """
    devices, slots = pool_expert.shape
    experts = max(int(pool_expert.max()), int(mat.max(initial=-1))) + 1
    holders: list[list[tuple[int, int]]] = [[] for _ in range(experts)]
    for d, s in zip(*np.nonzero(pool_expert >= 0)):
        holders[pool_expert[d, s]].append((int(d), int(s)))
    for d, k in zip(*np.nonzero(mat >= 0)):
        holders[mat[d, k]].append((int(d), slots + int(k)))
    r_dev = np.zeros((devices, experts), np.int32)
    r_slot = np.zeros((devices, experts), np.int32)
    for e in range(experts):
        turn: collections.Counter = collections.Counter()
        for src in range(devices):
            local = [h for h in holders[e] if h[0] == src]
            near = [h for h in holders[e] if topo.node(h[0]) == topo.node(src)]
            cands = tuple(local or near or holders[e])
            pick = cands[turn[cands] % len(cands)]
            turn[cands] += 1
            r_dev[src, e], r_slot[src, e] = pick
    return r_dev, r_slot


def send_slots(pool_expert: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """SparseAllGather plan of one layer: (D_src, D_dst, m) pool slot or -1."""
    devices, m = mat.shape
    experts = int(pool_expert.max()) + 1
    owner_dev, owner_slot = owners(pool_expert, experts)
    send = -np.ones((devices, devices, m), np.int32)
    for dst, k in zip(*np.nonzero(mat >= 0)):
        e = mat[dst, k]
        send[owner_dev[e], dst, k] = owner_slot[e]
    return send


def plan_arrays(pool_expert: np.ndarray, mat: np.ndarray, topo: Topology) -> PlanArrays:
    """Integer arrays of a whole plan: ``pool_expert (L, D, S)``, ``mat (L, D, m)``."""
    layers, _, slots = pool_expert.shape
    rd, rs, ss, gs = [], [], [], []
    for layer in range(layers):
        d, s = route(pool_expert[layer], mat[layer], topo)
        rd.append(d)
        rs.append(s)
        ss.append(send_slots(pool_expert[layer], mat[layer]))
        od, os_ = owners(pool_expert[layer], d.shape[1])
        gs.append(od * slots + os_)
    return PlanArrays(*(np.stack(a).astype(np.int32) for a in (rd, rs, ss, gs)))


def reshard_index(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Where each new pool slot's expert lives in the old pools.

    Args:
      old, new: pool_expert (L, D, S).

    Returns:
      (L, D, S) int32 flat index ``old_dev * S + old_slot`` into the old
      layer pool, or -1 for an empty new slot.
    """
    layers, devices, slots = old.shape
    out = -np.ones_like(new)
    for layer in range(layers):
        flat = old[layer].reshape(-1)
        where = {int(e): i for i, e in enumerate(flat) if e >= 0}
        for d in range(devices):
            for s in range(slots):
                e = new[layer, d, s]
                if e >= 0:
                    out[layer, d, s] = where[int(e)]
    return out


def moved_experts(old: np.ndarray, new: np.ndarray) -> int:
    """Experts (over all layers) whose owning device changes."""
    n = 0
    for layer in range(old.shape[0]):
        experts = int(old[layer].max()) + 1
        n += int(
            np.sum(owners(old[layer], experts)[0] != owners(new[layer], experts)[0])
        )
    return n


class LoadTracker:
    """Mean expert load over the last ``window`` iterations (Algorithm 1's F)."""

    def __init__(self, window: int = 5):
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


def stack_layers(per_layer: Sequence[np.ndarray]) -> np.ndarray:
    """Stacks per-layer plans into one int32 array."""
    return np.stack(per_layer).astype(np.int32)
