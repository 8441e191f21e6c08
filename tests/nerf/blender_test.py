"""Round trip of the NeRF-Synthetic format on a small set written here."""

import json
import math
import os

import numpy as np

from jaxsuite.core import cameras
from jaxsuite.nerf import blender


def test_load_composites_alpha_and_reads_poses(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32)
    alpha = rng.uniform(size=(3, 8, 8)).astype(np.float32)
    poses = np.asarray(cameras.random_poses(__import__("jax").random.key(1), 3, 4.0))
    fov = 0.6911112070083618
    blender.save_split(str(tmp_path), "train", rgb, poses, fov, alpha=alpha)
    with open(os.path.join(tmp_path, "transforms_train.json")) as f:
        meta = json.load(f)
    assert meta["frames"][1]["file_path"] == "./train/r_1"
    data = blender.load_split(str(tmp_path), "train", background=1.0)
    q_rgb = np.round(rgb * 255) / 255
    q_a = (np.round(alpha * 255) / 255)[..., None]
    np.testing.assert_allclose(data.images, q_rgb * q_a + (1 - q_a), atol=1e-5)
    np.testing.assert_allclose(data.poses, poses, atol=1e-6)
    focal = 0.5 * 8 / math.tan(0.5 * fov)
    np.testing.assert_allclose(
        data.K, [[focal, 0, 4], [0, focal, 4], [0, 0, 1]], rtol=1e-6
    )


def test_resize_averages_blocks(tmp_path):
    img = np.zeros((1, 4, 4, 3), np.float32)
    img[0, :2, :2] = 1.0  # top-left quarter white
    blender.save_split(str(tmp_path), "test", img, np.eye(4)[None], 0.5)
    data = blender.load_split(str(tmp_path), "test", size=2, background=0.0)
    np.testing.assert_allclose(
        data.images[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]], atol=1e-6
    )
    np.testing.assert_allclose(data.K[0, 2], 1.0)
