"""The feature path of one training step: victim prefetch, caches, storage, exchange.

:class:`FeatureFetcher` turns a :class:`~jaxsuite.gnn.sampler.Batch` into the
features of every device's input nodes, ``[n_dev, U, D]`` on the mesh, under
one of three modes:

* ``none``: every device reads all its rows from storage (direct I/O);
* ``independent``: a private cache per device (ids may be cached on several
  devices), no exchange;
* ``shared``: one cache spread over the devices, owner ``id % n_dev``,
  requests and rows exchanged with ``all_to_all`` (``exchange``).

Before step t the *preemptive victim-buffer prefetcher* moves ring slot
``t % B`` of every cache (lines evicted earlier whose next use is step t) to
the device; the victim buffer is a host ring ``[n_dev, B, depth, D]`` filled
with the rows the devices copy out when they evict a line whose next use is
known (within the look-ahead window).

All mutable state is a dict of arrays (``init_state``), so a run can be
checkpointed; each step returns counters for the hit-rate split and the cost
model. The host plans hits and victims (``cache.plan_step``); the devices do
their own tag lookup and the step counts any disagreement in ``mismatch``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxsuite.core import devices
from jaxsuite.gnn import cache as cache_lib
from jaxsuite.gnn import exchange
from jaxsuite.gnn.sampler import NO_REUSE, Batch
from jaxsuite.gnn.storage import FeatureStore

MODES = ("none", "independent", "shared")
COUNTERS = (
    "requests",
    "local",
    "remote",
    "victim",
    "storage",
    "storage_pages",
    "storage_rows",
    "link_bytes",
    "link_bytes_max",
    "h2d_bytes",
    "h2d_bytes_max",
    "victim_dropped",
    "ring_rows",
    "mismatch",
    # Measured wall time of the stages of a step (seconds).
    "t_prefetch",
    "t_plan",
    "t_storage",
    "t_exchange",
    "t_ring",
)
STAGES = ("t_prefetch", "t_plan", "t_storage", "t_exchange", "t_ring")


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """How features are fetched.

    Attributes:
      mode: ``none``, ``independent`` or ``shared``.
      policy: eviction policy (ignored for ``none``).
      num_sets: sets per device cache.
      ways: ways per set (lines per device = ``num_sets * ways``).
      victim: keep a victim buffer and prefetch it.
      ring_slots: B, slots of the victim ring (must exceed the window).
      ring_depth: lines per slot and cache.
      ring_capacity: most rows the ring holds per cache at any time (0: no
        limit beyond ``ring_slots * ring_depth``). With a capacity the ring's
        rows can be counted against the cache budget.
    """

    mode: str
    policy: cache_lib.PolicySpec | None = None
    num_sets: int = 64
    ways: int = 16
    victim: bool = False
    ring_slots: int = 16
    ring_depth: int = 256
    ring_capacity: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid: {MODES}")
        if self.mode != "none" and self.policy is None:
            raise ValueError(f"mode {self.mode!r} needs a policy")
        if self.victim and self.policy.window >= self.ring_slots:
            raise ValueError("the victim ring needs more slots than the window")


def put_global(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Places host arrays (the same on every process) as global sharded arrays.

    Each process supplies only the shards its devices hold, so this works
    across processes as well as on one.
    """

    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(one, tree)


def _bucket(x: int, q: int) -> int:
    """Smallest ``q * 2**k >= x``: few distinct shapes, so few recompilations."""
    size = q
    while size < x:
        size *= 2
    return size


