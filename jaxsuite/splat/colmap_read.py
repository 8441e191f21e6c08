"""Readers of COLMAP's ``cameras``, ``images`` and ``points3D`` files.

Text (``.txt``) and binary (``.bin``) forms, as COLMAP writes them; see
``jaxsuite.splat.colmap`` for the model loader. Every reader checks what it
reads and raises ``ValueError`` naming the file, the line or record, and what
was expected: cut files (text files must end with a newline, binary files
must hold exactly the records their header announces), header counts
(``# Number of points: 5``), field counts, unknown camera models, parameter
counts, zero quaternions, non-finite values, duplicate ids.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

import numpy as np

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


_MIN_QUAT_NORM = 1e-8
_MODEL_IDS = {name: (mid, n) for mid, (name, n) in CAMERA_MODELS.items()}
_HEADER_COUNT = re.compile(r"#\s*Number of (cameras|images|points)\s*:\s*(\d+)")


class _Text:
    """The data lines of a COLMAP text file, with line numbers for messages."""

    def __init__(self, path: str, kind: str):
        self.path = path
        with open(path, "rb") as f:
            raw = f.read()
        if not raw:
            raise ValueError(f"{path} is empty; expected a COLMAP {kind} list.")
        if not raw.endswith(b"\n"):
            raise ValueError(
                f"{path} does not end with a newline: the file is cut (COLMAP ends "
                "every line with one)."
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e}).") from None
        self.count = None  # what the header says, when it says it
        self.lines: list[tuple[int, str]] = []
        for number, line in enumerate(text.split("\n")[:-1], start=1):
            if line.startswith("#"):
                m = _HEADER_COUNT.match(line)
                if m:
                    self.count = int(m.group(2))
                continue
            self.lines.append((number, line.strip()))
        if self.count is None and not any(line for _, line in self.lines):
            raise ValueError(
                f"{path} holds no {kind} and no '# Number of' header line: the file "
                "is empty or cut."
            )

    def error(self, number: int, line: str, problem: str, expected: str) -> ValueError:
        shown = line if len(line) <= 120 else line[:117] + "..."
        return ValueError(
            f"{self.path}, line {number}: {problem}; expected {expected}, got "
            f"{shown!r}."
        )

    def check_count(self, found: int, what: str) -> None:
        if self.count is not None and found != self.count:
            raise ValueError(
                f"{self.path}: the header announces {self.count} {what} but the "
                f"file holds {found} (cut or corrupted file)."
            )


def _int(word: str, lo: int, hi: int) -> int:
    value = int(word)  # ValueError for non-integers
    if not lo <= value <= hi:
        raise ValueError(f"{value} is outside [{lo}, {hi}]")
    return value


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite(values) -> np.ndarray:
    """``values`` as float64, refusing non-finite ones and any beyond float32."""
    values = np.asarray(values, float)
    if not np.all(np.abs(values) <= _FLOAT32_MAX):  # False for NaN too
        raise ValueError(f"a value of {values.tolist()} is not finite or too large")
    return values


def _floats(words: list[str]) -> np.ndarray:
    return _finite([float(w) for w in words])


_UINT32 = (1 << 32) - 1
_CAMERA_FIELDS = "'CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]'"
_IMAGE_FIELDS = "'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME' (10 fields)"
_POINT_FIELDS = "'POINT3D_ID X Y Z R G B ERROR TRACK[] as (IMAGE_ID, POINT2D_IDX)'"


def _camera_from(
    cid: int, model: str, width: int, height: int, params: np.ndarray
) -> Camera:
    """A checked camera; raises ValueError with what is wrong."""
    if model not in _MODEL_IDS:
        raise ValueError(f"unknown camera model {model!r}")
    want = _MODEL_IDS[model][1]
    if len(params) != want:
        raise ValueError(f"{model} has {want} parameters, not {len(params)}")
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise ValueError(f"image size {width} x {height} is not in [1, 2^31)")
    return Camera(cid, model, width, height, _finite(params))


def read_cameras_text(path: str) -> dict[int, Camera]:
    """``cameras.txt`` -> ``{camera_id: Camera}`` in file order.

    Raises:
      ValueError: naming the line and what was expected.
    """
    text = _Text(path, "camera")
    out = {}
    for number, line in text.lines:
        if not line:
            continue
        w = line.split()
        try:
            if len(w) < 4:
                raise ValueError("too few fields")
            cid = _int(w[0], 0, _UINT32)
            cam = _camera_from(
                cid,
                w[1],
                _int(w[2], 1, _UINT32),
                _int(w[3], 1, _UINT32),
                _floats(w[4:]),
            )
        except ValueError as e:
            raise text.error(number, line, str(e), _CAMERA_FIELDS) from None
        if cid in out:
            raise text.error(
                number, line, f"camera {cid} is defined twice", "unique ids"
            )
        out[cid] = cam
    text.check_count(len(out), "cameras")
    return out


def _check_quaternion(q: np.ndarray) -> None:
    q = _finite(q)
    if float(np.linalg.norm(q)) < _MIN_QUAT_NORM:
        raise ValueError(f"the quaternion {q.tolist()} is zero")


def read_images_text(path: str) -> dict[int, Image]:
    """``images.txt`` -> ``{image_id: Image}`` in file order.

    Each image takes two lines, the image and its 2D points (possibly empty),
    as COLMAP writes them.

    Raises:
      ValueError: naming the line and what was expected.
    """
    text = _Text(path, "image")
    lines = text.lines
    out = {}
    i = 0
    while i < len(lines):
        number, line = lines[i]
        if not line:
            i += 1
            continue
        w = line.split()
        try:
            if len(w) != 10:
                raise ValueError(f"{len(w)} fields")
            iid = _int(w[0], 0, _UINT32)
            q, t = _floats(w[1:5]), _floats(w[5:8])
            _check_quaternion(q)
            cid = _int(w[8], 0, _UINT32)
        except ValueError as e:
            raise text.error(number, line, str(e), _IMAGE_FIELDS) from None
        if i + 1 >= len(lines):
            raise text.error(
                number, line, f"image {iid} has no POINTS2D line", "one after it"
            )
        pnum, points = lines[i + 1]
        p = points.split()
        try:
            if len(p) % 3:
                raise ValueError(f"{len(p)} values, not a multiple of 3")
            for k in range(0, len(p), 3):
                _floats(p[k : k + 2])
                _int(p[k + 2], -1, _UINT32)
        except ValueError as e:
            raise text.error(
                pnum,
                points,
                f"bad POINTS2D line of image {iid} ({e})",
                "'X Y ID' triples",
            ) from None
        if iid in out:
            raise text.error(number, line, f"image {iid} is listed twice", "unique ids")
        out[iid] = Image(iid, q, t, cid, w[9])
        i += 2
    text.check_count(len(out), "images")
    return out


def read_points_text(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``points3D.txt`` -> ``(xyz (P, 3), rgb (P, 3) in [0, 1])`` in file order.

    Raises:
      ValueError: naming the line and what was expected.
    """
    text = _Text(path, "3D point")
    xyz, rgb, seen = [], [], set()
    for number, line in text.lines:
        if not line:
            continue
        w = line.split()
        try:
            if len(w) < 8 or (len(w) - 8) % 2:
                raise ValueError(f"{len(w)} fields")
            pid = _int(w[0], 0, (1 << 64) - 1)
            point = _floats(w[1:4])
            color = [_int(c, 0, 255) for c in w[4:7]]
            _floats(w[7:8])
            for k in range(8, len(w), 2):
                _int(w[k], 0, _UINT32)
                _int(w[k + 1], 0, _UINT32)
        except ValueError as e:
            raise text.error(number, line, str(e), _POINT_FIELDS) from None
        if pid in seen:
            raise text.error(number, line, f"point {pid} is listed twice", "unique ids")
        seen.add(pid)
        xyz.append(point)
        rgb.append(color)
    text.check_count(len(xyz), "points")
    return (
        np.array(xyz, float).reshape(-1, 3),
        np.array(rgb, float).reshape(-1, 3) / 255.0,
    )


