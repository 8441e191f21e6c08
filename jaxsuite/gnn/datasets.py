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

The loaders never return wrong data. A missing file raises
``FileNotFoundError``; a cut or corrupted file (gzip and zip carry checksums),
an edge or split id outside ``[0, N)`` (e.g. -1), a label array whose length
is not the node count, a label that is not a class index, a non-finite OGB
feature, repeated or overlapping split ids raise ``ValueError`` naming the
file, the row and what was expected. IGB's features are memory-mapped and
not scanned (they can be terabytes): only their shape and type are checked.
"""

from __future__ import annotations

import gzip
import io
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


# A damaged gzip, zip or .npy file can fail in many ways while it is parsed
# (zlib, zipfile, numpy's header parser: OSError, EOFError, zlib.error,
# BadZipFile, SyntaxError, tokenize.TokenError, ...): any exception there is
# reported as a ValueError naming the file and what was raised.
_READ_ERRORS = (Exception,)


def _exists(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist.")


def _read_csv(path: str, dtype, columns: int | None = None) -> np.ndarray:
    """A ``.csv`` or ``.csv.gz`` file as a 2-D array (checked, see module doc)."""
    _exists(path)
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is empty (0 bytes): the file is cut.")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                text = f.read().decode("utf-8")
        else:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
    except _READ_ERRORS as e:
        raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e}).") from None
    if not text.strip():
        return np.zeros((0, columns or 1), dtype)
    try:
        rows = np.loadtxt(io.StringIO(text), delimiter=",", dtype=dtype, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if columns is not None and rows.shape[1] != columns:
        raise ValueError(
            f"{path}: rows have {rows.shape[1]} columns; expected {columns}."
        )
    return rows


def _load_npy(path: str, mmap: bool = False) -> np.ndarray:
    _exists(path)
    try:
        if mmap:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with open(path, "rb") as f:  # closed even when numpy fails to parse
            return np.load(f, allow_pickle=False)
    except _READ_ERRORS as e:
        raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e}).") from None


def _npz_array(path: str, key: str) -> np.ndarray:
    _exists(path)
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            if key not in data.files:
                raise ValueError(f"no array {key!r} (it holds {data.files})")
            return np.asarray(data[key])
    except _READ_ERRORS as e:
        raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e}).") from None


def check_edges(edges: np.ndarray, num_nodes: int, path: str) -> np.ndarray:
    """``edges`` as ``[E, 2]`` int64 with every id in ``[0, num_nodes)``."""
    edges = np.asarray(edges)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"{path}: edges have shape {edges.shape}; expected [E, 2].")
    if edges.dtype.kind not in "iu":
        raise ValueError(f"{path}: edge ids are {edges.dtype}; expected integers.")
    bad = (edges < 0) | (edges >= num_nodes)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise ValueError(
            f"{path}: edge {row} is {edges[row].tolist()}; node ids must be in "
            f"[0, {num_nodes})."
        )
    return edges.astype(np.int64)


def check_labels(
    raw: np.ndarray, num_nodes: int, path: str, num_classes: int | None = None
) -> tuple[np.ndarray, int]:
    """Int32 labels (missing / NaN labels become -1) and the class count.

    Raises:
      ValueError: the length is not ``num_nodes``, or a label is not a
        non-negative integer (below ``num_classes`` when given), naming the
        node.
    """
    raw = np.asarray(raw)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1 or raw.shape[0] != num_nodes:
        raise ValueError(
            f"{path}: labels have shape {raw.shape}; expected one per node "
            f"({num_nodes})."
        )
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"{path}: labels are {raw.dtype}; expected numbers.")
    values = raw.astype(np.float64)
    known = ~np.isnan(values)
    top = num_classes if num_classes is not None else 2**31 - 1
    bad = known & ((values < 0) | (values >= top) | (values != np.round(values)))
    if bad.any():
        node = int(np.argmax(bad))
        allowed = f"0..{top - 1}" if num_classes is not None else "non-negative"
        raise ValueError(
            f"{path}: node {node} has label {raw[node].item()!r}; expected an integer "
            f"class ({allowed}) or NaN for none."
        )
    labels = np.where(known, values, -1).astype(np.int32)
    found = int(labels.max()) + 1 if labels.size else 0
    return labels, max(found, 1)


def _check_splits(parts: dict[str, np.ndarray], num_nodes: int, sdir: str) -> None:
    seen: dict[int, str] = {}
    for name, ids in parts.items():
        path = os.path.join(sdir, f"{name}.csv.gz")
        bad = (ids < 0) | (ids >= num_nodes)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"{path}: row {row} is node {int(ids[row])}; expected an id in "
                f"[0, {num_nodes})."
            )
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"{path}: node {int(uniq[counts > 1][0])} is listed twice."
            )
        for node in uniq.tolist():
            if node in seen:
                raise ValueError(
                    f"{path}: node {node} is also in the {seen[node]} split."
                )
            seen[node] = name


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

    Raises:
      FileNotFoundError: a file or folder of the layout is missing.
      ValueError: see the module docstring.
    """
    raw = os.path.join(root, "raw")
    npz = os.path.join(raw, "data.npz")
    if os.path.exists(npz):
        edge_index = _npz_array(npz, "edge_index")
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise ValueError(
                f"{npz}: edge_index has shape {edge_index.shape}; expected [2, E]."
            )
        edges, edge_path = edge_index.T, npz
        feats, feat_path = _npz_array(npz, "node_feat"), npz
        label_path = os.path.join(raw, "node-label.npz")
        raw_labels = _npz_array(label_path, "node_label")
    else:
        edge_path = os.path.join(raw, "edge.csv.gz")
        edges = _read_csv(edge_path, np.int64, columns=2)
        feat_path = os.path.join(raw, "node-feat.csv.gz")
        feats = _read_csv(feat_path, np.float32)
        label_path = os.path.join(raw, "node-label.csv.gz")
        raw_labels = _read_csv(label_path, np.float64, columns=1)
    if feats.ndim != 2 or feats.shape[0] < 1 or feats.shape[1] < 1:
        raise ValueError(
            f"{feat_path}: features have shape {feats.shape}; expected [N, D]."
        )
    if feats.dtype.kind != "f" or not np.all(np.isfinite(feats)):
        raise ValueError(
            f"{feat_path}: features must be finite floating-point numbers."
        )
    feats = np.asarray(feats, np.float32)
    n = feats.shape[0]
    edges = check_edges(edges, n, edge_path)
    labels, num_classes = check_labels(raw_labels, n, label_path)
    indptr, indices = graph_lib.csr_from_edges(edges[:, 0], edges[:, 1], n)
    g = graph_lib.Graph(indptr, indices, labels, num_classes)
    split_root = os.path.join(root, "split")
    _exists(split_root)
    names = sorted(os.listdir(split_root))
    if not names:
        raise FileNotFoundError(f"{split_root} holds no split folder.")
    sdir = os.path.join(split_root, split if split in names else names[0])
    parts = {}
    for name in ("train", "valid", "test"):
        path = os.path.join(sdir, f"{name}.csv.gz")
        parts[name] = np.sort(_read_csv(path, np.int64, columns=1).reshape(-1))
    _check_splits(parts, n, sdir)
    path = os.path.join(cache_dir or root, "node_feat.f32")
    storage.write_features(path, feats)
    store = storage.FeatureStore(path, n, feats.shape[1], page_bytes=page_bytes)
    return Dataset(g, store, parts["train"], parts["valid"], parts["test"])


