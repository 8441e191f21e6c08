"""Deletion rate: the closed form ``m L H_{m B'}`` and a Monte Carlo of the ledger rule.

Model: each request deletes from a slice drawn at random (uniformly over the
``m L`` slices unless ``probs`` says otherwise), with replacement (a slice
keeps its other samples). A hit on slice ``j`` of shard ``s`` truncates
every sequence of ``s`` to the prefix before ``j`` (the rule of
:func:`jaxsuite.unlearn.ledger.apply_deletion`), so a sequence is dropped
exactly when its first slice is hit, and a shard dies once each of its
``B'`` distinct first slices has been hit. Until every shard is dead this is
a coupon collector over ``m B'`` coupons, each drawn with probability
``1 / (m L)``, hence

    delta = E[requests until every shard is dead] = m L H_{m B'}

with ``H_n`` the ``n``-th harmonic number (``B' = 1`` for SISA's single
order, ``B' = min(B, L)`` for cyclic rotations).

:func:`simulate` runs the truncation rule itself on many random request
streams at once and reports the number of requests until the first shard
dies (the first request that forces a retraining) and until all are dead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def harmonic(n: int) -> float:
    """``H_n = 1 + 1/2 + ... + 1/n``."""
    return float(np.sum(1.0 / np.arange(1, n + 1)))


def distinct_first_slices(seqs: Sequence[Sequence[int]]) -> int:
    """``B'``: how many different slices start the sequences."""
    return len({int(s[0]) for s in seqs})


def closed_form_all_dead(num_shards: int, num_slices: int, b_prime: int) -> float:
    """Expected uniform requests until every shard is dead: ``m L H_{m B'}``."""
    return num_shards * num_slices * harmonic(num_shards * b_prime)


def positions(seqs: Sequence[Sequence[int]], num_slices: int) -> np.ndarray:
    """``pos[b, j]``: index of slice ``j`` in sequence ``b``; shape ``(B, L)``."""
    pos = np.zeros((len(seqs), num_slices), np.int64)
    for b, seq in enumerate(seqs):
        for i, j in enumerate(seq):
            pos[b, j] = i
    return pos


def simulate(
    seqs: Sequence[Sequence[int]],
    num_shards: int,
    num_slices: int,
    *,
    trials: int,
    seed: int = 0,
    probs: Sequence[float] | None = None,
    max_requests: int = 100_000,
) -> dict[str, np.ndarray]:
    """Monte Carlo of the truncation rule over ``trials`` random request streams.

    Every shard uses the sequences ``seqs``. Each request picks a shard
    uniformly and a slice from ``probs`` (uniform by default).

    Args:
      seqs: the slice sequences of each shard, ``B`` permutations of ``range(L)``.
      num_shards: ``m``.
      num_slices: ``L``.
      trials: number of independent streams.
      seed: numpy seed.
      probs: per-slice deletion probabilities (length ``L``), or None.
      max_requests: safety bound on a stream's length.

    Returns:
      ``{"first_death": (trials,), "all_dead": (trials,)}``: for each stream,
      the index (1-based) of the request that killed the first shard and the
      one that killed the last.
    """
    rng = np.random.default_rng(seed)
    pos = positions(seqs, num_slices)  # (B, L)
    p = None if probs is None else np.asarray(probs, np.float64) / np.sum(probs)
    lengths = np.full((trials, num_shards, len(seqs)), num_slices, np.int64)
    first = np.zeros(trials, np.int64)
    last = np.zeros(trials, np.int64)
    rows = np.arange(trials)
    for k in range(1, max_requests + 1):
        shard = rng.integers(0, num_shards, trials)
        slc = rng.choice(num_slices, size=trials, p=p)
        cut = pos[:, slc].T  # (trials, B)
        lengths[rows, shard] = np.minimum(lengths[rows, shard], cut)
        dead = np.all(lengths == 0, axis=2)  # (trials, m)
        first = np.where((first == 0) & dead.any(axis=1), k, first)
        last = np.where((last == 0) & dead.all(axis=1), k, last)
        if np.all(last > 0):
            return {"first_death": first, "all_dead": last}
    raise RuntimeError(f"some streams outlived {max_requests} requests")


def mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """Sample mean and its standard error."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))
