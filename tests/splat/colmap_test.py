"""COLMAP loader on text and binary models written here."""

import struct

import numpy as np
import pytest

from jaxsuite.core import cameras
from jaxsuite.splat import colmap


def _quat(rng):
    q = rng.normal(size=4)
    return q / np.linalg.norm(q) * np.sign(q[0])


def _model(rng):
    cams = [
        (1, "PINHOLE", 1, 64, 48, [50.0, 55.0, 31.0, 23.5]),
        (2, "SIMPLE_PINHOLE", 0, 40, 40, [35.0, 20.0, 19.0]),
    ]
    imgs = [
        (7, _quat(rng), rng.normal(size=3), 1, "b.png"),
        (3, _quat(rng), rng.normal(size=3), 2, "a.png"),
    ]
    pts = rng.normal(size=(5, 3))
    rgb = rng.integers(0, 256, size=(5, 3))
    return cams, imgs, pts, rgb


def _write_text(d, cams, imgs, pts, rgb):
    with open(d / "cameras.txt", "w") as f:
        f.write("# Camera list\n")
        for cid, name, _, w, h, p in cams:
            f.write(f"{cid} {name} {w} {h} " + " ".join(map(repr, p)) + "\n")
    with open(d / "images.txt", "w") as f:
        f.write("# Image list\n")
        for iid, q, t, cid, name in imgs:
            vals = " ".join(repr(float(v)) for v in [*q, *t])
            f.write(f"{iid} {vals} {cid} {name}\n")
            f.write("1.0 2.0 -1 3.5 4.5 0\n")
    with open(d / "points3D.txt", "w") as f:
        for i, (p, c) in enumerate(zip(pts, rgb)):
            xyz = " ".join(repr(float(v)) for v in p)
            f.write(f"{i} {xyz} {c[0]} {c[1]} {c[2]} 0.5 7 0\n")


def _write_binary(d, cams, imgs, pts, rgb):
    with open(d / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(cams)))
        for cid, _, mid, w, h, p in cams:
            f.write(struct.pack("<iiQQ", cid, mid, w, h))
            f.write(struct.pack("<" + "d" * len(p), *p))
    with open(d / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(imgs)))
        for iid, q, t, cid, name in imgs:
            f.write(struct.pack("<idddddddi", iid, *q, *t, cid))
            f.write(name.encode() + b"\x00")
            f.write(struct.pack("<Q", 2))
            f.write(struct.pack("<ddq", 1.0, 2.0, -1))
            f.write(struct.pack("<ddq", 3.5, 4.5, 0))
    with open(d / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(pts)))
        for i, (p, c) in enumerate(zip(pts, rgb)):
            f.write(struct.pack("<QdddBBBd", i, *p, *map(int, c), 0.5))
            f.write(struct.pack("<Q", 1))
            f.write(struct.pack("<ii", 7, 0))


@pytest.mark.parametrize("writer", [_write_text, _write_binary])
def test_loader_reproduces_colmap_projections(tmp_path, writer):
    rng = np.random.default_rng(0)
    cams, imgs, pts, rgb = _model(rng)
    writer(tmp_path, cams, imgs, pts, rgb)
    scene = colmap.load(str(tmp_path))
    assert scene.names == ["a.png", "b.png"]
    np.testing.assert_allclose(scene.points, pts, rtol=1e-6)
    np.testing.assert_allclose(scene.colors, rgb / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(scene.sizes, [[40, 40], [64, 48]])
    world = np.array([0.3, -0.2, 0.1])
    for v, (_, q, t, cid, _) in enumerate(sorted(imgs, key=lambda im: im[4])):
        # COLMAP's own projection, OpenCV camera: x = R X + t, u = f x / z + c.
        x = colmap.qvec_to_rotation(q) @ world + t
        params = dict((c[0], c[5]) for c in cams)[cid]
        fx, fy, cx, cy = params if len(params) == 4 else (params[0], *params)
        uv = np.array([fx * x[0] / x[2] + cx, fy * x[1] / x[2] + cy])
        got, depth = cameras.project_points(world, scene.c2w[v], scene.intrinsics[v])
        np.testing.assert_allclose(got, uv, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(depth, x[2], rtol=1e-4, atol=1e-5)


def test_distorted_cameras_name_the_undistortion_step(tmp_path):
    rng = np.random.default_rng(1)
    cams, imgs, pts, rgb = _model(rng)
    cams[0] = (1, "OPENCV", 4, 64, 48, [50.0, 55.0, 31.0, 23.5, 0.1, 0, 0, 0])
    _write_binary(tmp_path, cams, imgs, pts, rgb)
    with pytest.raises(ValueError, match="image_undistorter"):
        colmap.load(str(tmp_path))


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="cameras"):
        colmap.load(str(tmp_path))
