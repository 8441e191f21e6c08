"""Fuzzing the COLMAP readers with cut and corrupted files (see tests/core/fuzz.py)."""

import os
import struct
import tempfile

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jaxsuite.splat import colmap
from tests.core import fuzz

CAMS = [
    (1, "PINHOLE", 1, 64, 48, [50.0, 55.0, 31.0, 23.5]),
    (2, "SIMPLE_PINHOLE", 0, 40, 40, [35.0, 20.0, 19.0]),
]
IMGS = [
    (7, [0.9, 0.1, -0.3, 0.2], [0.5, -1.25, 2.0], 1, "b.png", [(1.0, 2.0, -1)]),
    (3, [0.7, 0.5, 0.1, -0.4], [1.5, 0.25, -3.0], 2, "a.png", []),
    (9, [0.2, 0.8, 0.5, 0.1], [-0.5, 0.75, 1.0], 1, "c.png", [(3.5, 4.5, 0)]),
]
PTS = [
    (i, [0.1 * i, -0.2 * i, 1.0 + i], [10 * i, 200 - i, 7], 0.5, [(7, 0)])
    for i in range(5)
]


class _Builder:
    """Bytes of one file plus the byte span of each record."""

    def __init__(self):
        self.data, self.spans = b"", []

    def add(self, chunk: bytes, record: bool = True):
        if record:
            self.spans.append((len(self.data), len(self.data) + len(chunk)))
        self.data += chunk


def _text_files():
    cams = _Builder()
    cams.add(b"# Camera list with one line of data per camera:\n", False)
    cams.add(b"#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n", False)
    cams.add(f"# Number of cameras: {len(CAMS)}\n".encode(), False)
    for cid, name, _, w, h, p in CAMS:
        cams.add(f"{cid} {name} {w} {h} {' '.join(map(repr, p))}\n".encode())
    imgs = _Builder()
    imgs.add(b"# Image list with two lines of data per image:\n", False)
    imgs.add(f"# Number of images: {len(IMGS)}, mean observations: 1\n".encode(), False)
    for iid, q, t, cid, name, pts in IMGS:
        vals = " ".join(repr(v) for v in [*q, *t])
        obs = " ".join(f"{x!r} {y!r} {p}" for x, y, p in pts)
        imgs.add(f"{iid} {vals} {cid} {name}\n{obs}\n".encode())
    pts = _Builder()
    pts.add(b"# 3D point list with one line of data per point:\n", False)
    pts.add(f"# Number of points: {len(PTS)}, mean track length: 1\n".encode(), False)
    for pid, xyz, rgb, err, track in PTS:
        tr = " ".join(f"{a} {b}" for a, b in track)
        row = f"{pid} {' '.join(map(repr, xyz))} {' '.join(map(str, rgb))} {err!r} {tr}"
        pts.add((row + "\n").encode())
    return {"cameras.txt": cams, "images.txt": imgs, "points3D.txt": pts}


def _binary_files():
    cams = _Builder()
    cams.add(struct.pack("<Q", len(CAMS)), False)
    for cid, _, mid, w, h, p in CAMS:
        cams.add(struct.pack("<iiQQ", cid, mid, w, h) + struct.pack(f"<{len(p)}d", *p))
    imgs = _Builder()
    imgs.add(struct.pack("<Q", len(IMGS)), False)
    for iid, q, t, cid, name, obs in IMGS:
        rec = struct.pack("<idddddddi", iid, *q, *t, cid) + name.encode() + b"\0"
        rec += struct.pack("<Q", len(obs))
        rec += b"".join(struct.pack("<ddq", *o) for o in obs)
        imgs.add(rec)
    pts = _Builder()
    pts.add(struct.pack("<Q", len(PTS)), False)
    for pid, xyz, rgb, err, track in PTS:
        rec = struct.pack("<QdddBBBd", pid, *xyz, *rgb, err)
        rec += struct.pack("<Q", len(track))
        rec += b"".join(struct.pack("<ii", a, b) for a, b in track)
        pts.add(rec)
    return {"cameras.bin": cams, "images.bin": imgs, "points3D.bin": pts}


FILES = {**_text_files(), **_binary_files()}
READERS = {
    "cameras.txt": colmap.read_cameras_text,
    "cameras.bin": colmap.read_cameras_binary,
    "images.txt": colmap.read_images_text,
    "images.bin": colmap.read_images_binary,
    "points3D.txt": colmap.read_points_text,
    "points3D.bin": colmap.read_points_binary,
}


def _records(name, value):
    """A reader's output as a list of comparable records, in file order."""
    if name.startswith("cameras"):
        return [
            (c.camera_id, c.model, c.width, c.height, list(c.params))
            for c in value.values()
        ]
    if name.startswith("images"):
        return [
            (m.image_id, list(m.qvec), list(m.tvec), m.camera_id, m.name)
            for m in value.values()
        ]
    xyz, rgb = value
    return [(list(p), list(c)) for p, c in zip(xyz, rgb)]


def _written(name):
    if name.startswith("cameras"):
        return [(c[0], c[1], c[3], c[4], list(map(float, c[5]))) for c in CAMS]
    if name.startswith("images"):
        return [(i[0], i[1], i[2], i[3], i[4]) for i in IMGS]
    return [(p[1], [c / 255.0 for c in p[2]]) for p in PTS]


def test_the_written_files_read_back():
    for name, built in FILES.items():
        path = os.path.join(tempfile.mkdtemp(), name)
        with open(path, "wb") as f:
            f.write(built.data)
        assert _records(name, READERS[name](path)) == _written(name), name


def _model_dir(root, kind, name, data):
    d = tempfile.mkdtemp(dir=root)
    for other, built in FILES.items():
        if other.endswith(kind):
            with open(os.path.join(d, other), "wb") as f:
                f.write(data if other == name else built.data)
    return d


@fuzz.examples(800)
@given(data=st.data())
def test_fuzzed_colmap_files_fail_cleanly_or_read_what_was_written(tmp_path, data):
    name = data.draw(st.sampled_from(sorted(FILES)))
    built = FILES[name]
    mutation = data.draw(fuzz.mutations(len(built.data)))
    kind = os.path.splitext(name)[1]
    d = _model_dir(str(tmp_path), kind, name, fuzz.apply(built.data, mutation))
    status, value = fuzz.load(lambda: READERS[name](os.path.join(d, name)))
    if status == "ok":
        touched = None
        if mutation[0] == "flip":
            touched = fuzz.record_of(built.spans, mutation[1])
            touched = -1 if touched is None else touched
        fuzz.check_records(
            _records(name, value), _written(name), touched, lambda a, b: a == b, name
        )
    # The whole model never yields non-finite poses or bad intrinsics.
    status, scene = fuzz.load(lambda: colmap.load(d))
    if status == "ok":
        assert np.all(np.isfinite(scene.c2w)) and np.all(np.isfinite(scene.points))
        assert np.all(scene.intrinsics[:, 0, 0] > 0)
        if mutation[0] == "cut":
            assert scene.names == ["a.png", "b.png", "c.png"]