class ReuseSchedule:
    """Next use of every requested id at every step, per stream.

    A stream is what one cache sees: all devices' requests for the shared
    cache (one stream), each device's own requests for independent caches.

    Args:
      inputs: per global step, the batch's ``(inputs [n, U], num_inputs [n])``.
      shared: one stream (union of devices) instead of one per device.
    """

    def __init__(self, inputs: Sequence[tuple[np.ndarray, np.ndarray]], shared: bool):
        from jaxsuite.gnn.sampler import next_occurrence

        n = inputs[0][0].shape[0]
        self.num_streams = 1 if shared else n
        self.ids: list[list[np.ndarray]] = []
        self.next: list[list[np.ndarray]] = []
        for s in range(self.num_streams):
            if shared:
                reqs = [np.unique(x[x >= 0]) for x, _ in inputs]
            else:
                reqs = [x[s, : k[s]].astype(np.int64) for x, k in inputs]
            self.ids.append(reqs)
            self.next.append(next_occurrence(reqs))

    def apply(self, next_use: np.ndarray, step: int) -> None:
        """Writes step ``step``'s next uses into ``next_use`` [streams, N]."""
        for s in range(self.num_streams):
            next_use[s, self.ids[s][step]] = self.next[s][step]


class FeatureFetcher:
    """Fetches batch features through caches; see the module docstring.

    Args:
      cfg: the fetch configuration.
      mesh: 1-D mesh over the devices.
      axis: its axis name.
      store: the feature store (storage reads are counted there).
      static: [N] uint8 static scores (reverse PageRank or hotness).
      reuse: next-use schedule matching ``cfg.mode`` (None for ``none``).
      input_len: U, padded input list length of a batch.
    """

    def __init__(
        self,
        cfg: FetchConfig,
        mesh: jax.sharding.Mesh,
        axis: str,
        store: FeatureStore,
        static: np.ndarray,
        reuse: ReuseSchedule | None,
        input_len: int,
    ):
        self.cfg = cfg
        self.mesh = mesh
        self.n = mesh.shape[axis]
        self.store = store
        self.static = np.asarray(static, np.uint8)
        self.reuse = reuse
        self.input_len = input_len
        self.sharding = jax.sharding.NamedSharding(mesh, jax.P(axis))
        self.shared = cfg.mode == "shared"
        self.set_div = self.n if self.shared else 1
        if self.shared:
            self._fetch = exchange.make_shared_fetch(mesh, axis, input_len)
        else:
            self._fetch = exchange.make_independent_fetch(mesh, axis)
        self._sizes: dict[str, int] = {}
        # Without a victim buffer the ring and the staging area are stubs.
        self.stage_len = cfg.ring_depth if cfg.victim else 1
        self.num_sets = cfg.num_sets if cfg.mode != "none" else 1
        self.ways = cfg.ways if cfg.mode != "none" else 1

    def _size(self, name: str, needed: int, quantum: int) -> int:
        """Padded length for ``needed`` rows: a power-of-two bucket that never
        shrinks, so the device functions compile a few times, early on."""
        size = self._sizes.get(name, 0)
        if needed > size:  # grow with headroom: late recompilations are rare
            size = _bucket(needed + needed // 2, quantum)
            self._sizes[name] = size
        return size

    def init_state(self) -> dict[str, Any]:
        """Empty caches, ring and next-use table."""
        n, s, w, d = self.n, self.num_sets, self.ways, self.store.dim
        b, depth = self.cfg.ring_slots, self.stage_len
        streams = self.reuse.num_streams if self.reuse is not None else 1
        meta = cache_lib.new_meta(n, s, w)
        return {
            "rows": put_global(np.zeros((n, s, w, d), np.float32), self.sharding),
            "tags": put_global(meta["tags"].copy(), self.sharding),
            "meta": meta,
            "next_use": np.full((streams, self.store.num_nodes), NO_REUSE, np.int32),
            "ring_ids": np.full((n, b, depth), -1, np.int32),
            "ring_step": np.full((n, b, depth), -1, np.int32),
            "ring_rows": np.zeros((n, b, depth, d), np.float32),
            "ring_count": np.zeros((n, b), np.int32),
        }

    def _prefetch(self, state: dict[str, Any], step: int, counts: dict[str, float]):
        """Takes ring slot ``step % B`` of every cache: staging ids [n, V], rows."""
        n, depth, d = self.n, self.stage_len, self.store.dim
        stage_ids = np.full((n, depth), -1, np.int32)
        stage_rows = np.zeros((n, depth, d), np.float32)
        if self.cfg.victim:
            slot = step % self.cfg.ring_slots
            for c in range(n):
                k = state["ring_count"][c, slot]
                ok = state["ring_step"][c, slot, :k] == step
                m = int(ok.sum())
                ids = state["ring_ids"][c, slot, :k][ok]
                order = np.argsort(ids)
                # Sorted after the -1 padding: the device binary-searches them.
                stage_ids[c, depth - m :] = ids[order]
                stage_rows[c, depth - m :] = state["ring_rows"][c, slot, :k][ok][order]
                counts["h2d_bytes"] += m * self.store.row_bytes
                counts["h2d_bytes_max"] = max(
                    counts["h2d_bytes_max"], m * self.store.row_bytes
                )
            state["ring_count"][:, slot] = 0
            state["ring_ids"][:, slot] = -1
            state["ring_step"][:, slot] = -1
        return stage_ids, stage_rows

    def _plan_cache(self, state, c, ids, step, stage_ids, counts, clock):
        """Plans cache ``c``: hits, victim hits, storage reads, ring evictions."""
        stream = 0 if self.shared or self.reuse is None else c
        next_use = state["next_use"][stream]
        if self.cfg.mode == "none":
            plan = cache_lib.Plan(
                np.zeros(ids.size, bool),
                np.full(ids.size, -1, np.int32),
                np.full(ids.size, -1, np.int32),
                np.full(ids.size, -1, np.int32),
            )
        else:
            plan = cache_lib.plan_step(
                state["meta"],
                c,
                ids,
                step,
                self.cfg.policy,
                next_use=next_use,
                static=self.static,
                set_div=self.set_div,
            )
        staged = np.isin(ids, stage_ids[c][stage_ids[c] >= 0]) & ~plan.hit
        from_storage = ~plan.hit & ~staged
        fill_map = np.full(ids.size, -1, np.int32)
        fill_map[from_storage] = np.arange(int(from_storage.sum()))
        clock.lap("t_plan")
        before = self.store.pages_read
        fill_rows = self.store.read(ids[from_storage])
        counts["storage_pages"] += self.store.pages_read - before
        clock.lap("t_storage")
        counts["storage_rows"] += int(from_storage.sum())
        evictions = np.zeros((0, 4), np.int64)
        if self.cfg.victim:
            ev = np.flatnonzero(plan.evicted >= 0)
            victims = plan.evicted[ev]
            nxt = next_use[victims].astype(np.int64)
            known = (nxt != NO_REUSE) & (nxt > step)
            known &= nxt - step <= self.cfg.policy.window
            ev, victims, nxt = ev[known], victims[known], nxt[known]
            sets = cache_lib.set_of(victims, self.num_sets, self.set_div)
            evictions = np.stack([sets, plan.insert_way[ev], victims, nxt], axis=1)
        return plan, staged, from_storage, fill_map, fill_rows, evictions

    def step(
        self, state: dict[str, Any], step: int, batch: Batch
    ) -> tuple[dict[str, Any], jax.Array, dict[str, float]]:
        """Fetches ``batch``'s features at global step ``step``.

        Returns:
          ``(state, features [n, U, D] sharded, counters)`` with the keys of
          ``COUNTERS`` (``ring_rows``: rows held in the victim ring after the
          step; ``t_*``: measured seconds of each stage; the others: amounts
          of this step).
        """
        n = self.n
        counts = dict.fromkeys(COUNTERS, 0.0)
        clock = _Clock(counts)
        stage_ids, stage_rows = self._prefetch(state, step, counts)
        clock.lap("t_prefetch")
        if self.reuse is not None:
            self.reuse.apply(state["next_use"], step)
        reqs = [
            batch.inputs[d, : batch.num_inputs[d]].astype(np.int64) for d in range(n)
        ]
        counts["requests"] = float(sum(r.size for r in reqs))
        if self.shared:
            allu = np.unique(np.concatenate(reqs))
            cache_ids = [allu[allu % n == o] for o in range(n)]
        else:
            cache_ids = reqs
        plans = [
            self._plan_cache(state, c, cache_ids[c], step, stage_ids, counts, clock)
            for c in range(n)
        ]
        fill_rows, evict_set, evict_way = self._pad_plans(plans)
        if self.shared:
            args, host_hit, host_vhit, sent = self._pack_shared(
                reqs, allu, plans, counts
            )
        else:
            args, host_hit, host_vhit, sent = self._pack_independent(
                batch, reqs, plans, counts
            )
        inp = exchange.ServeInputs(
            args[-2], fill_rows, stage_ids, stage_rows, args[-1], evict_set, evict_way
        )
        args = put_global((*args[:-2], inp), self.sharding)
        clock.lap("t_plan")
        feats, rows, tags, evicted, dev_hit, dev_vhit = self._fetch(
            state["rows"], state["tags"], *args
        )
        state["rows"], state["tags"] = rows, tags
        dev_hit, dev_vhit, evicted = devices.to_host((dev_hit, dev_vhit, evicted))
        clock.lap("t_exchange")
        counts["mismatch"] = float(
            (dev_hit != host_hit).sum() + (dev_vhit != host_vhit).sum()
        )
        counts["link_bytes"] = float(sent.sum())
        counts["link_bytes_max"] = float(sent.max(initial=0.0))
        if self.cfg.victim:
            self._to_ring(state, plans, evicted, counts)
            counts["ring_rows"] = float(state["ring_count"].sum())
        clock.lap("t_ring")
        return state, feats, counts

    def _pad_plans(self, plans):
        """The caches' storage rows and ring evictions, padded to one shape.

        Returns ``(fill_rows [n, F, D], evict_set [n, E], evict_way [n, E])``
        (-1 padded), ``F`` and ``E`` from :meth:`_size`.
        """
        n, dim = self.n, self.store.dim
        f_len = self._size("fill", max(p[4].shape[0] for p in plans), 256)
        e_len = self._size("evict", max(p[5].shape[0] for p in plans), 64)
        fill_rows = np.zeros((n, f_len, dim), np.float32)
        evict_set = np.full((n, e_len), -1, np.int32)
        evict_way = np.full((n, e_len), -1, np.int32)
        for c, p in enumerate(plans):
            fill_rows[c, : p[4].shape[0]] = p[4]
            evict_set[c, : p[5].shape[0]] = p[5][:, 0]
            evict_way[c, : p[5].shape[0]] = p[5][:, 1]
        return fill_rows, evict_set, evict_way

    def _pack_independent(self, batch, reqs, plans, counts):
        """Every device's own plan in its request order (no exchange).

        Returns ``((inputs, fill_idx, insert_way), host_hit, host_vhit,
        sent)``: the batch's inputs [n, U], the plans [n, U] (-1 padded),
        the host's hits and victim hits [n, U], and zero bytes sent [n].
        """
        n, u_len = self.n, self.input_len
        sent = np.zeros(n)
        fill_idx = np.full((n, u_len), -1, np.int32)
        insert_way = np.full((n, u_len), -1, np.int32)
        host_hit = np.zeros((n, u_len), bool)
        host_vhit = np.zeros((n, u_len), bool)
        for d, (plan, staged, storage, fmap, _, _) in enumerate(plans):
            k = reqs[d].size
            fill_idx[d, :k] = fmap
            insert_way[d, :k] = plan.insert_way
            host_hit[d, :k] = plan.hit
            host_vhit[d, :k] = staged
            counts["local"] += int(plan.hit.sum())
            counts["victim"] += int(staged.sum())
            counts["storage"] += int(storage.sum())
        return (batch.inputs, fill_idx, insert_way), host_hit, host_vhit, sent

    def _pack_shared(self, reqs, allu, plans, counts):
        """Buckets every device's requests by owner (vectorised over devices).

        Returns ``((out_req, out_pos, fill_idx, insert_way), host_hit,
        host_vhit, sent)``: requests [n, n, cap] and positions by source and
        owner, the owners' plans in owner layout [n, n * cap], and the bytes
        each device sends.
        """
        n, u_len = self.n, self.input_len
        sizes = np.array([r.size for r in reqs])
        src = np.repeat(np.arange(n), sizes)
        pos = np.concatenate([np.arange(k) for k in sizes])
        ids = np.concatenate(reqs)
        own = ids % n
        group = src * n + own
        order = np.argsort(group, kind="stable")
        per_group = np.bincount(group, minlength=n * n)
        first = np.concatenate([[0], np.cumsum(per_group)[:-1]])
        j = np.empty(ids.size, np.int64)
        j[order] = np.arange(ids.size) - first[group[order]]
        cap = self._size("cap", int(per_group.max(initial=1)), 64)
        # Every owner's plan in the order of ``allu`` (all distinct ids).
        m = allu.size
        hit_u, staged_u, storage_u = (np.zeros(m, bool) for _ in range(3))
        fmap_u, insert_u = np.full(m, -1, np.int32), np.full(m, -1, np.int32)
        for o, (plan, staged, storage, fmap, _, _) in enumerate(plans):
            at = np.flatnonzero(allu % n == o)
            hit_u[at], staged_u[at], storage_u[at] = plan.hit, staged, storage
            fmap_u[at], insert_u[at] = fmap, plan.insert_way
        g = np.searchsorted(allu, ids)
        out_req = np.full((n, n, cap), -1, np.int32)
        out_pos = np.full((n, n, cap), u_len, np.int32)
        out_req[src, own, j] = ids
        out_pos[src, own, j] = pos
        slot = src * cap + j
        fill_idx = np.full((n, n * cap), -1, np.int32)
        insert_way = np.full((n, n * cap), -1, np.int32)
        host_hit = np.zeros((n, n * cap), bool)
        host_vhit = np.zeros((n, n * cap), bool)
        fill_idx[own, slot] = fmap_u[g]
        insert_way[own, slot] = insert_u[g]
        host_hit[own, slot] = hit_u[g]
        host_vhit[own, slot] = staged_u[g]
        local = src == own
        counts["local"] += int((hit_u[g] & local).sum())
        counts["remote"] += int((hit_u[g] & ~local).sum())
        counts["victim"] += int(staged_u[g].sum())
        counts["storage"] += int(storage_u[g].sum())
        sent = np.bincount(src[~local], minlength=n) * 4.0
        sent += np.bincount(own[~local], minlength=n) * float(self.store.row_bytes)
        return (out_req, out_pos, fill_idx, insert_way), host_hit, host_vhit, sent

    def _to_ring(self, state, plans, evicted: np.ndarray, counts) -> None:
        """Appends evicted lines with a known next use to ring slot ``use % B``.

        A slot takes at most ``ring_depth`` lines and, with ``ring_capacity``,
        the ring at most that many lines per cache: the victims with the
        nearest next use go first.
        """
        b, depth = self.cfg.ring_slots, self.stage_len
        cap = self.cfg.ring_capacity or b * depth
        for c, p in enumerate(plans):
            ev = p[5]
            if ev.shape[0] == 0:
                continue
            room = max(cap - int(state["ring_count"][c].sum()), 0)
            idx = np.sort(np.argsort(ev[:, 3], kind="stable")[:room])
            sl = ev[idx, 3] % b
            order = np.argsort(sl, kind="stable")
            first = np.searchsorted(sl[order], sl[order], side="left")
            rank = np.empty(sl.size, np.int64)
            rank[order] = np.arange(sl.size) - first
            pos = state["ring_count"][c, sl] + rank
            ok = pos < depth
            idx, sl, ps = idx[ok], sl[ok], pos[ok]
            counts["victim_dropped"] += float(ev.shape[0] - idx.size)
            state["ring_ids"][c, sl, ps] = ev[idx, 2]
            state["ring_step"][c, sl, ps] = ev[idx, 3]
            state["ring_rows"][c, sl, ps] = evicted[c, idx]
            np.add.at(state["ring_count"][c], sl, 1)


class _Clock:
    """Adds the wall time since the previous lap to ``counts[key]``."""

    def __init__(self, counts: dict[str, float]):
        self.counts = counts
        self.t = time.perf_counter()

    def lap(self, key: str) -> None:
        now = time.perf_counter()
        self.counts[key] += now - self.t
        self.t = now
