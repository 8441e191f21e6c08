"""Round trip of the NeRF-Synthetic format on a small set written here."""

import json
import math
import os

import numpy as np
import pytest

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


def _split(tmp_path, n=2):
    img = np.zeros((n, 4, 4, 3), np.float32)
    poses = np.repeat(np.eye(4)[None], n, axis=0)
    return blender.save_split(str(tmp_path), "train", img, poses, 0.5)


def _edit(path, fn):
    with open(path) as f:
        meta = json.load(f)
    fn(meta)
    with open(path, "w") as f:
        json.dump(meta, f)


@pytest.mark.parametrize(
    "edit,error,message",
    [
        (lambda m: m.pop("camera_angle_x"), ValueError, "camera_angle_x .* missing"),
        (lambda m: m.update(camera_angle_x=4.0), ValueError, r"expected an angle in"),
        (lambda m: m.update(frames=[]), ValueError, "non-empty list 'frames'"),
        (
            lambda m: m["frames"][1].pop("transform_matrix"),
            ValueError,
            "frame 1: transform_matrix must be 4 x 4",
        ),
        (
            lambda m: m["frames"][1]["transform_matrix"][3].__setitem__(0, 1.0),
            ValueError,
            r"frame 1: the last row of transform_matrix",
        ),
        (
            lambda m: m["frames"][0].update(file_path="./train/nope"),
            FileNotFoundError,
            r"frame 0: the image .*nope\.png does not exist",
        ),
    ],
)
def test_bad_transforms_name_the_file_and_frame(tmp_path, edit, error, message):
    path = _split(tmp_path)
    _edit(path, edit)
    with pytest.raises(error, match=message) as e:
        blender.load_split(str(tmp_path), "train")
    assert "transforms_train.json" in str(e.value)


def test_bad_json_and_images_are_named(tmp_path):
    path = _split(tmp_path)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"transforms_train\.json is not valid JSON"):
        blender.load_split(str(tmp_path), "train")
    path = _split(tmp_path)
    png = os.path.join(tmp_path, "train", "r_1.png")
    with open(png, "rb") as f:
        data = f.read()
    with open(png, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"frame 1: cannot read the image .*r_1\.png"):
        blender.load_split(str(tmp_path), "train")
    blender.save_split(
        str(tmp_path), "val", np.zeros((1, 6, 6, 3)), np.eye(4)[None], 0.5
    )
    os.replace(os.path.join(tmp_path, "val", "r_0.png"), png)
    with pytest.raises(ValueError, match="frame 1: .* is 6 x 6 pixels; frame 0 is 4"):
        blender.load_split(str(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match="No transforms_test.json"):
        blender.load_split(str(tmp_path), "test")
