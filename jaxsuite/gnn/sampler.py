"""Deterministic neighbour sampling into padded fixed-shape blocks, with look-ahead.

A global mini-batch of ``devices * batch_per_device`` training seeds is split
over the devices; each device samples its own fixed-fanout tree with
replacement (``indptr[v] + floor(u * deg(v))``): hop ``k`` has shape
``[B, f1, ..., fk]``. A node without neighbours samples itself with a false
mask. Every device then lists the distinct node ids of its tree (the rows
whose features it must fetch), padded with -1 to a fixed length, plus the
position of every tree node in that list.

Randomness is a pure function of ``(seed, epoch, step, device)`` through
``np.random.SeedSequence``, so any step can be re-drawn (look-ahead,
resumption). :class:`LookaheadSampler` keeps the next ``window`` batches in a
deque; :func:`next_occurrence` gives, for every requested id, the next step
that requests it again (the dynamic information of the eviction policies).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from jaxsuite.gnn.graph import Graph

NO_REUSE = np.iinfo(np.int32).max


class Batch(NamedTuple):
    """One global mini-batch, leading axis = device.

    Attributes:
      seeds: [n_dev, B] int32 seed nodes.
      labels: [n_dev, B] int32 their labels.
      hops: per layer k, [n_dev, B, f1, ..., fk] int32 sampled neighbours.
      masks: like ``hops``, bool: the neighbour exists (False = padding).
      inputs: [n_dev, U] int32 distinct ids of each device's tree, -1 padded.
      num_inputs: [n_dev] int32 number of valid entries of ``inputs``.
      positions: ``(seeds, *hops)`` as positions into ``inputs`` (int32).
    """

    seeds: np.ndarray
    labels: np.ndarray
    hops: tuple
    masks: tuple
    inputs: np.ndarray
    num_inputs: np.ndarray
    positions: tuple


def max_inputs(batch_per_device: int, fanouts: Sequence[int]) -> int:
    """Tree size ``B * (1 + f1 + f1 f2 + ...)``: the padded input length U."""
    total, width = batch_per_device, batch_per_device
    for f in fanouts:
        width *= f
        total += width
    return total


def sample_tree(
    graph: Graph, seeds: np.ndarray, fanouts: Sequence[int], rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Samples hops ``[B, f1, ..., fk]`` with replacement; returns (hops, masks)."""
    hops, masks = [], []
    frontier = np.asarray(seeds, np.int64)
    for f in fanouts:
        start = graph.indptr[frontier]
        deg = graph.indptr[frontier + 1] - start
        u = rng.random(frontier.shape + (f,))
        offset = np.floor(u * deg[..., None]).astype(np.int64)
        has = np.broadcast_to(deg[..., None] > 0, offset.shape)
        idx = np.where(has, start[..., None] + offset, 0)
        nbr = np.where(has, graph.indices[idx], frontier[..., None])
        hops.append(nbr.astype(np.int32))
        masks.append(np.array(has))
        frontier = nbr
    return hops, masks


