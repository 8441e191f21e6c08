"""OGB / IGB loaders on small files written in their on-disk layouts."""

import gzip
import os

import numpy as np
import pytest

from jaxsuite.gnn import datasets, storage

N, D = 12, 5
EDGES = np.array([[0, 1], [1, 2], [2, 0], [3, 4], [5, 5], [6, 7], [7, 6], [11, 0]])


def _features():
    return np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)


def _write_csv(path, rows, fmt):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wt") as f:
        np.savetxt(f, rows, delimiter=",", fmt=fmt)


def _check_graph(ds, labels):
    g = ds.graph
    rows = np.repeat(np.arange(N), g.degrees())
    got = set(zip(rows.tolist(), g.indices.tolist()))
    want = {(a, b) for a, b in EDGES.tolist() if a != b}
    want |= {(b, a) for a, b in want}
    assert got == want
    np.testing.assert_array_equal(g.labels, labels)


def test_ogb_csv_layout(tmp_path):
    root = str(tmp_path / "ogbn_toy")
    x = _features()
    labels = np.arange(N) % 3
    _write_csv(f"{root}/raw/edge.csv.gz", EDGES, "%d")
    # OGB writes features with limited precision: store exactly what was written.
    _write_csv(f"{root}/raw/node-feat.csv.gz", x, "%.9g")
    _write_csv(f"{root}/raw/node-label.csv.gz", labels[:, None], "%d")
    for name, ids in (("train", [0, 1, 2, 3]), ("valid", [4, 5]), ("test", [6, 7, 8])):
        _write_csv(f"{root}/split/time/{name}.csv.gz", np.array(ids)[:, None], "%d")
    ds = datasets.load_ogb_nodeprop(root, cache_dir=str(tmp_path))
    _check_graph(ds, labels)
    assert ds.graph.num_classes == 3
    np.testing.assert_array_equal(ds.store.read(np.arange(N)), x)
    np.testing.assert_array_equal(ds.test, [6, 7, 8])
    assert ds.store.path == str(tmp_path / "node_feat.f32")


def test_ogb_npz_layout_with_missing_labels(tmp_path):
    root = tmp_path / "papers_toy"
    (root / "raw").mkdir(parents=True)
    x = _features()
    labels = (np.arange(N) % 4).astype(np.float64)
    labels[[2, 9]] = np.nan
    np.savez(root / "raw" / "data.npz", edge_index=EDGES.T, node_feat=x)
    np.savez(root / "raw" / "node-label.npz", node_label=labels[:, None])
    for name, ids in (("train", [0, 1]), ("valid", [3]), ("test", [4])):
        _write_csv(f"{root}/split/time/{name}.csv.gz", np.array(ids)[:, None], "%d")
    ds = datasets.load_ogb_nodeprop(str(root))
    want = np.where(np.isnan(labels), -1, labels).astype(np.int32)
    _check_graph(ds, want)
    np.testing.assert_array_equal(ds.store.peek(np.arange(N)), x)


@pytest.mark.parametrize(
    "classes,fname", [(19, "node_label_19.npy"), (2983, "node_label_2K.npy")]
)
def test_igb_layout_memory_maps_npy(tmp_path, classes, fname):
    base = tmp_path / "igb" / "tiny" / "processed"
    (base / "paper").mkdir(parents=True)
    (base / "paper__cites__paper").mkdir()
    x = _features()
    labels = np.arange(N) % 7
    np.save(base / "paper" / "node_feat.npy", x)
    np.save(base / "paper" / fname, labels.astype(np.float32))
    np.save(base / "paper__cites__paper" / "edge_index.npy", EDGES)
    ds = datasets.load_igb_homogeneous(
        str(tmp_path / "igb"), "tiny", num_classes=classes
    )
    _check_graph(ds, labels)
    assert ds.graph.num_classes == classes
    ids = np.array([11, 0, 4])
    np.testing.assert_array_equal(ds.store.read(ids), x[ids])
    assert ds.store.rows_read == 3
    assert ds.train.size == 7 and ds.valid.size == 2 and ds.test.size == 3


def test_from_npy_rejects_wrong_dtype(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 2), np.float64))
    with pytest.raises(ValueError):
        storage.FeatureStore.from_npy(str(tmp_path / "a.npy"))
