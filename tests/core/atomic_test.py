"""Atomic writes: a reader never sees a part of a file."""

import os

import numpy as np
import pytest

from jaxsuite.core import atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "summary.json")
    atomic.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.open_atomic(path, "w") as f:
            f.write('{"a": ')
            raise RuntimeError("killed mid-write")
    assert atomic.read_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_json_is_strict_and_names_the_bad_value(tmp_path):
    path = str(tmp_path / "x.json")
    with pytest.raises(ValueError, match=r"rows\[2\]\.psnr is nan"):
        atomic.write_json(path, {"rows": [{}, {}, {"psnr": float("nan")}]})
    assert not os.path.exists(path)
    with open(path, "w") as f:
        f.write('{"v": Infinity}')
    with pytest.raises(ValueError, match=r"x\.json is not valid JSON"):
        atomic.read_json(path)
    with open(path, "w") as f:
        f.write('{"v": 1')  # cut
    with pytest.raises(ValueError, match=r"x\.json is not valid JSON"):
        atomic.read_json(path)


def test_arrays_text_and_bytes_round_trip(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    atomic.save_npz(str(tmp_path / "t.npz"), load=a, loss=a[0])
    with np.load(tmp_path / "t.npz") as z:
        np.testing.assert_array_equal(z["load"], a)
        np.testing.assert_array_equal(z["loss"], a[0])
    atomic.save_npy(str(tmp_path / "sub" / "r.npy"), a)
    np.testing.assert_array_equal(np.load(tmp_path / "sub" / "r.npy"), a)
    atomic.write_text(str(tmp_path / "n.txt"), "héllo\n")
    assert (tmp_path / "n.txt").read_text(encoding="utf-8") == "héllo\n"
    atomic.write_bytes(str(tmp_path / "b.bin"), b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(IsADirectoryError):
        atomic.write_bytes(str(tmp_path / "sub"), b"")
