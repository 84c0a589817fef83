"""The journal's on-disk format: segment headers and length-prefixed, CRC-checked records.

A segment file is::

    header   32 bytes: magic b"TWJRNL01", epoch u64, first_offset u64, reserved u64
    record*  length u32 | crc32(payload) u32 | payload (length bytes)

All integers are little-endian. A payload starts with a one-byte type:

* ``TICKS``: type u8, pad u8, nsyms u16, count u32, first_offset u64, then the symbol names
  (u8 length + ASCII each), zero-padded to a multiple of 8, then the columns ``ts`` i64,
  ``bid`` f64, ``ask`` f64, ``seq`` u64 and ``sym`` u16, each ``count`` long.
* ``CHECKPOINT``: type u8 then a msgpack :class:`Checkpoint`: the per-symbol state at the
  segment's start, so recovery never needs older segments.

Encoding is sans-I/O: bytes in, bytes out. The same ticks payload is what a network bus would
carry, so a batch is encoded once.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from ..model import JournaledBatch

Buffer = bytes | memoryview

__all__ = [
    "HEADER_SIZE",
    "RECORD_HEADER",
    "Checkpoint",
    "SymbolState",
    "decode_checkpoint",
    "decode_segment_header",
    "decode_ticks",
    "encode_checkpoint",
    "encode_record",
    "encode_segment_header",
    "encode_ticks",
    "encode_ticks_record",
    "record_kind",
    "ticks_span",
]

MAGIC = b"TWJRNL01"
HEADER = struct.Struct("<8sQQQ")
HEADER_SIZE = HEADER.size
RECORD_HEADER = struct.Struct("<II")
TICKS = 1
CHECKPOINT = 2
_TICKS_HEAD = struct.Struct("<BBHIQ")
MAX_RECORD_BYTES = 1 << 30


class SymbolState(msgspec.Struct, array_like=True, frozen=True):
    """The last tick of one symbol: its seq, time, prices and offset."""

    seq: int
    ts: int
    bid: float
    ask: float
    offset: int


class Checkpoint(msgspec.Struct, frozen=True):
    """Per-symbol state just before ``next_offset``."""

    next_offset: int
    symbols: dict[str, SymbolState]


_checkpoint_encoder = msgspec.msgpack.Encoder()
_checkpoint_decoder = msgspec.msgpack.Decoder(Checkpoint)


def encode_segment_header(epoch: int, first_offset: int) -> bytes:
    return HEADER.pack(MAGIC, epoch, first_offset, 0)


def decode_segment_header(data: bytes) -> tuple[int, int]:
    """Return ``(epoch, first_offset)``; raises ValueError if this is not a segment."""
    if len(data) < HEADER_SIZE:
        raise ValueError("segment header is truncated")
    magic, epoch, first_offset, _ = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a tickwire journal segment")
    return int(epoch), int(first_offset)


def encode_record(payload: bytes | bytearray | memoryview) -> bytes:
    """Frame a payload: length, CRC-32, payload."""
    return RECORD_HEADER.pack(len(payload), zlib.crc32(payload)) + bytes(payload)


def _ticks_parts(batch: JournaledBatch) -> list[Buffer]:
    names = b"".join(len(n).to_bytes(1, "little") + n.encode("ascii") for n in batch.symbols)
    head = _TICKS_HEAD.pack(TICKS, 0, len(batch.symbols), len(batch), batch.first_offset)
    pad = -(len(head) + len(names)) % 8
    parts: list[Buffer] = [head, names, b"\0" * pad]
    for column, dtype in (
        (batch.ts, "<i8"),
        (batch.bid, "<f8"),
        (batch.ask, "<f8"),
        (batch.seq, "<u8"),
        (batch.sym, "<u2"),
    ):
        array = np.ascontiguousarray(column, dtype=dtype)
        parts.append(memoryview(array.data).cast("B"))
    return parts


def ticks_record_size(batch: JournaledBatch) -> int:
    """The size of :func:`encode_ticks_record`'s result, without encoding."""
    names = sum(1 + len(n) for n in batch.symbols)
    head = _TICKS_HEAD.size + names
    return RECORD_HEADER.size + head + (-head % 8) + 34 * len(batch)  # 8+8+8+8+2 per tick


def encode_ticks(batch: JournaledBatch) -> bytes:
    """The ``TICKS`` payload of a batch (not yet framed)."""
    return b"".join(_ticks_parts(batch))


def encode_ticks_record(batch: JournaledBatch) -> bytes:
    """A framed ``TICKS`` record, built with a single copy of the columns."""
    parts = _ticks_parts(batch)
    crc = 0
    length = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
        length += len(part)
    return b"".join([RECORD_HEADER.pack(length, crc), *parts])


def record_kind(payload: bytes | memoryview) -> int:
    return payload[0]


def ticks_span(payload: bytes | memoryview) -> tuple[int, int]:
    """``(first_offset, count)`` of a ``TICKS`` payload, without decoding the columns."""
    _, _, _, count, first = _TICKS_HEAD.unpack_from(payload)
    return int(first), int(count)


def decode_ticks(payload: bytes | memoryview, epoch: int) -> JournaledBatch:
    """Decode a ``TICKS`` payload; arrays are views on ``payload`` (read-only)."""
    kind, _, nsyms, count, first = _TICKS_HEAD.unpack_from(payload)
    if kind != TICKS:
        raise ValueError(f"not a ticks record (type {kind})")
    pos = _TICKS_HEAD.size
    names: list[str] = []
    view = memoryview(payload)
    for _ in range(nsyms):
        n = view[pos]
        names.append(bytes(view[pos + 1 : pos + 1 + n]).decode("ascii"))
        pos += 1 + n
    pos += -pos % 8

    def column(dtype: str, size: int) -> npt.NDArray[Any]:
        nonlocal pos
        arr = np.frombuffer(payload, dtype=dtype, count=count, offset=pos)
        pos += size * count
        return arr

    ts = column("<i8", 8)
    bid = column("<f8", 8)
    ask = column("<f8", 8)
    seq = column("<u8", 8)
    sym = column("<u2", 2)
    return JournaledBatch(epoch, int(first), tuple(names), sym, seq, ts, bid, ask)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    return bytes([CHECKPOINT]) + _checkpoint_encoder.encode(checkpoint)


def decode_checkpoint(payload: bytes | memoryview) -> Checkpoint:
    if payload[0] != CHECKPOINT:
        raise ValueError("not a checkpoint record")
    return _checkpoint_decoder.decode(memoryview(payload)[1:])
