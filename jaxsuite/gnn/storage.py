"""A memory-mapped node-feature store that counts its I/O, and a cost model.

The features live in a raw float32 file ``[N, D]`` read through ``np.memmap``.
The operating system's page cache would hide real disk reads on a machine with
much memory, so the store *counts* what a storage device would have to read:
each ``read`` touches the distinct ``page_bytes`` pages that hold the rows
asked for, and the modelled I/O time is ``pages / iops + pages * page_bytes /
bandwidth`` (an NVMe SSD reads whole pages; IOPS and bandwidth are settings).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxsuite.core import atomic


@dataclasses.dataclass(frozen=True)
class IOModel:
    """Throughput model of the storage device and the links.

    Attributes:
      page_bytes: read granularity of the device (4096 B).
      iops: random page reads per second.
      storage_bandwidth: bytes per second from storage.
      link_bandwidth: device-to-device bytes per second.
      host_bandwidth: host-to-device bytes per second (victim prefetches).
    """

    page_bytes: int = 4096
    iops: float = 1.0e6
    storage_bandwidth: float = 6.0e9
    link_bandwidth: float = 100.0e9
    host_bandwidth: float = 25.0e9

    def storage_seconds(self, pages: float) -> float:
        """Modelled time to read ``pages`` pages: pages/IOPS + bytes/bandwidth."""
        return pages / self.iops + pages * self.page_bytes / self.storage_bandwidth

    def link_seconds(self, nbytes: float) -> float:
        return nbytes / self.link_bandwidth

    def host_seconds(self, nbytes: float) -> float:
        return nbytes / self.host_bandwidth


def write_features(path: str, features: np.ndarray, *, chunk_rows: int = 65536) -> str:
    """Writes ``features`` [N, D] as a raw float32 file in row chunks; returns path.

    The file appears whole or not at all (``jaxsuite.core.atomic``).
    """
    features = np.asarray(features)
    with atomic.open_atomic(path, "wb") as f:
        for start in range(0, features.shape[0], chunk_rows):
            f.write(
                np.ascontiguousarray(features[start : start + chunk_rows], np.float32)
            )
    return path


class FeatureStore:
    """Reads rows of a raw float32 ``[N, D]`` file and counts pages and bytes.

    Args:
      path: the file (``write_features`` writes one).
      num_nodes: N.
      dim: D.
      page_bytes: read granularity used for counting.

    Attributes:
      pages_read: distinct pages touched, summed over ``read`` calls.
      rows_read: rows returned, summed over calls.
      reads: number of ``read`` calls that returned at least one row.
    """

    def __init__(
        self,
        path: str,
        num_nodes: int,
        dim: int,
        *,
        page_bytes: int = 4096,
        offset: int = 0,
    ):
        self.path = path
        self.num_nodes = int(num_nodes)
        self.dim = int(dim)
        self.page_bytes = int(page_bytes)
        self.row_bytes = 4 * self.dim
        expected = self.num_nodes * self.row_bytes
        size = os.path.getsize(path) - offset
        if size != expected:
            raise ValueError(f"{path} has {size} bytes, expected {expected} for [N, D]")
        self._data = np.memmap(
            path, np.float32, "r", offset=offset, shape=(self.num_nodes, self.dim)
        )
        self.reset_stats()

    @classmethod
    def from_npy(cls, path: str, *, page_bytes: int = 4096) -> FeatureStore:
        """Opens a float32 ``[N, D]`` ``.npy`` file (e.g. IGB's ``node_feat.npy``)."""
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
        if dtype != np.float32 or fortran or len(shape) != 2:
            raise ValueError(f"{path}: need a C-ordered float32 [N, D] array")
        return cls(path, shape[0], shape[1], page_bytes=page_bytes, offset=offset)

    def reset_stats(self) -> None:
        self.pages_read = 0
        self.rows_read = 0
        self.reads = 0

    def count(self, ids: np.ndarray) -> int:
        """Number of distinct pages that reading ``ids`` touches."""
        ids = np.asarray(ids, np.int64)
        if ids.size == 0:
            return 0
        first = ids * self.row_bytes // self.page_bytes
        last = ((ids + 1) * self.row_bytes - 1) // self.page_bytes
        span = int((last - first).max())
        pages = np.concatenate([np.minimum(first + k, last) for k in range(span + 1)])
        return int(np.unique(pages).size)

    def read(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` ([M] int) as a [M, D] float32 copy; counts their pages."""
        ids = np.asarray(ids, np.int64)
        if ids.size == 0:
            return np.zeros((0, self.dim), np.float32)
        if ids.min() < 0 or ids.max() >= self.num_nodes:
            raise IndexError("feature row id out of range")
        self.pages_read += self.count(ids)
        self.rows_read += int(ids.size)
        self.reads += 1
        return np.array(self._data[ids], np.float32)

    def peek(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` without counting (for tests and evaluation)."""
        return np.array(self._data[np.asarray(ids, np.int64)], np.float32)

    @property
    def bytes_read(self) -> int:
        """Bytes the device read: whole pages."""
        return self.pages_read * self.page_bytes
