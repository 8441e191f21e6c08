"""NeRF-Synthetic ("Blender") format: ``transforms_<split>.json`` plus PNGs.

Layout (as in the NeRF-Synthetic release)::

    root/transforms_train.json   {"camera_angle_x": fov_x_radians,
                                   "frames": [{"file_path": "./train/r_0",
                                               "transform_matrix": 4x4 c2w}, ...]}
    root/train/r_0.png           RGBA, 8 bit

Poses are OpenGL camera-to-world matrices in a ``+z``-up world, the
convention of ``jaxsuite.core.cameras``, so they are used unchanged. RGBA
images are composited over a constant background (white by default, as NeRF
does for this dataset). ``file_path`` may omit the ``.png`` extension.

The loader checks what it reads and raises ``FileNotFoundError`` or
``ValueError`` naming the file and the frame: invalid JSON, a missing or
out-of-range ``camera_angle_x``, a pose that is not a 4 x 4 rigid
camera-to-world matrix, a missing or unreadable image, images of different
sizes.
"""

from __future__ import annotations

import json
import math
import os

import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxsuite.core import atomic, cameras
from jaxsuite.nerf.scenes import PosedImages


def _read_png(path: str, size: int | None, where: str) -> np.ndarray:
    """Reads a PNG as float32 RGBA ``(H, W, 4)`` in [0, 1], optionally resized."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{where}: the image {path} does not exist.")
    try:
        with Image.open(path) as img:
            img = img.convert("RGBA")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BOX)
            return np.asarray(img, np.float32) / 255.0
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for bad files
        raise ValueError(f"{where}: cannot read the image {path} ({e}).") from None


def _pose(value, where: str) -> np.ndarray:
    try:
        pose = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        pose = np.zeros(0)
    if pose.shape != (4, 4) or pose.dtype.kind != "f":
        raise ValueError(f"{where}: transform_matrix must be 4 x 4 numbers.")
    if not np.all(np.isfinite(pose)):
        raise ValueError(f"{where}: transform_matrix holds a non-finite value.")
    if np.max(np.abs(pose[3] - [0.0, 0.0, 0.0, 1.0])) > 1e-6:
        raise ValueError(
            f"{where}: the last row of transform_matrix is {pose[3].tolist()}; "
            "expected [0, 0, 0, 1] (a camera-to-world pose)."
        )
    det = float(np.linalg.det(pose[:3, :3]))
    if not det > 1e-6:
        raise ValueError(
            f"{where}: transform_matrix's rotation has determinant {det:.3g}; "
            "expected a rotation (determinant 1)."
        )
    return pose.astype(np.float32)


def load_split(
    root: str, split: str, *, size: int | None = None, background: float = 1.0
) -> PosedImages:
    """Loads one split.

    Args:
      root: dataset folder holding ``transforms_<split>.json``.
      split: ``"train"``, ``"val"`` or ``"test"``.
      size: resize square images to ``size x size`` (box filter); ``None``
        keeps the stored size.
      background: grey level the alpha channel is composited over.

    Returns:
      ``PosedImages`` with ``images (N, H, W, 3)``, ``poses (N, 4, 4)`` and
      ``K (3, 3)`` from ``camera_angle_x`` (principal point at the centre).

    Raises:
      FileNotFoundError: the JSON file or an image is missing (named).
      ValueError: the JSON is not valid or lacks ``camera_angle_x`` (a finite
        angle in (0, pi)) or a non-empty ``frames`` list; a frame lacks
        ``file_path`` or a 4 x 4 camera-to-world ``transform_matrix``; an image
        cannot be read or differs in size from the first. The message names
        the file and the frame.
    """
    path = os.path.join(root, f"transforms_{split}.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No transforms_{split}.json in {root}.")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level.")
    fov = meta.get("camera_angle_x")
    if isinstance(fov, bool) or not isinstance(fov, int | float):
        raise ValueError(
            f"{path}: camera_angle_x (radians) is missing or not a number."
        )
    if not 0.0 < fov < math.pi:
        raise ValueError(f"{path}: camera_angle_x={fov}; expected an angle in (0, pi).")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: expected a non-empty list 'frames'.")
    images, poses = [], []
    for i, frame in enumerate(frames):
        where = f"{path}, frame {i}"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise ValueError(f"{where}: expected an object with a 'file_path' string.")
        poses.append(_pose(frame.get("transform_matrix"), where))
        image = os.path.join(root, os.path.normpath(frame["file_path"]))
        if not image.endswith(".png"):
            image += ".png"
        rgba = _read_png(image, size, where)
        if images and rgba.shape != images[0].shape[:2] + (4,):
            raise ValueError(
                f"{where}: {image} is {rgba.shape[1]} x {rgba.shape[0]} pixels; "
                f"frame 0 is {images[0].shape[1]} x {images[0].shape[0]}."
            )
        alpha = rgba[..., 3:4]
        images.append(rgba[..., :3] * alpha + background * (1.0 - alpha))
    h, w = images[0].shape[:2]
    K = cameras.intrinsics(w, h, fov_x_deg=math.degrees(fov))
    return PosedImages(jnp.asarray(np.stack(images)), jnp.asarray(np.stack(poses)), K)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def save_split(
    root: str,
    split: str,
    images: np.ndarray,
    poses: np.ndarray,
    fov_x: float,
    alpha: np.ndarray | None = None,
) -> str:
    """Writes a split in the NeRF-Synthetic layout; returns the JSON path.

    Args:
      root: output folder (created).
      split: split name.
      images: ``(N, H, W, 3)`` in [0, 1].
      poses: ``(N, 4, 4)`` camera-to-world (OpenGL).
      fov_x: horizontal field of view in radians (``camera_angle_x``).
      alpha: optional ``(N, H, W)`` opacity in [0, 1] (default opaque).
    """
    images = np.asarray(images, np.float32)
    if alpha is None:
        alpha = np.ones(images.shape[:3], np.float32)
    os.makedirs(os.path.join(root, split), exist_ok=True)
    frames = []
    for i, (img, a) in enumerate(zip(images, np.asarray(alpha, np.float32))):
        rgba = np.concatenate([img, a[..., None]], axis=-1)
        data = np.round(np.clip(rgba, 0.0, 1.0) * 255).astype(np.uint8)
        with atomic.open_atomic(os.path.join(root, split, f"r_{i}.png")) as f:
            Image.fromarray(data, "RGBA").save(f, format="PNG")
        pose = np.asarray(poses[i], np.float64).tolist()
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": pose})
    path = os.path.join(root, f"transforms_{split}.json")
    atomic.write_json(
        path, {"camera_angle_x": float(fov_x), "frames": frames}, indent=1
    )
    return path