class _Binary:
    """A COLMAP binary file read whole, with bounds-checked reads."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        self.pos = 0

    def read(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ValueError(
                f"{self.path}: the file ends at byte {len(self.data)} inside {what} "
                f"(needs {size} bytes from byte {self.pos}): it is cut."
            )
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def skip(self, count: int, size: int, what: str) -> None:
        if count < 0 or self.pos + count * size > len(self.data):
            raise ValueError(
                f"{self.path}: {what} claims {count} entries of {size} bytes, past "
                f"the end of the file at byte {len(self.data)} (cut or corrupted)."
            )
        self.pos += count * size

    def name(self, what: str) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise ValueError(
                f"{self.path}: the name of {what} runs to the end of the file "
                "without its NUL terminator: the file is cut."
            )
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        if not name or not name.isprintable():
            raise ValueError(
                f"{self.path}: the name of {what} ({raw[:60]!r}) is not a printable "
                "UTF-8 file name (corrupted file)."
            )
        return name

    def count(self, min_record: int, what: str) -> int:
        (num,) = self.read("Q", f"the number of {what}")
        if num * min_record > len(self.data) - self.pos:
            raise ValueError(
                f"{self.path}: the header announces {num} {what}, which cannot fit "
                f"in the {len(self.data) - self.pos} bytes that follow (cut or "
                "corrupted file)."
            )
        return num

    def done(self, num: int, what: str) -> None:
        if self.pos != len(self.data):
            raise ValueError(
                f"{self.path}: {len(self.data) - self.pos} bytes follow the {num} "
                f"{what} the header announces (corrupted file)."
            )

    def fail(self, index: int, what: str, problem: str) -> ValueError:
        return ValueError(f"{self.path}: {what} #{index}: {problem}.")


def read_cameras_binary(path: str) -> dict[int, Camera]:
    """``cameras.bin`` -> ``{camera_id: Camera}`` in file order.

    Raises:
      ValueError: naming the record and what was expected.
    """
    f = _Binary(path)
    num = f.count(24, "cameras")
    out = {}
    for i in range(num):
        what = f"camera #{i}"
        cid, model_id, width, height = f.read("iiQQ", what)
        if model_id not in CAMERA_MODELS:
            raise f.fail(i, "camera", f"unknown COLMAP camera model id {model_id}")
        name, nparams = CAMERA_MODELS[model_id]
        params = np.array(f.read("d" * nparams, what))
        try:
            cam = _camera_from(cid, name, width, height, params)
        except ValueError as e:
            raise f.fail(i, "camera", str(e)) from None
        if cid in out:
            raise f.fail(i, "camera", f"camera id {cid} is defined twice")
        out[cid] = cam
    f.done(num, "cameras")
    return out


def read_images_binary(path: str) -> dict[int, Image]:
    """``images.bin`` -> ``{image_id: Image}`` in file order.

    Raises:
      ValueError: naming the record and what was expected.
    """
    f = _Binary(path)
    num = f.count(73, "images")
    out = {}
    for i in range(num):
        what = f"image #{i}"
        iid, *rest = f.read("idddddddi", what)
        qvec, tvec, cid = np.array(rest[:4]), np.array(rest[4:7]), rest[7]
        try:
            _check_quaternion(qvec)
            _finite(tvec)
        except ValueError as e:
            raise f.fail(i, "image", str(e)) from None
        name = f.name(what)
        (npts,) = f.read("Q", f"the point count of {what}")
        f.skip(npts, 24, f"{what} ({name})")  # (x, y, point3D_id) per 2D point
        if iid in out:
            raise f.fail(i, "image", f"image id {iid} is listed twice")
        out[iid] = Image(iid, qvec, tvec, cid, name)
    f.done(num, "images")
    return out


def read_points_binary(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``points3D.bin`` -> ``(xyz (P, 3), rgb (P, 3) in [0, 1])`` in file order.

    Raises:
      ValueError: naming the record and what was expected.
    """
    f = _Binary(path)
    num = f.count(51, "points")
    xyz = np.zeros((num, 3))
    rgb = np.zeros((num, 3))
    for i in range(num):
        what = f"point #{i}"
        _, x, y, z, r, g, b, err = f.read("QdddBBBd", what)
        try:
            _finite([x, y, z, err])
        except ValueError as e:
            raise f.fail(i, "point", str(e)) from None
        (track,) = f.read("Q", f"the track length of {what}")
        f.skip(track, 8, what)
        xyz[i] = x, y, z
        rgb[i] = r, g, b
    f.done(num, "points")
    return xyz, rgb / 255.0
