"""Fuzzing the 3DGS PLY loader with cut and corrupted files (see tests/core/fuzz.py).

The files hold a ``face`` element before ``vertex`` (as meshes exported with
their points do), in binary and ASCII form.
"""

import os
import struct
import tempfile

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jaxsuite.splat import ply
from tests.core import fuzz

N = 6
NAMES = ply.property_names(4) + ["extra"]  # SH degree 1, plus an unknown property
VALUES = np.random.default_rng(0).normal(size=(N, len(NAMES))).astype(np.float32)


def _header(fmt):
    lines = ["ply", f"format {fmt} 1.0", "comment written by a test"]
    lines += ["element face 1", "property list uchar int vertex_indices"]
    lines += [f"element vertex {N}"] + [f"property float {n}" for n in NAMES]
    return ("\n".join(lines + ["end_header"]) + "\n").encode()


def _binary():
    data = _header("binary_little_endian")
    data += struct.pack("<B3i", 3, 0, 1, 2)
    spans = []
    for row in VALUES:
        spans.append((len(data), len(data) + 4 * len(NAMES)))
        data += row.astype("<f4").tobytes()
    return data, spans


def _ascii():
    data = _header("ascii") + b"3 0 1 2\n"
    spans = []
    for row in VALUES:
        line = " ".join(repr(float(v)) for v in row).encode()
        spans.append((len(data), len(data) + len(line) + 1))
        data += line + b"\n"
    return data, spans


FILES = {"binary": _binary(), "ascii": _ascii()}


def _rows(g):
    """The loaded Gaussians as per-vertex rows in the written column order."""
    sh = np.asarray(g.sh)
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(len(sh), -1)
    cols = [g.means, np.zeros((len(sh), 3)), sh[:, 0], rest]
    cols += [np.asarray(g.opacity_logits)[:, None], g.log_scales, g.quats]
    return np.concatenate([np.asarray(c, np.float32) for c in cols], axis=1)


def _written_rows():
    used = VALUES[:, : len(NAMES) - 1].copy()
    used[:, 3:6] = 0.0  # normals are not loaded
    return used


def test_written_files_load_whatever_element_comes_first():
    for data, _ in FILES.values():
        path = os.path.join(tempfile.mkdtemp(), "g.ply")
        with open(path, "wb") as f:
            f.write(data)
        np.testing.assert_array_equal(_rows(ply.load_ply(path)), _written_rows())


@fuzz.examples(600)
@given(data=st.data())
def test_fuzzed_ply_files_fail_cleanly_or_read_what_was_written(tmp_path, data):
    kind = data.draw(st.sampled_from(sorted(FILES)))
    original, spans = FILES[kind]
    mutation = data.draw(fuzz.mutations(len(original)))
    path = os.path.join(tempfile.mkdtemp(dir=tmp_path), "g.ply")
    with open(path, "wb") as f:
        f.write(fuzz.apply(original, mutation))
    status, g = fuzz.load(lambda: ply.load_ply(path))
    if status != "ok":
        return
    touched = None
    if mutation[0] == "flip":
        touched = fuzz.record_of(spans, mutation[1])
        touched = -1 if touched is None else touched
    fuzz.check_records(
        list(_rows(g)),
        list(_written_rows()),
        touched,
        lambda a, b: np.array_equal(a, b),
        f"{kind} PLY",
    )
