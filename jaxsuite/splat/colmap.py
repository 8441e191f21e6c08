"""COLMAP sparse-model loader (text and binary), for pinhole cameras.

Reads ``cameras``, ``images`` and ``points3D`` (``.txt`` or ``.bin``) of a
COLMAP model folder such as ``sparse/0``. Like 3D Gaussian Splatting it
accepts only undistorted cameras (``SIMPLE_PINHOLE`` and ``PINHOLE``); other
models raise an error that names the fix, ``colmap image_undistorter``.

COLMAP stores world-to-camera rotations as quaternions ``(w, x, y, z)`` and
translations in the OpenCV camera convention; :func:`load` returns OpenGL
camera-to-world poses (``jaxsuite.core.cameras`` convention).

The readers never return wrong data: a cut file, a missing line, a count that
does not match the records, an unknown camera model, a wrong number of
parameters, a zero quaternion or a non-finite value raises ``ValueError``
naming the file, the line (text) or record (binary) and what was expected;
the header counts COLMAP writes (``# Number of points: 5``) and the end of a
binary file are checked too, so a file cut between two records is caught.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from jaxsuite.splat.colmap_read import (  # noqa: F401 - re-exported
    CAMERA_MODELS,
    SUPPORTED,
    Camera,
    Image,
    read_cameras_binary,
    read_cameras_text,
    read_images_binary,
    read_images_text,
    read_points_binary,
    read_points_text,
)


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
    """Rotation matrix of a quaternion ``(w, x, y, z)`` (normalised first).

    Raises:
      ValueError: for a zero or non-finite quaternion (no rotation).
    """
    q = np.asarray(q, float)
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm < 1e-8:
        raise ValueError(f"quaternion {q.tolist()} is not a rotation (norm {norm}).")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


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
    tiny = float(np.finfo(np.float32).tiny)  # the smallest normal float32
    if not (fx >= tiny and fy >= tiny):
        raise ValueError(
            f"COLMAP camera {camera.camera_id}: focal lengths ({fx}, {fy}) must be "
            "positive."
        )
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], float)


def load(model_dir: str) -> Scene:
    """Loads a COLMAP model folder (binary files preferred, else text).

    Raises:
      FileNotFoundError: a file of the model is missing.
      ValueError: a file is cut or corrupted, an image refers to a camera that
        is not defined, or the model has no images; the message names the
        file and the record or line.
    """

    def pick(stem):
        for ext, kind in ((".bin", "binary"), (".txt", "text")):
            path = os.path.join(model_dir, stem + ext)
            if os.path.exists(path):
                return path, kind
        raise FileNotFoundError(f"No {stem}.bin or {stem}.txt in {model_dir}.")

    cam_path, kind = pick("cameras")
    cams = (
        read_cameras_binary(cam_path)
        if kind == "binary"
        else read_cameras_text(cam_path)
    )
    img_path, kind = pick("images")
    imgs = (
        read_images_binary(img_path) if kind == "binary" else read_images_text(img_path)
    )
    path, kind = pick("points3D")
    pts = read_points_binary(path) if kind == "binary" else read_points_text(path)
    if not imgs:
        raise ValueError(f"{img_path} lists no images.")
    images = sorted(imgs.values(), key=lambda im: im.name)
    names = [im.name for im in images]
    for a, b in zip(names, names[1:]):
        if a == b:
            raise ValueError(f"{img_path}: two images are named {a!r}.")
    c2w, ks, sizes = [], [], []
    for im in images:
        cam = cams.get(im.camera_id)
        if cam is None:
            raise ValueError(
                f"{img_path}: image {im.image_id} ({im.name}) uses camera "
                f"{im.camera_id}, which {cam_path} does not define (it defines "
                f"{sorted(cams)})."
            )
        w2c = np.eye(4)
        w2c[:3, :3] = qvec_to_rotation(im.qvec)
        w2c[:3, 3] = im.tvec
        c2w.append(np.linalg.inv(w2c) @ _FLIP_YZ)
        ks.append(intrinsics_of(cam))
        sizes.append((cam.width, cam.height))
    return Scene(
        names=names,
        c2w=_float32(c2w, img_path, "a camera pose", names).reshape(-1, 4, 4),
        intrinsics=_float32(ks, cam_path, "a camera", names).reshape(-1, 3, 3),
        sizes=np.array(sizes, int).reshape(-1, 2),
        points=_float32(pts[0], path, "a 3D point").reshape(-1, 3),
        colors=pts[1].astype(np.float32),
    )


def _float32(values, path: str, what: str, names=None) -> np.ndarray:
    """``values`` as float32, refusing what float32 cannot hold."""
    a = np.asarray(values, np.float64)
    big = ~(np.abs(a) <= np.finfo(np.float32).max)
    if big.any():
        index = int(np.argmax(big.reshape(len(a), -1).any(axis=1)))
        who = f" ({names[index]})" if names is not None else f" #{index}"
        raise ValueError(
            f"{path}: {what}{who} holds a value beyond float32's range "
            f"({np.finfo(np.float32).max:.3g})."
        )
    return a.astype(np.float32)


# OpenCV -> OpenGL camera axes (y and z flipped), as cameras.opencv_to_opengl.
_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])
