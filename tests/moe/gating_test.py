"""Top-2 gating with capacity equals a plain Python loop; the data skews loads."""

from __future__ import annotations

import jax
import numpy as np

from jaxsuite.moe import data, gating


def _loop_reference(logits, cap, draws=None):
    t, e = logits.shape
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    e1 = p.argmax(-1)
    q = p.copy()
    q[np.arange(t), e1] = -np.inf
    e2 = q.argmax(-1)
    fill = np.zeros(e, int)
    pos = np.zeros((t, 2), int)
    for i in range(t):
        pos[i, 0] = fill[e1[i]]
        fill[e1[i]] += 1
    g = np.stack([p[np.arange(t), e1], p[np.arange(t), e2]], -1)
    g = g / g.sum(-1, keepdims=True)
    use2 = np.ones(t, bool) if draws is None else draws < 2 * g[:, 1]
    kept1 = np.minimum(fill, cap)
    fill2 = np.zeros(e, int)
    for i in range(t):
        if use2[i]:
            pos[i, 1] = kept1[e2[i]] + fill2[e2[i]]
            fill2[e2[i]] += 1
    keep = pos < cap
    keep[:, 1] &= use2
    return np.stack([e1, e2], -1), g, pos, keep, use2


def test_top2_gating_matches_loop():
    rng = np.random.default_rng(0)
    for cap in (1, 3, 40):
        logits = rng.normal(size=(40, 8)).astype(np.float32)
        logits[:, 2] += 1.5  # a hot expert, so capacity binds
        g = jax.jit(gating.top2_gating, static_argnums=1)(logits, cap)
        expert, gate, pos, keep, _ = _loop_reference(logits, cap)
        np.testing.assert_array_equal(np.asarray(g.expert), expert)
        np.testing.assert_allclose(np.asarray(g.gate), gate, rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(g.position), pos)
        np.testing.assert_array_equal(np.asarray(g.keep), keep)
        assert float(g.dropped) == float((~keep).sum())
        np.testing.assert_array_equal(
            np.asarray(g.load), np.bincount(expert.reshape(-1), minlength=8)
        )


def test_random_routing_matches_loop():
    """GShard's random dispatch of second choices, against the loop."""
    rng = np.random.default_rng(1)
    fn = jax.jit(gating.top2_gating, static_argnums=1)
    for cap in (2, 6, 80):
        logits = rng.normal(size=(48, 8)).astype(np.float32)
        logits[:, 5] += 1.0
        draws = rng.random(48).astype(np.float32)
        g = fn(logits, cap, draws)
        expert, _, pos, keep, use2 = _loop_reference(logits, cap, draws)
        assert 0 < use2.sum() < len(use2)  # some second choices are not sent
        np.testing.assert_array_equal(np.asarray(g.keep), keep)
        np.testing.assert_array_equal(np.asarray(g.position)[keep], pos[keep])
        sent = np.concatenate([expert[:, 0], expert[use2, 1]])
        np.testing.assert_array_equal(
            np.asarray(g.load), np.bincount(sent, minlength=8)
        )
        dispatched = np.stack([np.ones_like(use2), use2], -1)
        assert float(g.dropped) == float((dispatched & ~keep).sum())
    # Draws of zero dispatch every second choice: the default gating.
    full, zero = fn(logits, 4), fn(logits, 4, np.zeros(48, np.float32))
    for a, b in zip(full, zero, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_capacity_formula():
    assert gating.capacity(16, 16, 2.0) == 4
    assert gating.capacity(10, 4, 1.0) == 5


def test_data_skew_and_drift():
    v = 64
    flat = data.popularity(v, 0.0, 0, seed=1, period=100)
    np.testing.assert_allclose(flat, np.full(v, 1 / v))
    hot = data.popularity(v, 3.0, 0, seed=1, period=100)
    assert hot.max() > 10 / v
    later = data.popularity(v, 3.0, 25, seed=1, period=100)
    assert np.argmax(later) != np.argmax(hot)  # the hot set drifts
    a = data.batch(5, batch_size=4, seq_len=16, vocab=v, skew=2.0)
    b = data.batch(5, batch_size=4, seq_len=16, vocab=v, skew=2.0)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 16) and a.dtype == np.int32 and a.max() < v
