"""Seeded power-law graphs with communities, class-conditioned features, PageRank.

Graphs are undirected, stored as CSR (``indptr`` [N + 1] int64, ``indices``
[E] int32, both directions present). Degrees follow a power law (Chung-Lu
weights drawn from a Pareto law) and a fraction ``p_in`` of the edges stay
inside the community of their source, which is the node's label; features are
a class mean plus Gaussian noise, so a GNN that averages neighbours gains
accuracy over one that looks at a node alone.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Graph(NamedTuple):
    """A CSR graph with node labels.

    Attributes:
      indptr: [N + 1] int64 row offsets.
      indices: [E] int32 neighbour ids (each undirected edge twice).
      labels: [N] int32 class of each node.
      num_classes: number of classes.
    """

    indptr: np.ndarray
    indices: np.ndarray
    labels: np.ndarray
    num_classes: int

    @property
    def num_nodes(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def num_edges(self) -> int:
        return int(self.indices.shape[0])

    def degrees(self) -> np.ndarray:
        """[N] int64 out-degrees."""
        return np.diff(self.indptr)


def csr_from_edges(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> tuple:
    """Symmetrised, deduplicated CSR without self-loops.

    Args:
      src, dst: [E] int node ids of directed edges.
      num_nodes: N.

    Returns:
      ``(indptr [N + 1] int64, indices [E'] int32)`` with both directions.

    Raises:
      ValueError: an id outside ``[0, num_nodes)`` (it would corrupt the CSR
        index), naming the edge.
    """
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    if src.shape != dst.shape or src.ndim != 1:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must be equal [E].")
    bad = (src < 0) | (src >= num_nodes) | (dst < 0) | (dst >= num_nodes)
    if bad.any():
        e = int(np.argmax(bad))
        raise ValueError(
            f"edge {e} is ({int(src[e])}, {int(dst[e])}); node ids must be in "
            f"[0, {num_nodes})."
        )
    a = np.concatenate([src, dst])
    b = np.concatenate([dst, src])
    keep = a != b
    key = np.unique(a[keep] * num_nodes + b[keep])
    rows, cols = key // num_nodes, key % num_nodes
    indptr = np.zeros(num_nodes + 1, np.int64)
    np.add.at(indptr, rows + 1, 1)
    return np.cumsum(indptr), cols.astype(np.int32)


def power_law_graph(
    seed: int,
    num_nodes: int,
    *,
    avg_degree: float = 10.0,
    num_classes: int = 8,
    p_in: float = 0.8,
    exponent: float = 2.2,
) -> Graph:
    """A Chung-Lu power-law graph whose communities are the labels.

    Each of ``num_nodes * avg_degree / 2`` edges picks its source with
    probability proportional to a Pareto weight (tail exponent ``exponent``);
    with probability ``p_in`` its target is drawn the same way inside the
    source's community, else from the whole graph.

    Args:
      seed: numpy seed.
      num_nodes: N.
      avg_degree: target mean degree (before deduplication).
      num_classes: number of communities = classes.
      p_in: fraction of edges inside a community.
      exponent: power-law exponent of the degree distribution (> 2).

    Returns:
      A ``Graph`` with labels uniform over classes.
    """
    rng = np.random.default_rng(seed)
    weights = (1.0 - rng.random(num_nodes)) ** (-1.0 / (exponent - 1.0))
    labels = rng.integers(0, num_classes, num_nodes).astype(np.int32)
    num_edges = int(num_nodes * avg_degree / 2)
    cdf = np.cumsum(weights)
    src = np.searchsorted(cdf, rng.random(num_edges) * cdf[-1], side="right")
    src = np.minimum(src, num_nodes - 1)
    dst = np.minimum(
        np.searchsorted(cdf, rng.random(num_edges) * cdf[-1], side="right"),
        num_nodes - 1,
    )
    # In-community targets: sample within the sorted slice of the source's class.
    order = np.argsort(labels, kind="stable")
    sorted_cdf = np.cumsum(weights[order])
    starts = np.searchsorted(labels[order], np.arange(num_classes + 1))
    base = np.concatenate([[0.0], sorted_cdf])
    lo, hi = base[starts[labels[src]]], base[starts[labels[src] + 1]]
    u = lo + rng.random(num_edges) * (hi - lo)
    pos = np.searchsorted(sorted_cdf, u, side="right")
    pos = np.clip(pos, starts[labels[src]], starts[labels[src] + 1] - 1)
    inside = rng.random(num_edges) < p_in
    dst = np.where(inside, order[pos], dst)
    indptr, indices = csr_from_edges(src, dst, num_nodes)
    return Graph(indptr, indices, labels, num_classes)


def class_features(
    seed: int, labels: np.ndarray, dim: int, num_classes: int, *, noise: float = 2.0
) -> np.ndarray:
    """Class-conditioned Gaussian features: [N, dim] float32.

    ``x_i = (mu[label_i] + noise * eps_i) / sqrt(1 + noise^2)`` with class
    means ``mu`` [C, dim] drawn from N(0, 1), so every entry has unit variance;
    a large ``noise`` makes single nodes hard to classify.
    """
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((num_classes, dim)).astype(np.float32)
    eps = rng.standard_normal((labels.shape[0], dim), dtype=np.float32)
    scale = np.float32(1.0 / np.sqrt(1.0 + noise**2))
    return (means[labels] + np.float32(noise) * eps) * scale


def split_nodes(
    seed: int, num_nodes: int, fractions: tuple[float, float] = (0.6, 0.2)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train / validation / test node ids (sorted int64 arrays)."""
    perm = np.random.default_rng(seed).permutation(num_nodes)
    a = int(fractions[0] * num_nodes)
    b = a + int(fractions[1] * num_nodes)
    return np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])


