"""Slice sequences for S3T: cyclic rotations, bipartite matching, prior-aware BMS.

A shard's data is cut into ``L`` slices; a *sequence* is a permutation of
``range(L)`` giving the order in which the slices enter training (stage ``t``
trains on the first ``t`` slices of the sequence). A deletion in slice ``j``
truncates each sequence to the prefix before ``j``, so a shard keeps a model
as long as some sequence does not start with a deleted slice. Sequences with
many distinct first slices (and, deeper down, distinct prefixes) therefore
absorb more deletions.

* :func:`cyclic` grows a balanced tree of rotations: first the ``L``
  rotations of ``0..L-1`` (distinct first slices), then rotations of each
  sequence's suffix, level by level, spreading ``B`` as evenly as possible.
  With ``B = L!`` it enumerates every permutation.
* :func:`bms` (bipartite matching selection) starts from the ``L`` single
  slices and, position by position, assigns one new slice to every sequence by
  a maximum-weight matching between sequences and slices; every position then
  holds each slice exactly once, so the ``L`` sequences form a Latin square.
* :func:`prior_aware_bms` is the same matching with weights that use the
  slices' deletion probabilities ``P``: appending slice ``j`` to a sequence
  scores ``sum_n n (1 - C_n)^power``, with ``C_n`` the cumulative deletion
  probability of its first ``n`` slices, so slices that are rarely deleted
  move to the front.

Everything here is plain Python/numpy (no JAX).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

Sequences = list[tuple[int, ...]]


def _rotate(items: Sequence[int], k: int) -> tuple[int, ...]:
    """Right rotation by ``k``: ``(0, 1, 2), 1 -> (2, 0, 1)``."""
    k %= len(items)
    return tuple(items[len(items) - k :]) + tuple(items[: len(items) - k])


def _spread(total: int, parts: int, cap: int) -> list[int]:
    """``total`` split over ``parts`` as evenly as possible, each at most ``cap``."""
    base, extra = divmod(total, parts)
    counts = [base + (1 if i < extra else 0) for i in range(parts)]
    if max(counts) > cap:
        raise ValueError(f"cannot place {total} items in {parts} parts of {cap}")
    return counts


def cyclic(num_slices: int, budget: int) -> Sequences:
    """``budget`` distinct sequences of ``num_slices`` slices by cyclic rotation.

    Level 0 takes the rotations of ``0..L-1``; level ``n`` replaces each
    sequence by rotations of its suffix from position ``n``, giving each
    sequence an (almost) equal share of ``budget``, until there are
    ``budget`` sequences. The first ``min(budget, L)`` first slices are
    distinct and every first slice appears ``floor`` or ``ceil(budget / L)``
    times.

    Args:
      num_slices: ``L`` >= 1.
      budget: ``B``, 1 <= B <= L!.

    Returns:
      ``B`` tuples, each a permutation of ``range(L)``, sorted by their
      level-0 rotation.

    Raises:
      ValueError: ``budget`` outside ``[1, L!]``.
    """
    if num_slices < 1 or not 1 <= budget <= math.factorial(num_slices):
        raise ValueError(
            f"budget must be in [1, {num_slices}!] for L={num_slices}, got {budget}"
        )
    base = tuple(range(num_slices))
    # Each entry: (rotation index chosen at each level so far, sequence).
    level = [((k,), _rotate(base, -k)) for k in range(min(budget, num_slices))]
    depth = 1
    while len(level) < budget:
        # Each sequence becomes up to L - depth rotations of its suffix; the
        # extra children go round-robin over the subtrees (first slices first).
        cap = num_slices - depth
        counts = _spread(min(budget, len(level) * cap), len(level), cap)
        order = sorted(range(len(level)), key=lambda i: level[i][0][::-1])
        share = dict(zip(order, counts))
        level = [
            (rots + (r,), seq[:depth] + _rotate(seq[depth:], -r))
            for i, (rots, seq) in enumerate(level)
            for r in range(share[i])
        ]
        depth += 1
    return [seq for _, seq in level]


def _matching_round(seqs: list[list[int]], num_slices: int, score_fn) -> list[int]:
    """One column: a max-weight assignment of unused slices to sequences."""
    forbidden = -1e18
    weights = np.full((len(seqs), num_slices), forbidden)
    for i, seq in enumerate(seqs):
        for j in range(num_slices):
            if j not in seq:
                weights[i, j] = score_fn(seq + [j])
    rows, cols = linear_sum_assignment(weights, maximize=True)
    if np.any(weights[rows, cols] <= forbidden / 2):
        raise RuntimeError("no slice assignment completes every sequence")
    out = [0] * len(seqs)
    for r, c in zip(rows, cols):
        out[r] = int(c)
    return out


def prefix_score(probs: Sequence[float], power: float = 100.0) -> float:
    """``sum_n n * (1 - C_n)^power`` over a sequence's prefixes.

    ``probs`` are the deletion probabilities of the sequence's slices in order
    and ``C_n`` their cumulative sum over the first ``n``; the score rewards
    long prefixes that are unlikely to be hit.
    """
    cumulative = np.cumsum(np.asarray(probs, dtype=np.float64))
    n = np.arange(1, len(cumulative) + 1)
    return float(np.sum(n * np.clip(1.0 - cumulative, 0.0, None) ** power))


def prior_aware_bms(
    probs: Sequence[float], budget: int | None = None, *, power: float = 100.0
) -> Sequences:
    """Bipartite-matching sequences weighted by a deletion prior.

    Starts from the ``L`` sequences ``(0,), ..., (L-1,)`` and appends one slice
    to each per round by a maximum-weight assignment (Hungarian algorithm),
    the weight of appending ``j`` being :func:`prefix_score` of the extended
    prefix's probabilities. Each round uses every slice once, so the result is
    a Latin square; ``budget < L`` keeps the best ``budget`` sequences.

    Args:
      probs: per-slice deletion probabilities, length ``L``.
      budget: number of sequences (``<= L``; default ``L``).
      power: exponent of the score (the reference code uses 100).

    Returns:
      ``budget`` tuples, each a permutation of ``range(L)``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    num_slices = len(probs)
    budget = num_slices if budget is None else budget
    if not 1 <= budget <= num_slices:
        raise ValueError(f"bipartite matching makes 1..{num_slices} sequences")
    seqs = [[j] for j in range(num_slices)]
    for _ in range(num_slices - 1):
        cols = _matching_round(
            seqs, num_slices, lambda s: prefix_score(probs[s], power)
        )
        for seq, c in zip(seqs, cols):
            seq.append(c)
    out = [tuple(s) for s in seqs]
    if budget < num_slices:
        order = sorted(
            range(num_slices), key=lambda i: -prefix_score(probs[list(out[i])], power)
        )
        out = [out[i] for i in sorted(order[:budget])]
    return out


