"""COLMAP sparse-model loader (text and binary), for pinhole cameras.

Reads ``cameras``, ``images`` and ``points3D`` (``.txt`` or ``.bin``) of a
COLMAP model folder such as ``sparse/0``. Like 3D Gaussian Splatting it
accepts only undistorted cameras (``SIMPLE_PINHOLE`` and ``PINHOLE``); other
models raise an error that names the fix, ``colmap image_undistorter``.

COLMAP stores world-to-camera rotations as quaternions ``(w, x, y, z)`` and
translations in the OpenCV camera convention; :func:`load` returns OpenGL
camera-to-world poses (``jaxsuite.core.cameras`` convention).
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

import numpy as np

from jaxsuite.core import cameras as cameras_lib

# model id -> (name, number of parameters), from COLMAP's camera_models.h.
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE")


class Camera(NamedTuple):
    """A COLMAP camera: ``model`` name, image size and raw ``params``."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray


class Image(NamedTuple):
    """A registered image: world-to-camera ``qvec`` (w, x, y, z) and ``tvec``."""

    image_id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str


class Scene(NamedTuple):
    """A loaded model, images sorted by name.

    Attributes:
      names: image file names, length ``V``.
      c2w: ``(V, 4, 4)`` OpenGL camera-to-world poses.
      intrinsics: ``(V, 3, 3)``.
      sizes: ``(V, 2)`` int ``(width, height)``.
      points: ``(P, 3)`` sparse points; colors: ``(P, 3)`` in ``[0, 1]``.
    """

    names: list[str]
    c2w: np.ndarray
    intrinsics: np.ndarray
    sizes: np.ndarray
    points: np.ndarray
    colors: np.ndarray


def qvec_to_rotation(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion ``(w, x, y, z)``."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _lines(path):
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]


def read_cameras_text(path: str) -> dict[int, Camera]:
    out = {}
    for line in _lines(path):
        w = line.split()
        cid = int(w[0])
        out[cid] = Camera(cid, w[1], int(w[2]), int(w[3]), np.array(w[4:], float))
    return out


def read_images_text(path: str) -> dict[int, Image]:
    out = {}
    with open(path) as f:
        lines = [ln.rstrip("\n") for ln in f if not ln.startswith("#")]
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        w = lines[i].split()
        iid = int(w[0])
        out[iid] = Image(
            iid,
            np.array(w[1:5], float),
            np.array(w[5:8], float),
            int(w[8]),
            " ".join(w[9:]),
        )
        i += 2  # the next line lists the 2D points
    return out


def read_points_text(path: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [ln.split() for ln in _lines(path)]
    if not rows:
        return np.zeros((0, 3)), np.zeros((0, 3))
    xyz = np.array([r[1:4] for r in rows], float)
    rgb = np.array([r[4:7] for r in rows], float) / 255.0
    return xyz, rgb


def _read(f, fmt):
    return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))


def read_cameras_binary(path: str) -> dict[int, Camera]:
    out = {}
    with open(path, "rb") as f:
        (num,) = _read(f, "Q")
        for _ in range(num):
            cid, model_id, width, height = _read(f, "iiQQ")
            if model_id not in CAMERA_MODELS:
                raise ValueError(f"{path}: unknown COLMAP camera model id {model_id}.")
            name, nparams = CAMERA_MODELS[model_id]
            params = np.array(_read(f, "d" * nparams))
            out[cid] = Camera(cid, name, width, height, params)
    return out


def read_images_binary(path: str) -> dict[int, Image]:
    out = {}
    with open(path, "rb") as f:
        (num,) = _read(f, "Q")
        for _ in range(num):
            iid, *rest = _read(f, "idddddddi")
            qvec, tvec, cid = np.array(rest[:4]), np.array(rest[4:7]), rest[7]
            name = b""
            while (ch := f.read(1)) != b"\x00":
                name += ch
            (npts,) = _read(f, "Q")
            f.seek(24 * npts, os.SEEK_CUR)  # (x, y, point3D_id) per 2D point
            out[iid] = Image(iid, qvec, tvec, cid, name.decode())
    return out


def read_points_binary(path: str) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    with open(path, "rb") as f:
        (num,) = _read(f, "Q")
        for _ in range(num):
            _, x, y, z, r, g, b, _ = _read(f, "QdddBBBd")
            (track,) = _read(f, "Q")
            f.seek(8 * track, os.SEEK_CUR)
            xyz.append((x, y, z))
            rgb.append((r, g, b))
    return np.array(xyz, float).reshape(-1, 3), np.array(rgb, float).reshape(
        -1, 3
    ) / 255


def intrinsics_of(camera: Camera) -> np.ndarray:
    """``K`` of a pinhole camera.

    Raises:
      ValueError: for models with distortion, naming the undistortion step.
    """
    if camera.model == "SIMPLE_PINHOLE":
        f, cx, cy = camera.params
        fx = fy = f
    elif camera.model == "PINHOLE":
        fx, fy, cx, cy = camera.params
    else:
        raise ValueError(
            f"COLMAP camera {camera.camera_id} uses the {camera.model} model; only "
            f"undistorted cameras ({', '.join(SUPPORTED)}) are supported. Run "
            "`colmap image_undistorter --image_path IMAGES --input_path "
            "sparse/0 --output_path undistorted` and load undistorted/sparse."
        )
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], float)


def load(model_dir: str) -> Scene:
    """Loads a COLMAP model folder (binary files preferred, else text)."""

    def pick(stem):
        for ext, kind in ((".bin", "binary"), (".txt", "text")):
            path = os.path.join(model_dir, stem + ext)
            if os.path.exists(path):
                return path, kind
        raise FileNotFoundError(f"No {stem}.bin or {stem}.txt in {model_dir}.")

    path, kind = pick("cameras")
    cams = read_cameras_binary(path) if kind == "binary" else read_cameras_text(path)
    path, kind = pick("images")
    imgs = read_images_binary(path) if kind == "binary" else read_images_text(path)
    path, kind = pick("points3D")
    pts = read_points_binary(path) if kind == "binary" else read_points_text(path)
    images = sorted(imgs.values(), key=lambda im: im.name)
    c2w, ks, sizes = [], [], []
    for im in images:
        cam = cams[im.camera_id]
        w2c = np.eye(4)
        w2c[:3, :3] = qvec_to_rotation(im.qvec)
        w2c[:3, 3] = im.tvec
        c2w.append(np.asarray(cameras_lib.opencv_to_opengl(np.linalg.inv(w2c))))
        ks.append(intrinsics_of(cam))
        sizes.append((cam.width, cam.height))
    return Scene(
        names=[im.name for im in images],
        c2w=np.array(c2w, np.float32).reshape(-1, 4, 4),
        intrinsics=np.array(ks, np.float32).reshape(-1, 3, 3),
        sizes=np.array(sizes, int).reshape(-1, 2),
        points=pts[0].astype(np.float32),
        colors=pts[1].astype(np.float32),
    )
