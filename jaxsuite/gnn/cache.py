"""Set-associative cache metadata and the eviction policies, planned on the host.

A cache holds ``S`` sets of ``W`` ways; each line stores one node's feature
row. Node ``v`` maps to set ``(v // set_div) % S``: ``set_div`` is the number
of devices for the shared cache (a device owns the ids ``v % devices == d``,
so ``v // devices`` spreads them over its sets) and 1 for independent caches.

The metadata lives in numpy (:class:`CacheMeta`, one row per cache): tags,
last use, plus a round-robin clock per set. The rows themselves live on the
devices (``exchange``); this module decides hits, victims and admissions, and
the device computation checks its own tag lookup against these decisions.

Every policy ranks lines by a *keep value* (the lowest is evicted first):

* ``rr``: position after the set's clock pointer (round robin);
* ``lru``: step of last use;
* ``static``: a per-node uint8 score (reverse PageRank or pre-sampled hotness);
* ``dynamic``: minus the distance to the next use seen in the look-ahead
  window (no known use ranks lowest): Belady's rule within the window;
* ``hybrid``: tier first (0: no known use, 1: use at distance >= ``protect``,
  2: imminent use, protected), then the static score, then nearer use.

Empty lines rank below everything. The misses of a set take the
lowest-ranked lines in order, most valuable miss first; score-based policies
admit a miss only when it ranks above the line it would replace (so a line
with an imminent reuse is never replaced by one without), while ``rr`` and
``lru`` always admit. A line hit in the current step may be replaced in the
same step: the device reads every hit row before it writes the insertions
(``exchange.serve``). ``PolicySpec.pin_hits`` restores the stricter rule that
ranks lines used in the step above everything (an ablation).

:func:`belady` is the unconstrained bound: Belady's rule with the full future
over one fully associative store of the same total capacity, with no sets,
no per-device owners and no pinning. No demand-filled cache of that capacity
(any policy, any geometry, victim ring included when its rows count against
the capacity) reads fewer rows from storage.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from jaxsuite.gnn.sampler import NO_REUSE

POLICIES = ("rr", "lru", "static", "dynamic", "hybrid")
_EMPTY = -(1 << 50)
_USED = 1 << 50
_NO_USE = -(1 << 40)


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """An eviction policy and its parameters.

    Attributes:
      name: one of ``POLICIES``.
      window: look-ahead in steps; a next use further away counts as unknown.
      protect: hybrid only: a next use closer than this protects the line.
      pin_hits: a line hit in a step may not be replaced in that step (not
        needed by the exchange; kept as an ablation).
    """

    name: str
    window: int = 8
    protect: int = 4
    pin_hits: bool = False

    def __post_init__(self):
        if self.name not in POLICIES:
            raise ValueError(f"unknown policy {self.name!r}; valid: {POLICIES}")


def new_meta(num_caches: int, num_sets: int, ways: int) -> dict[str, np.ndarray]:
    """Empty metadata: ``tags`` / ``last_use`` [C, S, W] int32, ``clock`` [C, S]."""
    return {
        "tags": np.full((num_caches, num_sets, ways), -1, np.int32),
        "last_use": np.full((num_caches, num_sets, ways), -1, np.int32),
        "clock": np.zeros((num_caches, num_sets), np.int32),
    }


def set_of(ids: np.ndarray, num_sets: int, set_div: int) -> np.ndarray:
    """Set index of each id: ``(id // set_div) % num_sets`` (int64)."""
    return (np.asarray(ids, np.int64) // set_div) % num_sets


def keep_values(
    spec: PolicySpec,
    ids: np.ndarray,
    last_use: np.ndarray,
    next_use: np.ndarray,
    static: np.ndarray,
    step: int,
    rr_rank: np.ndarray | None = None,
) -> np.ndarray:
    """Keep value of lines or incoming ids (int64, same shape as ``ids``).

    Args:
      spec: the policy.
      ids: node ids, -1 for empty lines.
      last_use: step of last use of each id.
      next_use: next step each id is used (``NO_REUSE`` if none is known).
      static: uint8 static score of each id.
      step: current step t.
      rr_rank: round robin only: position after the clock pointer.
    """
    dist = next_use.astype(np.int64) - step
    known = (next_use != NO_REUSE) & (dist <= spec.window) & (dist > 0)
    s = static.astype(np.int64)
    if spec.name == "rr":
        v = rr_rank.astype(np.int64)
    elif spec.name == "lru":
        v = last_use.astype(np.int64)
    elif spec.name == "static":
        v = s
    elif spec.name == "dynamic":
        v = np.where(known, -dist, _NO_USE)
    else:
        tier = np.where(~known, 0, np.where(dist < spec.protect, 2, 1))
        near = np.where(known, 1023 - np.minimum(dist, 1023), 0)
        v = (tier << 20) + (s << 10) + near
    return np.where(ids < 0, _EMPTY, v)


class Plan(NamedTuple):
    """Decisions for one cache at one step, for its M distinct requested ids.

    Attributes:
      hit: [M] bool, the id is resident.
      way: [M] int32 its way if resident, else -1.
      insert_way: [M] int32 way the id is written to (-1: not cached).
      evicted: [M] int32 id the insertion replaces (-1: none or empty line).
    """

    hit: np.ndarray
    way: np.ndarray
    insert_way: np.ndarray
    evicted: np.ndarray


def _rank_in_group(group: np.ndarray, value: np.ndarray, num_groups: int) -> np.ndarray:
    """Rank of each item within its group, highest ``value`` first.

    Args:
      group: [K] int group index of each item, in ``[0, num_groups)``; every
        group holds at least one item.
      value: [K] int64 the items are ranked by (ties keep their order).
      num_groups: G, the number of groups.

    Returns:
      [K] int64: 0 for the most valuable item of its group, 1 for the next...
    """
    order = np.lexsort((-value, group))
    first = np.searchsorted(group[order], np.arange(num_groups))
    rank = np.empty(group.size, np.int64)
    rank[order] = np.arange(group.size) - first[group[order]]
    return rank


def _choose_victims(
    spec: PolicySpec,
    tags: np.ndarray,
    last_use: np.ndarray,
    clock: np.ndarray,
    miss_ids: np.ndarray,
    miss_sets: np.ndarray,
    step: int,
    *,
    next_use: np.ndarray,
    static: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The line each miss would replace, and whether the policy admits it.

    The misses of a set take its lines from the lowest keep value up, most
    valuable miss first; score-based policies admit a miss only when it ranks
    above its victim, and no policy replaces a line ranked ``_USED``.

    Args:
      spec: eviction policy.
      tags: [S, W] the cache's tags (-1: empty line).
      last_use: [S, W] step of last use of each line.
      clock: [S] round-robin pointer of each set.
      miss_ids: [K] int64 ids of the misses that may be inserted (K >= 1).
      miss_sets: [K] int64 their sets.
      step: current step t.
      next_use: [N] int32 next use of every node.
      static: [N] uint8 static scores.

    Returns:
      ``(ok [K] bool, way [K])``: the miss is inserted, and the way it takes.
    """
    ways = tags.shape[1]
    k = miss_ids.size
    uset, inv = np.unique(miss_sets, return_inverse=True)
    lines = tags[uset].astype(np.int64)  # [Su, W]
    safe = np.maximum(lines, 0)
    rr_rank = (np.arange(ways)[None, :] - clock[uset][:, None]) % ways
    line_keep = keep_values(
        spec, lines, last_use[uset], next_use[safe], static[safe], step, rr_rank
    )
    if spec.pin_hits:
        used = last_use[uset] == step
        line_keep = np.where(used & (lines >= 0), _USED, line_keep)
    in_keep = keep_values(
        spec,
        miss_ids,
        np.full(k, step),
        next_use[miss_ids],
        static[miss_ids],
        step,
        np.full(k, ways),
    )
    rank = _rank_in_group(inv, in_keep, uset.size)
    victim_order = np.argsort(line_keep, axis=1, kind="stable")  # [Su, W]
    ok = rank < ways
    vway = victim_order[inv, np.minimum(rank, ways - 1)]
    vkeep = line_keep[inv, vway]
    ok &= vkeep < _USED
    if spec.name not in ("rr", "lru"):
        ok &= in_keep > vkeep
    return ok, vway


def plan_step(
    meta: dict[str, np.ndarray],
    cache: int,
    ids: np.ndarray,
    step: int,
    spec: PolicySpec,
    *,
    next_use: np.ndarray,
    static: np.ndarray,
    set_div: int,
    admit: np.ndarray | None = None,
) -> Plan:
    """Looks up ``ids`` in cache ``cache`` and plans the insertion of misses.

    Updates ``meta`` in place (tags, last use, clock) to the state after the
    step. ``next_use`` must already hold the next use of ``ids`` after
    ``step`` (and of every resident line).

    Args:
      meta: metadata from :func:`new_meta`.
      cache: which cache (device).
      ids: [M] distinct requested ids.
      step: current step t.
      spec: eviction policy.
      next_use: [N] int32 next use of every node for this cache's stream.
      static: [N] uint8 static scores.
      set_div: 1 (independent caches) or the device count (shared cache).
      admit: [M] bool, misses that may be inserted (default: all).

    Returns:
      The :class:`Plan`.
    """
    ids = np.asarray(ids, np.int64)
    tags, last_use, clock = (
        meta["tags"][cache],
        meta["last_use"][cache],
        meta["clock"][cache],
    )
    num_sets, ways = tags.shape
    m = ids.size
    sets = set_of(ids, num_sets, set_div)
    match = tags[sets] == ids[:, None]
    hit = match.any(axis=1)
    way = np.where(hit, match.argmax(axis=1), -1).astype(np.int32)
    last_use[sets[hit], way[hit]] = step
    insert_way = np.full(m, -1, np.int32)
    evicted = np.full(m, -1, np.int32)
    miss = np.flatnonzero(~hit if admit is None else (~hit & admit))
    if miss.size == 0 or ways == 0:
        return Plan(hit, way, insert_way, evicted)

    ok, vway = _choose_victims(
        spec,
        tags,
        last_use,
        clock,
        ids[miss],
        sets[miss],
        step,
        next_use=next_use,
        static=static,
    )
    sel = miss[ok]
    s_sel, w_sel = sets[sel], vway[ok]
    insert_way[sel] = w_sel
    evicted[sel] = tags[s_sel, w_sel]
    tags[s_sel, w_sel] = ids[sel]
    last_use[s_sel, w_sel] = step
    np.add.at(clock, s_sel, 1)
    clock %= max(ways, 1)
    return Plan(hit, way, insert_way, evicted)


def duplication_ratio(meta: dict[str, np.ndarray]) -> float:
    """Resident lines over distinct resident ids (1 = no id cached twice)."""
    tags = meta["tags"]
    valid = tags[tags >= 0]
    if valid.size == 0:
        return 1.0
    return float(valid.size / np.unique(valid).size)


def belady(
    requests: list[np.ndarray], capacity: int, num_nodes: int
) -> list[np.ndarray]:
    """Unconstrained Belady (MIN) over steps of distinct requests.

    One fully associative store of ``capacity`` rows, full future knowledge.
    At step t the requested ids that are resident hit; afterwards the store
    keeps the ``capacity`` ids of (resident | requested) with the nearest next
    use (ids never used again are dropped). Hit rows are read before the
    store changes, so an id hit at t may leave at t. This minimises the number
    of misses, i.e. of distinct rows read from storage, over every
    demand-filled store of that capacity (the step-wise form of Belady's
    exchange argument: rows with the same next use are interchangeable).

    Args:
      requests: per step t, [M_t] distinct int ids in ``[0, num_nodes)``.
      capacity: rows the store holds.
      num_nodes: id range.

    Returns:
      per step t, [M_t] bool: the id was resident (a hit).
    """
    from jaxsuite.gnn.sampler import next_occurrence

    nxt = next_occurrence(requests)
    next_use = np.full(num_nodes, NO_REUSE, np.int64)
    resident = np.zeros(num_nodes, bool)
    held = np.zeros(0, np.int64)
    hits = []
    for t, ids in enumerate(requests):
        ids = np.asarray(ids, np.int64)
        hits.append(resident[ids].copy())
        next_use[ids] = nxt[t]
        cand = np.union1d(held, ids)
        cand = cand[next_use[cand] != NO_REUSE]
        if cand.size > capacity:
            keep = np.argpartition(next_use[cand], max(capacity - 1, 0))
            cand = cand[keep[:capacity]]
        resident[held] = False
        resident[cand] = True
        held = cand
    return hits