def load_igb_homogeneous(
    root: str, size: str = "tiny", *, num_classes: int = 19, page_bytes: int = 4096
) -> Dataset:
    """Loads an IGB homogeneous dataset (``root/<size>/processed``).

    Args:
      root: the IGB directory.
      size: ``tiny``, ``small``, ``medium``, ``large`` or ``full``.
      num_classes: 19 or 2983 (``node_label_19.npy`` / ``node_label_2K.npy``).
      page_bytes: read granularity of the store.

    Raises:
      FileNotFoundError: a file of the layout is missing.
      ValueError: see the module docstring (labels must be below
        ``num_classes``).
    """
    base = os.path.join(root, size, "processed")
    feat_path = os.path.join(base, "paper", "node_feat.npy")
    _exists(feat_path)
    try:
        store = storage.FeatureStore.from_npy(feat_path, page_bytes=page_bytes)
    except _READ_ERRORS as e:
        msg = str(e) if feat_path in str(e) else f"{feat_path}: {e}"
        raise ValueError(msg) from None
    n = store.num_nodes
    label_file = "node_label_19.npy" if num_classes == 19 else "node_label_2K.npy"
    label_path = os.path.join(base, "paper", label_file)
    labels, _ = check_labels(_load_npy(label_path), n, label_path, num_classes)
    edge_path = os.path.join(base, "paper__cites__paper", "edge_index.npy")
    edges = check_edges(_load_npy(edge_path, mmap=True), n, edge_path)
    indptr, indices = graph_lib.csr_from_edges(edges[:, 0], edges[:, 1], n)
    g = graph_lib.Graph(indptr, indices, labels, num_classes)
    a, b = int(0.6 * n), int(0.8 * n)
    ids = np.arange(n, dtype=np.int64)
    return Dataset(g, store, ids[:a], ids[a:b], ids[b:])
