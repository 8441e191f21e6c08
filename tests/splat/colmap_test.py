"""COLMAP loader on text and binary models written here."""

import struct

import numpy as np
import pytest

from jaxsuite.core import cameras
from jaxsuite.splat import colmap
from tests.core import fuzz


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


def test_binary_name_cut_off_fails_fast_instead_of_looping(tmp_path):
    # images.bin cut inside an image name used to loop forever looking for NUL.
    rng = np.random.default_rng(2)
    _write_binary(tmp_path, *_model(rng))
    data = (tmp_path / "images.bin").read_bytes()
    cut = data.index(b"a.png") + 2  # inside the second image's name
    (tmp_path / "images.bin").write_bytes(data[:cut])
    with fuzz.time_limit(5.0):
        with pytest.raises(ValueError, match=r"images\.bin: the name of image #1"):
            colmap.load(str(tmp_path))


def test_text_images_without_points_lines_are_refused(tmp_path):
    # Without the POINTS2D line after each image, every second image was lost.
    rng = np.random.default_rng(3)
    cams, imgs, pts, rgb = _model(rng)
    _write_text(tmp_path, cams, imgs, pts, rgb)
    lines = (tmp_path / "images.txt").read_text().splitlines(keepends=True)
    (tmp_path / "images.txt").write_text("".join(lines[:1] + lines[1::2]))
    with pytest.raises(ValueError, match=r"images\.txt, line 3: bad POINTS2D line"):
        colmap.load(str(tmp_path))


def test_zero_quaternion_is_an_error_naming_the_image(tmp_path):
    rng = np.random.default_rng(4)
    cams, imgs, pts, rgb = _model(rng)
    imgs[1] = (3, np.zeros(4), imgs[1][2], 2, "a.png")
    for writer, where in ((_write_text, "line 4"), (_write_binary, "image #1")):
        writer(tmp_path, cams, imgs, pts, rgb)
        with pytest.raises(ValueError, match=f"{where}: .*quaternion.* is zero"):
            colmap.load(str(tmp_path))
        for f in tmp_path.iterdir():
            f.unlink()


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("cameras.txt", "1 PINHOLE 64 48 50 55 31\n", r"line 1: PINHOLE has 4 param"),
        ("cameras.txt", "1 PINHOLE 64 x 50 55 31 23\n", r"line 1: invalid literal"),
        ("cameras.txt", "1 FISH 64 48 1 2 3\n", r"line 1: unknown camera model"),
        ("points3D.txt", "1 0 0 0 255 0 300 0.5\n", r"line 1: 300 is outside"),
        ("points3D.txt", "1 0 0 nan 255 0 3 0.5\n", r"line 1: a value of .* finite"),
        ("points3D.txt", "1 0 0 0 255 0 3 0.5 7\n", r"line 1: 9 fields"),
        (
            "cameras.txt",
            "# Number of cameras: 2\n1 PINHOLE 6 4 5 5 3 2\n",
            "announces 2",
        ),
        ("cameras.txt", "1 PINHOLE 64 48 50 55 31 23", "does not end with a newline"),
    ],
)
def test_text_errors_name_the_file_and_line(tmp_path, name, text, message):
    reader = {"cameras.txt": colmap.read_cameras_text}
    reader["points3D.txt"] = colmap.read_points_text
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        reader[name](str(tmp_path / name))
    assert str(tmp_path / name) in str(e.value)


def test_binary_cut_and_trailing_bytes_name_the_record(tmp_path):
    rng = np.random.default_rng(5)
    _write_binary(tmp_path, *_model(rng))
    data = (tmp_path / "points3D.bin").read_bytes()
    (tmp_path / "points3D.bin").write_bytes(data[:-3])
    with pytest.raises(ValueError, match=r"points3D\.bin: point #4 claims 1 entr"):
        colmap.read_points_binary(str(tmp_path / "points3D.bin"))
    (tmp_path / "points3D.bin").write_bytes(data + b"\0" * 8)
    with pytest.raises(ValueError, match="8 bytes follow the 5 points"):
        colmap.read_points_binary(str(tmp_path / "points3D.bin"))


def test_unknown_camera_reference_is_named(tmp_path):
    rng = np.random.default_rng(6)
    cams, imgs, pts, rgb = _model(rng)
    imgs[0] = (*imgs[0][:3], 5, imgs[0][4])
    _write_text(tmp_path, cams, imgs, pts, rgb)
    with pytest.raises(ValueError, match=r"image 7 \(b\.png\) uses camera 5"):
        colmap.load(str(tmp_path))
