"""Procedural token streams whose expert loads are skewed and drift over time.

Token popularity at step ``s`` is ``softmax(skew * (u cos(w s) + v sin(w s)))``
over the vocabulary, with fixed Gaussian ``u, v``: ``skew = 0`` is uniform,
larger ``skew`` concentrates the stream on a few tokens, and the hot set
rotates slowly with period ``2 pi / w`` steps (the drift of the paper's
Fig. 3). A router maps each token to a few experts, so token skew becomes
expert-load skew. Sequences continue ``x, x+1, x+2, ...`` with probability
``follow`` per position, which attention can learn.
"""

from __future__ import annotations

import numpy as np


def popularity(
    vocab: int, skew: float, step: int, seed: int, period: float
) -> np.ndarray:
    """(vocab,) token probabilities at ``step``."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(2, vocab))
    angle = 2 * np.pi * step / period
    z = skew * (u * np.cos(angle) + v * np.sin(angle))
    p = np.exp(z - z.max())
    return p / p.sum()


def batch(
    step: int,
    *,
    batch_size: int,
    seq_len: int,
    vocab: int,
    skew: float,
    seed: int = 0,
    period: float = 200.0,
    follow: float = 0.5,
) -> np.ndarray:
    """Tokens of ``step``, a pure function of its arguments.

    Returns:
      (batch_size, seq_len) int32.
    """
    rng = np.random.default_rng([seed, step])
    p = popularity(vocab, skew, step, seed, period)
    fresh = rng.choice(vocab, size=(batch_size, seq_len), p=p)
    keep = rng.random((batch_size, seq_len)) < follow
    out = fresh.copy()
    for i in range(1, seq_len):
        out[:, i] = np.where(keep[:, i], (out[:, i - 1] + 1) % vocab, fresh[:, i])
    return out.astype(np.int32)
