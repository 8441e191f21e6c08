"""Atomic file writes: a reader sees the old file or the new one, never a part.

Every file a run writes (JSON summaries, text, NumPy arrays, PNGs, raw
bytes) goes through this module: the content is written to a temporary file
in the destination's folder, flushed to disk, and renamed over the
destination (``os.replace`` is atomic on POSIX file systems). A run killed
mid-write leaves at most a stray ``.<name>.tmp-*`` file, which the next
write of the same name replaces; it never leaves a cut file that a resumed
run would read as data.

JSON is written strictly (``allow_nan=False``): NaN and infinities are not
JSON, so a value that cannot be computed must be written as a string that
says why (e.g. ``"not reached within 300 s"``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file that replaces ``path`` when the block ends cleanly.

    If the block raises, the temporary file is removed and ``path`` is left as
    it was. Parent folders are created.

    Args:
      path: the destination.
      mode: ``"wb"`` or ``"w"`` (text, UTF-8).

    Yields:
      The open temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(
            f"open_atomic writes whole files: mode 'w' or 'wb', not {mode!r}"
        )
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot write the file {path}: it is a directory.")
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def write_bytes(path: str, data: bytes) -> str:
    """Writes ``data`` to ``path`` atomically; returns ``path``."""
    with open_atomic(path, "wb") as f:
        f.write(data)
    return path


def write_text(path: str, text: str) -> str:
    """Writes ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with open_atomic(path, "w") as f:
        f.write(text)
    return path


def dumps_json(obj: Any, *, indent: int | None = 2, default: Any = None) -> str:
    """Strict JSON text of ``obj``.

    Raises:
      ValueError: ``obj`` holds a NaN or an infinity, naming where (a dotted
        path such as ``metrics.psnr.value``).
    """
    found = _find(obj, "")
    if found is not None:
        raise ValueError(
            f"{found[0]} is {found[1]!r}, which is not JSON. Report a "
            "value that cannot be computed as a string that says why (e.g. "
            '"not reached within 300 s").'
        )
    return json.dumps(obj, indent=indent, allow_nan=False, default=default)


def write_json(
    path: str, obj: Any, *, indent: int | None = 2, default: Any = None
) -> str:
    """Writes ``obj`` as strict JSON (see :func:`dumps_json`); returns ``path``."""
    return write_text(path, dumps_json(obj, indent=indent, default=default) + "\n")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def read_json(path: str) -> Any:
    """Reads a strict JSON file (no NaN or Infinity).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is not strict JSON, naming the file and the place.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def save_npy(path: str, array: Any) -> str:
    """Writes one array in ``.npy`` format atomically; returns ``path``."""
    with open_atomic(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return path


def save_npz(path: str, **arrays: Any) -> str:
    """Writes arrays in ``.npz`` format atomically; returns ``path``."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return write_bytes(path, buf.getvalue())


def _find(obj: Any, prefix: str) -> tuple[str, Any] | None:
    if isinstance(obj, float | np.floating):
        return None if np.isfinite(obj) else (prefix or "<value>", float(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc" and not np.all(np.isfinite(obj)):
            return prefix or "<value>", "an array with non-finite entries"
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = _find(value, f"{prefix}.{key}" if prefix else str(key))
            if found is not None:
                return found
        return None
    if isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            found = _find(value, f"{prefix}[{i}]")
            if found is not None:
                return found
    return None
