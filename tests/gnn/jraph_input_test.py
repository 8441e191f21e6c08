"""A jraph ``GraphsTuple`` as input: the CSR graph holds the same edges.

The expected adjacency is built independently, as Python sets of undirected
pairs, from the random edge lists the ``GraphsTuple`` was made of.
"""

import jraph
import numpy as np
import pytest

from jaxsuite.gnn import graph as graph_lib


def _random_graph(rng, num_nodes, num_edges, num_classes):
    """One jraph graph with duplicate edges and self-loops among random ones."""
    senders = rng.integers(0, num_nodes, num_edges)
    receivers = rng.integers(0, num_nodes, num_edges)
    senders[:3] = receivers[:3] = 1  # self-loops
    senders[3], receivers[3] = receivers[4], senders[4]  # an edge and its reverse
    return jraph.GraphsTuple(
        nodes={"label": rng.integers(0, num_classes, num_nodes)},
        edges=None,
        senders=senders,
        receivers=receivers,
        n_node=np.array([num_nodes]),
        n_edge=np.array([num_edges]),
        globals=None,
    )


def _adjacency(g: graph_lib.Graph) -> list[set[int]]:
    return [
        set(g.indices[g.indptr[u] : g.indptr[u + 1]].tolist())
        for u in range(g.num_nodes)
    ]


def test_batched_graphs_become_their_undirected_disjoint_union():
    rng = np.random.default_rng(0)
    parts = [_random_graph(rng, 30, 80, 4), _random_graph(rng, 17, 40, 4)]
    batch = jraph.batch_np(parts)
    got = graph_lib.graph_from_jraph(batch)

    want = [set() for _ in range(47)]
    offset = 0
    for part in parts:
        for s, r in zip(part.senders.tolist(), part.receivers.tolist()):
            if s != r:
                want[s + offset].add(r + offset)
                want[r + offset].add(s + offset)
        offset += int(part.n_node[0])
    assert _adjacency(got) == want
    # CSR invariants the sampler relies on: sorted rows, int64/int32 dtypes.
    assert got.indptr.dtype == np.int64 and got.indices.dtype == np.int32
    for u in range(got.num_nodes):
        row = got.indices[got.indptr[u] : got.indptr[u + 1]]
        assert np.all(np.diff(row) > 0)
    labels = np.concatenate([p.nodes["label"] for p in parts])
    np.testing.assert_array_equal(got.labels, labels)
    assert got.num_classes == int(labels.max()) + 1


def test_labels_argument_padding_and_errors():
    rng = np.random.default_rng(1)
    g = _random_graph(rng, 12, 30, 3)
    plain = g._replace(nodes=None)
    labels = np.arange(12) % 5
    got = graph_lib.graph_from_jraph(plain, labels=labels, num_classes=6)
    assert got.num_classes == 6
    np.testing.assert_array_equal(got.labels, labels)
    # Padding adds isolated nodes and no edges (jraph pads with self-loops).
    padded = jraph.pad_with_graphs(g, n_node=16, n_edge=40, n_graph=2)
    big = graph_lib.graph_from_jraph(padded, labels=np.zeros(16, np.int32))
    assert _adjacency(big)[:12] == _adjacency(graph_lib.graph_from_jraph(g))
    assert big.degrees()[12:].tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="labels="):
        graph_lib.graph_from_jraph(plain)
    with pytest.raises(ValueError, match=r"\[12\]"):
        graph_lib.graph_from_jraph(plain, labels=np.zeros(11))
    with pytest.raises(TypeError, match="GraphsTuple"):
        graph_lib.graph_from_jraph(tuple(g))
