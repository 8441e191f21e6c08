"""TensorBoard event files written without TensorFlow.

An event file is a TFRecord stream of serialised ``tensorflow.Event`` protos.
The few messages needed (scalars and text) are encoded here by hand, so the
writer depends on nothing but the standard library; TensorBoard reads the files
as it reads TensorFlow's own.

Record framing (TFRecord): ``uint64 length | uint32 masked_crc32c(length) |
data | uint32 masked_crc32c(data)``, little endian, with CRC-32C (Castagnoli).
"""

from __future__ import annotations

import os
import socket
import struct
import time

# --- CRC-32C -----------------------------------------------------------------

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC that TFRecord stores."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """Frames ``data`` as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


# --- protobuf wire encoding -----------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _event(step: int, *, summary: bytes | None = None, file_version: str = "") -> bytes:
    out = _key(1, 1) + struct.pack("<d", time.time()) + _key(2, 0) + _varint(step)
    if file_version:
        out += _bytes_field(3, file_version.encode())
    if summary is not None:
        out += _bytes_field(5, summary)
    return out


def scalar_summary(values: dict[str, float]) -> bytes:
    """A ``Summary`` proto holding one ``simple_value`` per tag."""
    out = b""
    for tag, value in values.items():
        value_msg = _bytes_field(1, tag.encode()) + _key(2, 5)
        value_msg += struct.pack("<f", float(value))
        out += _bytes_field(1, value_msg)
    return out


def text_summary(tag: str, text: str) -> bytes:
    """A ``Summary`` proto with one string tensor for TensorBoard's text tab."""
    plugin_data = _bytes_field(1, b"text")
    metadata = _bytes_field(1, plugin_data)
    tensor = _key(1, 0) + _varint(7)  # dtype DT_STRING
    tensor += _bytes_field(2, b"")  # scalar shape
    tensor += _bytes_field(8, text.encode())
    value_msg = _bytes_field(1, tag.encode())
    value_msg += _bytes_field(8, tensor) + _bytes_field(9, metadata)
    return _bytes_field(1, value_msg)


class EventFileWriter:
    """Appends events to ``logdir/events.out.tfevents.<time>.<host>``."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._file.write(tfrecord(_event(0, file_version="brain.Event:2")))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._file.write(tfrecord(_event(step, summary=scalar_summary(values))))

    def text(self, step: int, tag: str, text: str) -> None:
        self._file.write(tfrecord(_event(step, summary=text_summary(tag, text))))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
