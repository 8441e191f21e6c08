"""Tests of the synthetic graphs, reverse PageRank and score quantisation."""

import networkx as nx
import numpy as np
import pytest

from jaxsuite.gnn import graph as graph_lib


def _edge_set(g):
    rows = np.repeat(np.arange(g.num_nodes), g.degrees())
    return set(zip(rows.tolist(), g.indices.tolist()))


def test_csr_from_edges_symmetric_dedup_no_self_loops():
    src = np.array([0, 1, 1, 2, 3, 3])
    dst = np.array([1, 0, 2, 2, 0, 0])
    indptr, indices = graph_lib.csr_from_edges(src, dst, 5)
    g = graph_lib.Graph(indptr, indices, np.zeros(5, np.int32), 1)
    assert _edge_set(g) == {(0, 1), (1, 0), (1, 2), (2, 1), (0, 3), (3, 0)}
    assert indptr[-1] == 6 and g.degrees()[4] == 0


def test_power_law_graph_properties():
    g = graph_lib.power_law_graph(3, 20000, avg_degree=10, num_classes=5, p_in=0.8)
    edges = _edge_set(g)
    assert all((b, a) in edges for a, b in list(edges)[:5000])
    assert not any(a == b for a, b in edges)
    deg = g.degrees()
    # Heavy tail: the largest degree is far above the mean, the median below it.
    assert deg.max() > 20 * deg.mean() and np.median(deg) < deg.mean()
    rows = np.repeat(np.arange(g.num_nodes), deg)
    same = np.mean(g.labels[rows] == g.labels[g.indices])
    # Edges inside a community: p_in plus the chance hits of the other edges.
    assert 0.6 < same < 0.95
    assert set(np.unique(g.labels)) == set(range(5))
    again = graph_lib.power_law_graph(3, 20000, avg_degree=10, num_classes=5)
    np.testing.assert_array_equal(again.indices, g.indices)


def test_class_features_recover_class_means():
    labels = np.repeat(np.arange(4), 3000).astype(np.int32)
    x = graph_lib.class_features(0, labels, 16, 4, noise=1.0)
    rng = np.random.default_rng(0)
    means = rng.standard_normal((4, 16)).astype(np.float32)
    for c in range(4):
        np.testing.assert_allclose(
            x[labels == c].mean(0) * np.sqrt(2.0), means[c], atol=0.08
        )
    noise = x * np.sqrt(2.0) - means[labels]
    np.testing.assert_allclose(noise.std(), 1.0, atol=0.02)
    assert x.dtype == np.float32


def test_reverse_pagerank_matches_dense_and_networkx():
    g = graph_lib.power_law_graph(1, 300, avg_degree=6, num_classes=3)
    n = g.num_nodes
    a = np.zeros((n, n))
    rows = np.repeat(np.arange(n), g.degrees())
    a[rows, g.indices] = 1.0
    # Dense reverse walk: value at v is split over v's in-edges u -> v.
    pv = np.full(n, 1.0 / n)
    in_deg = a.sum(0)
    for _ in range(20):
        pv = 0.15 / n + 0.85 * a @ np.where(in_deg > 0, pv / np.maximum(in_deg, 1), 0)
    pv /= pv.sum()
    got = graph_lib.reverse_pagerank(g, iterations=20, damping=0.85)
    np.testing.assert_allclose(got, pv, rtol=1e-10)
    assert abs(got.sum() - 1) < 1e-12
    # On a graph without isolated nodes it converges to networkx's PageRank.
    keep = np.flatnonzero(g.degrees() > 0)
    nxg = nx.Graph()
    nxg.add_edges_from(_edge_set(g))
    ref = nx.pagerank(nxg, alpha=0.85, tol=1e-12)
    many = graph_lib.reverse_pagerank(g, iterations=200)
    iso = g.num_nodes - keep.size
    if iso == 0:
        np.testing.assert_allclose(many, [ref[i] for i in range(n)], rtol=1e-6)
    else:
        r = np.array([ref[i] for i in keep])
        corr = np.corrcoef(many[keep], r)[0, 1]
        assert corr > 0.999


def test_quantize_u8_is_monotone_and_ties_equal():
    scores = np.array([0.5, 0.1, 0.1, 3.0, 2.0, 0.1, 7.0, 0.2])
    q = graph_lib.quantize_u8(scores)
    assert q.dtype == np.uint8
    assert q[1] == q[2] == q[5] == 0
    order = np.argsort(scores, kind="stable")
    assert np.all(np.diff(q[order].astype(int)) >= 0)
    big = graph_lib.quantize_u8(np.random.default_rng(0).random(256 * 10))
    np.testing.assert_array_equal(np.bincount(big, minlength=256), np.full(256, 10))


@pytest.mark.parametrize("frac", [(0.5, 0.25), (0.6, 0.2)])
def test_split_nodes_partitions(frac):
    tr, va, te = graph_lib.split_nodes(0, 1000, frac)
    allv = np.concatenate([tr, va, te])
    np.testing.assert_array_equal(np.sort(allv), np.arange(1000))
    assert tr.size == int(frac[0] * 1000)
