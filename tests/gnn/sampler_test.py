"""Tests of the neighbour sampler: determinism, validity, look-ahead, next use."""

import numpy as np
import pytest

from jaxsuite.gnn import graph as graph_lib
from jaxsuite.gnn import sampler as sampler_lib


@pytest.fixture(scope="module")
def setup():
    g = graph_lib.power_law_graph(0, 3000, avg_degree=6, num_classes=4)
    train, _, _ = graph_lib.split_nodes(0, g.num_nodes)
    s = sampler_lib.NodeSampler(g, train, (4, 3), 8, 4, seed=7)
    return g, s


def test_batches_are_deterministic_and_differ_by_step(setup):
    _, s = setup
    a, b = s.batch(1, 3), s.batch(1, 3)
    for x, y in zip(a, b):
        if isinstance(x, tuple):
            for u, v in zip(x, y):
                np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_array_equal(x, y)
    c = s.batch(1, 4)
    assert not np.array_equal(a.hops[0], c.hops[0])
    # A fresh sampler with the same seed draws the same batch.
    t = sampler_lib.NodeSampler(s.graph, s.train_ids, s.fanouts, 8, 4, seed=7)
    np.testing.assert_array_equal(t.batch(1, 3).inputs, a.inputs)


def test_epoch_covers_training_nodes_once(setup):
    _, s = setup
    seeds = np.concatenate(
        [s.batch(2, t).seeds.ravel() for t in range(s.steps_per_epoch)]
    )
    assert np.unique(seeds).size == seeds.size == s.steps_per_epoch * s.global_batch
    assert np.isin(seeds, s.train_ids).all()


def test_samples_are_neighbours_and_positions_index_inputs(setup):
    g, s = setup
    b = s.batch(0, 1)
    assert b.inputs.shape == (4, sampler_lib.max_inputs(8, (4, 3)))
    parents = [b.seeds] + list(b.hops[:-1])
    for hop, mask, parent in zip(b.hops, b.masks, parents):
        par = np.broadcast_to(parent[..., None], hop.shape)
        for v, u, m in zip(par.ravel(), hop.ravel(), mask.ravel()):
            nbrs = g.indices[g.indptr[v] : g.indptr[v + 1]]
            assert (u in nbrs) if m else (u == v and nbrs.size == 0)
    for d in range(4):
        k = b.num_inputs[d]
        ids = b.inputs[d, :k]
        assert np.unique(ids).size == k and (b.inputs[d, k:] == -1).all()
        levels = [b.seeds[d]] + [h[d] for h in b.hops]
        for pos, lev in zip(b.positions, levels):
            np.testing.assert_array_equal(ids[pos[d]], lev)
        np.testing.assert_array_equal(b.labels[d], g.labels[b.seeds[d]])


def test_lookahead_window_and_next_use_agree(setup):
    _, s = setup
    window = 3
    run = list(sampler_lib.LookaheadSampler(s, epochs=2, window=window))
    order = s.schedule(2)
    assert len(run) == len(order)
    reqs = [np.unique(s.batch(*es).inputs) for es in order]
    reqs = [r[r >= 0] for r in reqs]
    nxt = sampler_lib.next_occurrence(reqs)
    for t, batch, ahead in run:
        np.testing.assert_array_equal(batch.inputs, s.batch(*order[t]).inputs)
        assert len(ahead) == min(window, len(order) - 1 - t)
        win = [np.unique(w.inputs[w.inputs >= 0]) for w in ahead]
        got = sampler_lib.next_use_from_window(reqs[t], t, win)
        # The window sees exactly the global next use when it lies within W.
        want = np.where(nxt[t] - t <= window, nxt[t], sampler_lib.NO_REUSE)
        np.testing.assert_array_equal(got, want)


def test_next_occurrence_brute_force():
    rng = np.random.default_rng(1)
    reqs = [np.unique(rng.integers(0, 30, 12)) for _ in range(20)]
    nxt = sampler_lib.next_occurrence(reqs)
    for t, ids in enumerate(reqs):
        for v, n in zip(ids, nxt[t]):
            later = [u for u in range(t + 1, 20) if v in reqs[u]]
            assert n == (later[0] if later else sampler_lib.NO_REUSE)