class NodeSampler:
    """Pure ``(epoch, step) -> Batch`` sampler over the training nodes.

    Args:
      graph: CSR graph.
      train_ids: [T] training node ids.
      fanouts: neighbours per layer, e.g. ``(10, 5)``.
      batch_per_device: seeds per device per step.
      num_devices: devices sharing a global batch.
      seed: base seed.
    """

    def __init__(
        self,
        graph: Graph,
        train_ids: np.ndarray,
        fanouts: Sequence[int],
        batch_per_device: int,
        num_devices: int,
        seed: int,
    ):
        self.graph = graph
        self.train_ids = np.asarray(train_ids, np.int64)
        self.fanouts = tuple(int(f) for f in fanouts)
        self.batch_per_device = int(batch_per_device)
        self.num_devices = int(num_devices)
        self.seed = int(seed)
        self.global_batch = self.batch_per_device * self.num_devices
        self.steps_per_epoch = self.train_ids.size // self.global_batch
        if self.steps_per_epoch < 1:
            raise ValueError("fewer training nodes than one global batch")
        self.input_len = max_inputs(self.batch_per_device, self.fanouts)
        self._perm_cache: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, epoch]))
            self._perm_cache = {epoch: rng.permutation(self.train_ids)}
        return self._perm_cache[epoch]

    def batch(self, epoch: int, step: int) -> Batch:
        """The batch of ``step`` (0-based, within ``epoch``); deterministic."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} not in [0, {self.steps_per_epoch})")
        g = self.global_batch
        seeds = self._perm(epoch)[step * g : (step + 1) * g]
        seeds = seeds.reshape(self.num_devices, self.batch_per_device)
        per_dev = []
        for d in range(self.num_devices):
            entropy = [self.seed, 2, epoch, step, d]
            rng = np.random.default_rng(np.random.SeedSequence(entropy))
            per_dev.append(sample_tree(self.graph, seeds[d], self.fanouts, rng))
        hops = tuple(
            np.stack([h[k] for h, _ in per_dev]) for k in range(len(self.fanouts))
        )
        masks = tuple(
            np.stack([m[k] for _, m in per_dev]) for k in range(len(self.fanouts))
        )
        inputs = np.full((self.num_devices, self.input_len), -1, np.int32)
        num_inputs = np.zeros(self.num_devices, np.int32)
        positions = [np.zeros(seeds.shape, np.int32)] + [
            np.zeros(h.shape, np.int32) for h in hops
        ]
        for d in range(self.num_devices):
            tree = [seeds[d].reshape(-1)] + [h[d].reshape(-1) for h in hops]
            flat = np.concatenate(tree)
            uniq, inv = np.unique(flat, return_inverse=True)
            inputs[d, : uniq.size] = uniq
            num_inputs[d] = uniq.size
            offset = 0
            for k, part in enumerate(tree):
                positions[k][d] = inv[offset : offset + part.size].reshape(
                    positions[k][d].shape
                )
                offset += part.size
        return Batch(
            seeds=seeds.astype(np.int32),
            labels=self.graph.labels[seeds].astype(np.int32),
            hops=hops,
            masks=masks,
            inputs=inputs,
            num_inputs=num_inputs,
            positions=tuple(positions),
        )

    def schedule(self, epochs: int) -> list[tuple[int, int]]:
        """``(epoch, step)`` pairs of a run of ``epochs`` epochs, in order."""
        return [(e, s) for e in range(epochs) for s in range(self.steps_per_epoch)]


def valid_inputs(batch: Batch, device: int) -> np.ndarray:
    """The distinct ids device ``device`` requests in ``batch`` ([M] int64)."""
    return batch.inputs[device, : batch.num_inputs[device]].astype(np.int64)


class LookaheadSampler:
    """Iterates a run's batches while holding the next ``window`` in a deque.

    Yields ``(global_step, batch, window_batches)`` where ``window_batches``
    are the batches of steps ``global_step + 1 .. global_step + window``
    (fewer at the end of the run).
    """

    def __init__(self, sampler: NodeSampler, epochs: int, window: int):
        self.sampler = sampler
        self.order = sampler.schedule(epochs)
        self.window = int(window)

    def __iter__(self) -> Iterator[tuple[int, Batch, list[Batch]]]:
        queue: collections.deque = collections.deque()
        ahead = 0
        for t in range(len(self.order)):
            while ahead < len(self.order) and ahead <= t + self.window:
                queue.append(self.sampler.batch(*self.order[ahead]))
                ahead += 1
            current = queue.popleft()
            yield t, current, list(queue)


def next_use_from_window(
    ids: np.ndarray, step: int, window: Sequence[np.ndarray]
) -> np.ndarray:
    """Next step (> ``step``) at which each id is requested, seen through a window.

    Args:
      ids: [M] ids.
      step: the current global step t.
      window: request id arrays of steps t + 1, t + 2, ...

    Returns:
      [M] int32: the first ``t + k`` whose request list holds the id, else
      ``NO_REUSE``.
    """
    out = np.full(ids.shape, NO_REUSE, np.int32)
    for k in range(len(window), 0, -1):
        hit = np.isin(ids, window[k - 1])
        out[hit] = step + k
    return out


def next_occurrence(requests: Sequence[np.ndarray]) -> list[np.ndarray]:
    """For each step's request ids, the next later step requesting the same id.

    Args:
      requests: per step t, [M_t] distinct ids.

    Returns:
      per step t, [M_t] int32 next step > t with the id, else ``NO_REUSE``.
    """
    sizes = [r.size for r in requests]
    ids = np.concatenate([np.asarray(r, np.int64) for r in requests])
    steps = np.repeat(np.arange(len(requests)), sizes)
    order = np.lexsort((steps, ids))
    nxt = np.full(ids.size, NO_REUSE, np.int64)
    same = ids[order][1:] == ids[order][:-1]
    nxt_sorted = np.where(same, steps[order][1:], NO_REUSE)
    nxt[order[:-1]] = nxt_sorted
    return [a.astype(np.int32) for a in np.split(nxt, np.cumsum(sizes)[:-1])]
