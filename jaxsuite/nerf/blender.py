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
"""

from __future__ import annotations

import json
import math
import os

import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxsuite.core import cameras
from jaxsuite.nerf.scenes import PosedImages


def _read_png(path: str, size: int | None) -> np.ndarray:
    """Reads a PNG as float32 RGBA ``(H, W, 4)`` in [0, 1], optionally resized."""
    img = Image.open(path).convert("RGBA")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(img, np.float32) / 255.0


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
    """
    with open(os.path.join(root, f"transforms_{split}.json")) as f:
        meta = json.load(f)
    images, poses = [], []
    for frame in meta["frames"]:
        path = os.path.join(root, os.path.normpath(frame["file_path"]))
        if not path.endswith(".png"):
            path += ".png"
        rgba = _read_png(path, size)
        alpha = rgba[..., 3:4]
        images.append(rgba[..., :3] * alpha + background * (1.0 - alpha))
        poses.append(np.asarray(frame["transform_matrix"], np.float32))
    h, w = images[0].shape[:2]
    K = cameras.intrinsics(w, h, fov_x_deg=math.degrees(meta["camera_angle_x"]))
    return PosedImages(jnp.asarray(np.stack(images)), jnp.asarray(np.stack(poses)), K)


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
        Image.fromarray(data, "RGBA").save(os.path.join(root, split, f"r_{i}.png"))
        pose = np.asarray(poses[i], np.float64).tolist()
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": pose})
    path = os.path.join(root, f"transforms_{split}.json")
    with open(path, "w") as f:
        json.dump({"camera_angle_x": float(fov_x), "frames": frames}, f, indent=1)
    return path
