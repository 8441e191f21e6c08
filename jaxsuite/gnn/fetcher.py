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
)


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
    """

    mode: str
    policy: cache_lib.PolicySpec | None = None
    num_sets: int = 64
    ways: int = 16
    victim: bool = False
    ring_slots: int = 16
    ring_depth: int = 256

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

    def _plan_cache(self, state, c, ids, step, stage_ids, counts):
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
        before = self.store.pages_read
        fill_rows = self.store.read(ids[from_storage])
        counts["storage_pages"] += self.store.pages_read - before
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
          step; the others: amounts of this step).
        """
        n, dim, u_len = self.n, self.store.dim, self.input_len
        counts = dict.fromkeys(COUNTERS, 0.0)
        stage_ids, stage_rows = self._prefetch(state, step, counts)
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
            self._plan_cache(state, c, cache_ids[c], step, stage_ids, counts)
            for c in range(n)
        ]
        f_len = self._size("fill", max(p[4].shape[0] for p in plans), 256)
        e_len = self._size("evict", max(p[5].shape[0] for p in plans), 64)
        fill_rows = np.zeros((n, f_len, dim), np.float32)
        evict_set = np.full((n, e_len), -1, np.int32)
        evict_way = np.full((n, e_len), -1, np.int32)
        for c, p in enumerate(plans):
            fill_rows[c, : p[4].shape[0]] = p[4]
            evict_set[c, : p[5].shape[0]] = p[5][:, 0]
            evict_way[c, : p[5].shape[0]] = p[5][:, 1]
        sent = np.zeros(n)
        if self.shared:
            owner = [r % n for r in reqs]
            cap = self._size(
                "cap", max(int((o == k).sum()) for o in owner for k in range(n)), 64
            )
            out_req = np.full((n, n, cap), -1, np.int32)
            out_pos = np.full((n, n, cap), u_len, np.int32)
            fill_idx = np.full((n, n * cap), -1, np.int32)
            insert_way = np.full((n, n * cap), -1, np.int32)
            host_hit = np.zeros((n, n * cap), bool)
            host_vhit = np.zeros((n, n * cap), bool)
            for s in range(n):
                for o in range(n):
                    sel = np.flatnonzero(owner[s] == o)
                    k, ids = sel.size, reqs[s][sel]
                    plan, staged, storage, fmap, _, _ = plans[o]
                    idx = np.searchsorted(cache_ids[o], ids)
                    out_req[s, o, :k] = ids
                    out_pos[s, o, :k] = sel
                    lo = s * cap
                    fill_idx[o, lo : lo + k] = fmap[idx]
                    insert_way[o, lo : lo + k] = plan.insert_way[idx]
                    host_hit[o, lo : lo + k] = plan.hit[idx]
                    host_vhit[o, lo : lo + k] = staged[idx]
                    nhit = int(plan.hit[idx].sum())
                    counts["local" if s == o else "remote"] += nhit
                    counts["victim"] += int(staged[idx].sum())
                    counts["storage"] += int(storage[idx].sum())
                    if s != o:
                        sent[s] += 4 * k
                        sent[o] += self.store.row_bytes * k
            inp = exchange.ServeInputs(
                fill_idx,
                fill_rows,
                stage_ids,
                stage_rows,
                insert_way,
                evict_set,
                evict_way,
            )
            args = (out_req, out_pos, inp)
        else:
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
            inp = exchange.ServeInputs(
                fill_idx,
                fill_rows,
                stage_ids,
                stage_rows,
                insert_way,
                evict_set,
                evict_way,
            )
            args = (batch.inputs, inp)
        args = put_global(args, self.sharding)
        feats, rows, tags, evicted, dev_hit, dev_vhit = self._fetch(
            state["rows"], state["tags"], *args
        )
        state["rows"], state["tags"] = rows, tags
        dev_hit, dev_vhit, evicted = devices.to_host((dev_hit, dev_vhit, evicted))
        counts["mismatch"] = float(
            (dev_hit != host_hit).sum() + (dev_vhit != host_vhit).sum()
        )
        counts["link_bytes"] = float(sent.sum())
        counts["link_bytes_max"] = float(sent.max(initial=0.0))
        if self.cfg.victim:
            self._to_ring(state, plans, evicted, counts)
            counts["ring_rows"] = float(state["ring_count"].sum())
        return state, feats, counts

    def _to_ring(self, state, plans, evicted: np.ndarray, counts) -> None:
        """Appends evicted lines with a known next use to ring slot ``use % B``."""
        b, depth = self.cfg.ring_slots, self.stage_len
        for c, p in enumerate(plans):
            ev = p[5]
            if ev.shape[0] == 0:
                continue
            slots = ev[:, 3] % b
            order = np.argsort(slots, kind="stable")
            first = np.searchsorted(slots[order], slots[order], side="left")
            rank = np.empty(slots.size, np.int64)
            rank[order] = np.arange(slots.size) - first
            pos = state["ring_count"][c, slots] + rank
            ok = pos < depth
            counts["victim_dropped"] += float((~ok).sum())
            e, sl, ps = np.flatnonzero(ok), slots[ok], pos[ok]
            state["ring_ids"][c, sl, ps] = ev[ok, 2]
            state["ring_step"][c, sl, ps] = ev[ok, 3]
            state["ring_rows"][c, sl, ps] = evicted[c, e]
            np.add.at(state["ring_count"][c], sl, 1)
            state["ring_count"][c] = np.minimum(state["ring_count"][c], depth)
