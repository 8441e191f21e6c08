"""Loaders for real graphs on disk: OGB node-property and IGB homogeneous layouts.

Nothing is downloaded: point a loader at files already on disk.

* OGB (``ogbn-*`` after unzipping): ``raw/edge.csv.gz`` (``src,dst`` rows),
  ``raw/node-feat.csv.gz`` (one row of D floats per node),
  ``raw/node-label.csv.gz`` and ``split/<name>/{train,valid,test}.csv.gz``;
  or the large-graph form ``raw/data.npz`` (``edge_index`` [2, E],
  ``node_feat`` [N, D]) with ``raw/node-label.npz`` (``node_label``).
  Features are converted once to a raw float32 file for the store.
* IGB homogeneous (``<root>/<size>/processed``): ``paper/node_feat.npy``
  [N, D] float32 (memory-mapped in place), ``paper/node_label_19.npy`` or
  ``paper/node_label_2K.npy``, ``paper__cites__paper/edge_index.npy`` [E, 2].
  Splits follow IGB's loader: the first 60% of nodes train, the next 20%
  validate, the rest test.
"""

from __future__ import annotations

import gzip
import os
from typing import NamedTuple

import numpy as np

from jaxsuite.gnn import graph as graph_lib
from jaxsuite.gnn import storage


class Dataset(NamedTuple):
    """A graph with its feature store and splits (sorted int64 node ids)."""

    graph: graph_lib.Graph
    store: storage.FeatureStore
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def _read_csv(path: str, dtype) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", dtype=dtype, ndmin=2)


def _labels(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Int32 labels (missing / NaN labels become -1) and the class count."""
    raw = np.asarray(raw, np.float64).reshape(-1)
    labels = np.where(np.isfinite(raw), raw, -1).astype(np.int32)
    return labels, int(labels.max()) + 1


def load_ogb_nodeprop(
    root: str,
    *,
    split: str = "time",
    cache_dir: str | None = None,
    page_bytes: int = 4096,
) -> Dataset:
    """Loads an OGB node-property dataset directory (see module docstring).

    Args:
      root: the dataset directory (holding ``raw/`` and ``split/``).
      split: subdirectory of ``split/`` (``time`` for arxiv/papers100M,
        ``sales_ranking`` for products, ...); the first one found if absent.
      cache_dir: where the raw float32 feature file goes (default ``root``).
      page_bytes: read granularity of the store.
    """
    raw = os.path.join(root, "raw")
    npz = os.path.join(raw, "data.npz")
    if os.path.exists(npz):
        data = np.load(npz)
        edges = np.asarray(data["edge_index"]).T
        feats = np.asarray(data["node_feat"], np.float32)
        labels, num_classes = _labels(
            np.load(os.path.join(raw, "node-label.npz"))["node_label"]
        )
    else:
        edges = _read_csv(os.path.join(raw, "edge.csv.gz"), np.int64)
        feats = _read_csv(os.path.join(raw, "node-feat.csv.gz"), np.float32)
        labels, num_classes = _labels(
            _read_csv(os.path.join(raw, "node-label.csv.gz"), np.float64)
        )
    n = feats.shape[0]
    indptr, indices = graph_lib.csr_from_edges(edges[:, 0], edges[:, 1], n)
    g = graph_lib.Graph(indptr, indices, labels, num_classes)
    path = os.path.join(cache_dir or root, "node_feat.f32")
    storage.write_features(path, feats)
    store = storage.FeatureStore(path, n, feats.shape[1], page_bytes=page_bytes)
    split_root = os.path.join(root, "split")
    names = sorted(os.listdir(split_root))
    sdir = os.path.join(split_root, split if split in names else names[0])
    parts = []
    for name in ("train", "valid", "test"):
        ids = _read_csv(os.path.join(sdir, f"{name}.csv.gz"), np.int64).reshape(-1)
        parts.append(np.sort(ids))
    return Dataset(g, store, *parts)


def load_igb_homogeneous(
    root: str, size: str = "tiny", *, num_classes: int = 19, page_bytes: int = 4096
) -> Dataset:
    """Loads an IGB homogeneous dataset (``root/<size>/processed``).

    Args:
      root: the IGB directory.
      size: ``tiny``, ``small``, ``medium``, ``large`` or ``full``.
      num_classes: 19 or 2983 (``node_label_19.npy`` / ``node_label_2K.npy``).
      page_bytes: read granularity of the store.
    """
    base = os.path.join(root, size, "processed")
    label_file = "node_label_19.npy" if num_classes == 19 else "node_label_2K.npy"
    labels, found = _labels(np.load(os.path.join(base, "paper", label_file)))
    store = storage.FeatureStore.from_npy(
        os.path.join(base, "paper", "node_feat.npy"), page_bytes=page_bytes
    )
    edges = np.load(
        os.path.join(base, "paper__cites__paper", "edge_index.npy"), mmap_mode="r"
    )
    n = store.num_nodes
    indptr, indices = graph_lib.csr_from_edges(edges[:, 0], edges[:, 1], n)
    g = graph_lib.Graph(indptr, indices, labels, max(found, num_classes))
    a, b = int(0.6 * n), int(0.8 * n)
    ids = np.arange(n, dtype=np.int64)
    return Dataset(g, store, ids[:a], ids[a:b], ids[b:])
