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


def _ogb(root, edges=EDGES, labels=None, splits=None):
    labels = np.arange(N) % 3 if labels is None else labels
    splits = splits or {"train": [0, 1, 2, 3], "valid": [4, 5], "test": [6, 7, 8]}
    _write_csv(f"{root}/raw/edge.csv.gz", edges, "%d")
    _write_csv(f"{root}/raw/node-feat.csv.gz", _features(), "%.9g")
    _write_csv(f"{root}/raw/node-label.csv.gz", np.asarray(labels)[:, None], "%d")
    for name, ids in splits.items():
        _write_csv(f"{root}/split/time/{name}.csv.gz", np.array(ids)[:, None], "%d")


@pytest.mark.parametrize(
    "change,message",
    [
        (
            dict(edges=np.vstack([EDGES, [[3, -1]]])),
            r"edge\.csv\.gz: edge 8 is \[3, -1\]",
        ),
        (dict(edges=np.vstack([EDGES, [[3, 12]]])), r"node ids must be in \[0, 12\)"),
        (dict(labels=np.arange(N - 2) % 3), r"node-label\.csv\.gz: labels have shape"),
        (dict(splits={"train": [0, 12], "valid": [4], "test": [6]}), r"train\.csv"),
        (dict(splits={"train": [0, 1], "valid": [1], "test": [6]}), "also in the"),
        (dict(splits={"train": [0, 0], "valid": [4], "test": [6]}), "listed twice"),
    ],
)
def test_ogb_rejects_ids_out_of_range_and_wrong_lengths(tmp_path, change, message):
    root = str(tmp_path / "ogbn_bad")
    _ogb(root, **change)
    with pytest.raises(ValueError, match=message):
        datasets.load_ogb_nodeprop(root, cache_dir=str(tmp_path))


def test_cut_files_and_igb_problems_name_the_file(tmp_path):
    root = str(tmp_path / "ogbn_cut")
    _ogb(root)
    path = f"{root}/raw/edge.csv.gz"
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-6])
    with pytest.raises(ValueError, match=r"edge\.csv\.gz: cannot read"):
        datasets.load_ogb_nodeprop(root, cache_dir=str(tmp_path))
    os.remove(f"{root}/raw/node-label.csv.gz")
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(FileNotFoundError, match=r"node-label\.csv\.gz"):
        datasets.load_ogb_nodeprop(root, cache_dir=str(tmp_path))
    base = tmp_path / "igb" / "tiny" / "processed"
    (base / "paper").mkdir(parents=True)
    (base / "paper__cites__paper").mkdir()
    np.save(base / "paper" / "node_feat.npy", _features())
    np.save(base / "paper" / "node_label_19.npy", np.full(N, 19.0, np.float32))
    np.save(base / "paper__cites__paper" / "edge_index.npy", EDGES)
    with pytest.raises(
        ValueError,
        match=r"node 0 has label 19.0; expected an integer class \(0\.\.18\)",
    ):
        datasets.load_igb_homogeneous(str(tmp_path / "igb"), "tiny")
    np.save(base / "paper" / "node_label_19.npy", np.zeros(N, np.float32))
    np.save(base / "paper__cites__paper" / "edge_index.npy", EDGES - 1)
    with pytest.raises(ValueError, match=r"edge_index\.npy: edge 0 is \[-1, 0\]"):
        datasets.load_igb_homogeneous(str(tmp_path / "igb"), "tiny")


def test_csr_refuses_ids_outside_the_graph():
    from jaxsuite.gnn import graph

    with pytest.raises(ValueError, match=r"edge 1 is \(2, -1\)"):
        graph.csr_from_edges(np.array([0, 2]), np.array([1, -1]), 3)
