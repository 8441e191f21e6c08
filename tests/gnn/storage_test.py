"""Tests of the memory-mapped feature store, its I/O counters and the cost model."""

import numpy as np
import pytest

from jaxsuite.gnn import storage


def _store(tmp_path, n, d, **kw):
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    path = storage.write_features(str(tmp_path / "f.bin"), x, chunk_rows=7)
    return x, storage.FeatureStore(path, n, d, **kw)


def test_roundtrip_is_bitwise(tmp_path):
    x, store = _store(tmp_path, 100, 16)
    ids = np.array([5, 99, 0, 5, 42])
    np.testing.assert_array_equal(store.read(ids), x[ids])
    assert store.rows_read == 5 and store.reads == 1
    np.testing.assert_array_equal(store.peek(ids), x[ids])
    assert store.rows_read == 5


def test_page_count_closed_form(tmp_path):
    # 128 floats = 512 B per row: rows 8k .. 8k + 7 share page k.
    _, store = _store(tmp_path, 64, 128)
    assert store.count(np.arange(8)) == 1
    assert store.count(np.array([0, 7, 8, 63])) == 3
    store.read(np.array([1, 2, 9]))
    store.read(np.array([1]))
    assert store.pages_read == 3
    assert store.bytes_read == 3 * 4096


def test_rows_spanning_pages(tmp_path):
    # 3000 floats = 12000 B per row: row i covers bytes [12000 i, 12000 i + 12000).
    _, store = _store(tmp_path, 5, 3000)
    for i in range(5):
        lo, hi = 12000 * i // 4096, (12000 * i + 11999) // 4096
        assert store.count(np.array([i])) == hi - lo + 1
    # Rows 0 and 1 share page 2 (bytes 8192..12287).
    assert store.count(np.array([0, 1])) == 6


def test_io_model_formula():
    io = storage.IOModel(page_bytes=4096, iops=1e5, storage_bandwidth=4096e5 / 2)
    # 1000 pages: 10 ms at the IOPS limit plus 20 ms at the bandwidth limit.
    assert io.storage_seconds(1000) == pytest.approx(0.03)
    assert io.link_seconds(2e9) == pytest.approx(2e9 / io.link_bandwidth)


def test_size_mismatch_and_range(tmp_path):
    _, store = _store(tmp_path, 10, 4)
    with pytest.raises(ValueError):
        storage.FeatureStore(store.path, 11, 4)
    with pytest.raises(IndexError):
        store.read(np.array([10]))