def bms(num_slices: int, budget: int | None = None) -> Sequences:
    """Bipartite-matching sequences under a uniform deletion prior (a Latin square).

    Args:
      num_slices: ``L``.
      budget: number of sequences, ``1..L`` (default ``L``).

    Returns:
      ``budget`` permutations of ``range(L)`` whose columns hold distinct slices.
    """
    return prior_aware_bms(np.full(num_slices, 1.0 / num_slices), budget)


def select(
    method: str,
    num_slices: int,
    budget: int,
    probs: Sequence[float] | None = None,
) -> Sequences:
    """Sequences by name: ``"cyclic"``, ``"bms"`` or ``"prior_bms"``.

    ``"identity"`` (SISA's single order ``0..L-1``) needs ``budget == 1``.
    """
    if method == "identity":
        if budget != 1:
            raise ValueError("the identity order is a single sequence")
        return [tuple(range(num_slices))]
    if method == "cyclic":
        return cyclic(num_slices, budget)
    if method == "bms":
        return bms(num_slices, budget)
    if method == "prior_bms":
        if probs is None:
            raise ValueError("prior_bms needs the slices' deletion probabilities")
        return prior_aware_bms(probs, budget)
    raise ValueError(f"unknown sequence method {method!r}")


def check_sequences(seqs: Sequences, num_slices: int) -> None:
    """Raises ``ValueError`` unless ``seqs`` are distinct permutations of range(L)."""
    if not seqs:
        raise ValueError("no sequences")
    for seq in seqs:
        if sorted(seq) != list(range(num_slices)):
            raise ValueError(f"{seq} is not a permutation of range({num_slices})")
    if len(set(seqs)) != len(seqs):
        raise ValueError("sequences repeat")


def prefixes(seqs: Sequences) -> list[tuple[int, ...]]:
    """Every distinct non-empty prefix of ``seqs``, shortest first (a trie)."""
    seen: dict[tuple[int, ...], None] = {}
    for t in range(1, max(len(s) for s in seqs) + 1):
        for seq in seqs:
            if len(seq) >= t:
                seen.setdefault(tuple(seq[:t]), None)
    return list(seen)


def all_permutations(num_slices: int) -> Sequences:
    """Every permutation of ``range(L)`` in lexicographic order."""
    return list(itertools.permutations(range(num_slices)))