def reverse_pagerank(
    graph: Graph, *, iterations: int = 20, damping: float = 0.85
) -> np.ndarray:
    """Reverse PageRank by power iteration: [N] float64, sums to 1.

    The walk follows edges backwards: each step divides a node's value by its
    in-degree and sends it to the nodes that point to it. With symmetric
    adjacency in- and out-degree agree; isolated nodes keep only the
    teleport term.

    Args:
      graph: CSR graph (row v lists the nodes v points to).
      iterations: power iterations (the reference code uses 20).
      damping: probability of following an edge (0.85).
    """
    n = graph.num_nodes
    rows = np.repeat(np.arange(n), graph.degrees())
    cols = graph.indices.astype(np.int64)
    in_deg = np.bincount(cols, minlength=n).astype(np.float64)
    pv = np.full(n, 1.0 / n)
    for _ in range(iterations):
        share = np.where(in_deg > 0, pv / np.maximum(in_deg, 1.0), 0.0)
        # Reverse edges: the value at column v flows back to row u.
        acc = np.bincount(rows, weights=share[cols], minlength=n)
        pv = (1.0 - damping) / n + damping * acc
    return pv / pv.sum()


def quantize_u8(scores: np.ndarray) -> np.ndarray:
    """Rank-quantises scores to uint8 (0 = lowest 1/256 of nodes, 255 = highest).

    Quantising ranks rather than values keeps 256 equally full levels even for
    heavy-tailed scores such as PageRank; equal scores get equal levels.
    """
    n = scores.shape[0]
    ranks = np.searchsorted(np.sort(scores), scores, side="left")
    return (ranks * 256 // max(n, 1)).astype(np.uint8)


def graph_from_jraph(
    graphs_tuple, labels: np.ndarray | None = None, num_classes: int | None = None
) -> Graph:
    """A ``jraph.GraphsTuple`` as this package's CSR :class:`Graph`.

    The edges ``senders[e] -> receivers[e]`` (global node ids, as
    ``jraph.batch`` makes them) are symmetrised and deduplicated, and
    self-loops dropped (:func:`csr_from_edges`), because the sampler and the
    caches treat graphs as undirected. A batch of several graphs becomes their
    disjoint union; padding (``jraph.pad_with_graphs``) adds isolated nodes,
    so unpad first (``jraph.unpad_with_graphs``) if those are unwanted.

    Args:
      graphs_tuple: a ``jraph.GraphsTuple`` with ``N = sum(n_node)`` nodes.
      labels: [N] int class per node; default ``graphs_tuple.nodes["label"]``
        (``nodes`` a mapping with a ``"label"`` entry).
      num_classes: default ``max(labels) + 1``.

    Returns:
      The :class:`Graph` (``indptr`` [N + 1] int64, ``indices`` [E'] int32,
      ``labels`` [N] int32).

    Raises:
      TypeError: ``graphs_tuple`` is not a ``jraph.GraphsTuple``.
      ValueError: no labels given or found, or labels of the wrong shape.
    """
    import jraph

    if not isinstance(graphs_tuple, jraph.GraphsTuple):
        raise TypeError(f"expected a jraph.GraphsTuple, got {type(graphs_tuple)}")
    num_nodes = int(np.sum(np.asarray(graphs_tuple.n_node)))
    if labels is None:
        nodes = graphs_tuple.nodes
        if not (hasattr(nodes, "keys") and "label" in nodes):
            raise ValueError('pass labels= or give the graph nodes={"label": ...}')
        labels = nodes["label"]
    labels = np.asarray(labels).astype(np.int32)
    if labels.shape != (num_nodes,):
        raise ValueError(f"labels {labels.shape} must be [{num_nodes}] (sum(n_node))")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if num_nodes else 0
    indptr, indices = csr_from_edges(
        np.asarray(graphs_tuple.senders), np.asarray(graphs_tuple.receivers), num_nodes
    )
    return Graph(indptr, indices, labels, int(num_classes))
