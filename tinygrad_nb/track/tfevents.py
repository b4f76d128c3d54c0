"""TensorBoard event files without TensorFlow: a tiny protobuf encoder/decoder, TFRecord framing and CRC32C.

An event file is a sequence of TFRecords::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

where ``data`` is a serialized ``tensorflow.Event`` protobuf. Only the fields TensorBoard needs for scalars and
histograms are written (field numbers from tensorflow/core/util/event.proto and summary.proto)::

    Event          { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary        { repeated Value value = 1; }
    Summary.Value  { string tag = 1; float simple_value = 2; HistogramProto histo = 5; }
    HistogramProto { double min = 1; double max = 2; double num = 3; double sum = 4; double sum_squares = 5;
                     repeated double bucket_limit = 6 [packed]; repeated double bucket = 7 [packed]; }

:func:`read_events` reads a file back, checking both CRCs of every record (the tests use it; it also makes a quick
inspection tool).
"""
from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO


# -- CRC32C (Castagnoli), table-driven ----------------------------------------------------------------------------
def _make_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (crc32c(b"123456789") == 0xE3069283)."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord holding ``data``."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


# -- protobuf encoding --------------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 negatives are ten-byte varints
    out = bytearray()
    while True:
        bits = n & 0x7F
        n >>= 7
        if n:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _double(field: int, value: float) -> bytes:
    return _key(field, 1) + struct.pack("<d", value)


def _float(field: int, value: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", value)


def _bytes(field: int, value: bytes) -> bytes:
    return _key(field, 2) + _varint(len(value)) + value


def _packed_doubles(field: int, values: Sequence[float]) -> bytes:
    return _bytes(field, struct.pack(f"<{len(values)}d", *values))


def encode_event(wall_time: float, step: int = 0, file_version: str | None = None,
                 values: Sequence[bytes] = ()) -> bytes:
    """A serialized Event; ``values`` are serialized Summary.Value messages."""
    out = _double(1, wall_time) + _key(2, 0) + _varint(int(step))
    if file_version is not None:
        out += _bytes(3, file_version.encode())
    if values:
        out += _bytes(5, b"".join(_bytes(1, v) for v in values))
    return out


def scalar_value(tag: str, value: float) -> bytes:
    """A Summary.Value with ``simple_value``."""
    return _bytes(1, tag.encode()) + _float(2, value)


def histogram_value(tag: str, counts: Sequence[float], edges: Sequence[float], vmin: float, vmax: float,
                    num: float, total: float, sum_squares: float) -> bytes:
    """A Summary.Value with a HistogramProto; bucket i counts values in (edges[i], edges[i+1]]."""
    histo = (_double(1, vmin) + _double(2, vmax) + _double(3, num) + _double(4, total) + _double(5, sum_squares)
             + _packed_doubles(6, [float(e) for e in edges[1:]]) + _packed_doubles(7, [float(c) for c in counts]))
    return _bytes(1, tag.encode()) + _bytes(5, histo)


# -- writing ------------------------------------------------------------------------------------------------------
class EventFileWriter:
    """Appends events to ``<logdir>/events.out.tfevents.<time>.<host>.<pid>`` (TensorBoard's naming)."""

    def __init__(self, logdir: str | os.PathLike[str]):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.tinygrad_nb"
        self.path = self.logdir / name
        self._file: BinaryIO | None = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self.write(encode_event(time.time(), 0, file_version="brain.Event:2"))
        self.flush()

    def write(self, event: bytes) -> None:
        if self._file is None:
            raise ValueError(f"{self.path}: the event file is closed")
        self._file.write(frame(event))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# -- reading ------------------------------------------------------------------------------------------------------
class CorruptRecordError(ValueError):
    """A TFRecord whose length or data CRC does not match."""


def read_records(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The data of every TFRecord in the file, checking both CRCs."""
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise CorruptRecordError(f"{path}: truncated record header at byte {offset}")
            (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
            if masked_crc32c(header[:8]) != length_crc:
                raise CorruptRecordError(f"{path}: bad length CRC at byte {offset}")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise CorruptRecordError(f"{path}: truncated record at byte {offset}")
            if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise CorruptRecordError(f"{path}: bad data CRC at byte {offset}")
            offset += 12 + length + 4
            yield data


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a serialized message: varints as int, fixed as bytes, others as bytes."""
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        elif wire == 2:
            length, i = _read_varint(data, i)
            value, i = data[i:i + length], i + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def decode_event(data: bytes) -> dict[str, Any]:
    """``{"wall_time", "step", "file_version"?, "scalars": {tag: value}, "histograms": {tag: {...}}}``."""
    event: dict[str, Any] = {"wall_time": 0.0, "step": 0, "scalars": {}, "histograms": {}}
    for field, _, value in _fields(data):
        if field == 1:
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif field == 2:
            event["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 3:
            event["file_version"] = value.decode()
        elif field == 5:
            for f, _, v in _fields(value):
                if f == 1:
                    _decode_value(v, event)
    return event


def _decode_value(data: bytes, event: dict[str, Any]) -> None:
    tag, scalar, histo = "", None, None
    for field, _, value in _fields(data):
        if field == 1:
            tag = value.decode()
        elif field == 2:
            scalar = struct.unpack("<f", value)[0]
        elif field == 5:
            histo = {}
            names = {1: "min", 2: "max", 3: "num", 4: "sum", 5: "sum_squares"}
            for f, _, v in _fields(value):
                if f in names:
                    histo[names[f]] = struct.unpack("<d", v)[0]
                elif f in (6, 7):
                    histo["bucket_limit" if f == 6 else "bucket"] = list(struct.unpack(f"<{len(v) // 8}d", v))
    if scalar is not None:
        event["scalars"][tag] = scalar
    if histo is not None:
        event["histograms"][tag] = histo


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every event of an event file, decoded (CRCs checked)."""
    return [decode_event(record) for record in read_records(path)]
