"""Fuzzing the Blender ``transforms.json`` loader (see tests/core/fuzz.py)."""

import json
import math
import os
import shutil
import tempfile

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jaxsuite.nerf import blender
from tests.core import fuzz

FOV = 0.6911112070083618
POSES = [
    [[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, -1.0, -4.0], [0.0, 1.0, 0.0, 0.25], [0, 0, 0, 1]],
    [[0.0, -1.0, 0.0, 4.0], [1.0, 0.0, 0.0, 0.125], [0.0, 0.0, 1.0, 0.5], [0, 0, 0, 1]],
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 4.5], [0.0, 0.0, 1.0, -0.5], [0, 0, 0, 1]],
]


def _write_json():
    """The JSON text and the byte spans of [camera_angle_x, frame 0, 1, 2]."""
    text = '{"camera_angle_x": '
    spans = [(len(text), len(text) + len(repr(FOV)))]
    text += repr(FOV) + ', "frames": ['
    for i, pose in enumerate(POSES):
        frame = json.dumps({"file_path": f"./train/r_{i}", "transform_matrix": pose})
        spans.append((len(text), len(text) + len(frame)))
        text += frame + (", " if i + 1 < len(POSES) else "")
    return (text + "]}\n").encode(), spans


JSON, SPANS = _write_json()


def _dataset(root):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 4, 4, 3)).astype(np.float32)
    blender.save_split(root, "train", images, np.asarray(POSES), FOV)
    with open(os.path.join(root, "transforms_train.json"), "wb") as f:
        f.write(JSON)
    return blender.load_split(root, "train")


def _records(data):
    k = [np.asarray(data.K)]
    return k + [(np.asarray(p), np.asarray(i)) for p, i in zip(data.poses, data.images)]


def _same(a, b):
    if isinstance(a, tuple):
        return all(np.array_equal(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b)


def test_written_split_loads():
    root = tempfile.mkdtemp()
    data = _dataset(root)
    np.testing.assert_array_equal(data.poses, np.asarray(POSES, np.float32))
    focal = 2.0 / math.tan(FOV / 2)
    np.testing.assert_allclose(data.K[0, 0], focal, rtol=1e-6)


@fuzz.examples(300)
@given(data=st.data())
def test_fuzzed_transforms_fail_cleanly_or_read_what_was_written(tmp_path, data):
    base = str(tmp_path / "base")
    if not os.path.exists(base):
        _dataset(base)
    want = _records(blender.load_split(base, "train"))
    mutation = data.draw(fuzz.mutations(len(JSON)))
    root = tempfile.mkdtemp(dir=tmp_path)
    shutil.copytree(os.path.join(base, "train"), os.path.join(root, "train"))
    with open(os.path.join(root, "transforms_train.json"), "wb") as f:
        f.write(fuzz.apply(JSON, mutation))
    status, got = fuzz.load(lambda: blender.load_split(root, "train"))
    if status != "ok":
        return
    touched = None
    if mutation[0] == "flip":
        touched = fuzz.record_of(SPANS, mutation[1])
        touched = -1 if touched is None else touched
    fuzz.check_records(_records(got), want, touched, _same, "transforms_train.json")
