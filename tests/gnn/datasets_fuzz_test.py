"""Fuzzing the OGB and IGB loaders with cut and corrupted files.

See tests/core/fuzz.py. gzip and zip carry checksums, so a corrupted OGB file
must fail or load exactly as written; IGB's ``.npy`` files carry none, so a
changed byte may change the one edge, label or feature row it belongs to.
"""

import gzip
import io
import os
import shutil
import tempfile

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jaxsuite.gnn import datasets
from tests.core import fuzz

N, D = 12, 5
EDGES = np.array([[0, 1], [1, 2], [2, 0], [3, 4], [5, 5], [6, 7], [7, 6], [11, 0]])
FEATS = np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)
LABELS = np.arange(N) % 3
SPLITS = {"train": [0, 1, 2, 3], "valid": [4, 5], "test": [6, 7, 8]}


def _gz(rows, fmt):
    buf = io.BytesIO()
    np.savetxt(buf, rows, delimiter=",", fmt=fmt)
    return gzip.compress(buf.getvalue(), mtime=0)


def _npz(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


OGB_CSV = {
    "raw/edge.csv.gz": _gz(EDGES, "%d"),
    "raw/node-feat.csv.gz": _gz(FEATS, "%.9g"),
    "raw/node-label.csv.gz": _gz(LABELS[:, None], "%d"),
    **{
        f"split/time/{k}.csv.gz": _gz(np.array(v)[:, None], "%d")
        for k, v in SPLITS.items()
    },
}
OGB_NPZ = {
    "raw/data.npz": _npz(edge_index=EDGES.T, node_feat=FEATS),
    "raw/node-label.npz": _npz(node_label=LABELS[:, None].astype(np.float64)),
    **{k: v for k, v in OGB_CSV.items() if k.startswith("split")},
}
IGB = {
    "tiny/processed/paper/node_feat.npy": _npy(FEATS),
    "tiny/processed/paper/node_label_19.npy": _npy(LABELS.astype(np.float32)),
    "tiny/processed/paper__cites__paper/edge_index.npy": _npy(EDGES),
}
LAYOUTS = {"ogb_csv": OGB_CSV, "ogb_npz": OGB_NPZ, "igb": IGB}


def _write(root, files, name=None, data=None):
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data if rel == name else content)


def _load(layout, root):
    if layout == "igb":
        return datasets.load_igb_homogeneous(root, "tiny", num_classes=19)
    return datasets.load_ogb_nodeprop(root, cache_dir=root)


def _edge_set(graph):
    rows = np.repeat(np.arange(graph.num_nodes), graph.degrees())
    return {
        (min(a, b), max(a, b)) for a, b in zip(rows.tolist(), graph.indices.tolist())
    }


def _written_edges():
    return {(min(a, b), max(a, b)) for a, b in EDGES.tolist() if a != b}


def test_written_layouts_load():
    for layout, files in LAYOUTS.items():
        root = tempfile.mkdtemp()
        _write(root, files)
        ds = _load(layout, root)
        assert _edge_set(ds.graph) == _written_edges()
        np.testing.assert_array_equal(ds.graph.labels, LABELS)
        np.testing.assert_array_equal(ds.store.peek(np.arange(N)), FEATS)


def _npy_row(data, offset, row_bytes):
    """The row of an .npy payload holding ``offset``, or -1 in the header."""
    start = data.index(b"\n") + 1  # the header ends with a newline
    return -1 if offset < start else (offset - start) // row_bytes


@fuzz.examples(500)
@given(data=st.data())
def test_fuzzed_graph_files_fail_cleanly_or_read_what_was_written(tmp_path, data):
    layout = data.draw(st.sampled_from(sorted(LAYOUTS)))
    files = LAYOUTS[layout]
    name = data.draw(st.sampled_from(sorted(files)))
    mutation = data.draw(fuzz.mutations(len(files[name])))
    root = tempfile.mkdtemp(dir=tmp_path)
    _write(root, files, name, fuzz.apply(files[name], mutation))
    status, ds = fuzz.load(lambda: _load(layout, root))
    shutil.rmtree(root)
    if status != "ok":
        return
    # What a changed byte may change: nothing, except in a .npy payload row.
    row, kind = None, None
    if layout == "igb" and mutation[0] == "flip":
        kind = os.path.basename(name)
        size = {"node_feat.npy": 4 * D, "node_label_19.npy": 4, "edge_index.npy": 16}
        row = _npy_row(files[name], mutation[1], size[kind])
    feats = ds.store.peek(np.arange(N))
    fuzz.check_records(
        list(feats),
        list(FEATS),
        row if kind == "node_feat.npy" else None,
        lambda a, b: np.array_equal(a, b, equal_nan=True),
        "features",
    )
    fuzz.check_records(
        list(ds.graph.labels),
        list(LABELS),
        row if kind == "node_label_19.npy" else None,
        lambda a, b: a == b,
        "labels",
    )
    edges, want = _edge_set(ds.graph), _written_edges()
    if kind == "edge_index.npy" and row is not None and row >= 0:
        assert len(edges ^ want) <= 2, edges ^ want  # one edge replaced
    else:
        assert edges == want
    if layout != "igb":
        for split, ids in SPLITS.items():
            np.testing.assert_array_equal(getattr(ds, split), ids)
