"""Hot-path encoding for the fan-out: each tick is encoded once per encoding, frames are spliced.

Per flush, the fan-out calls :func:`encode_ticks_json` (and :func:`encode_ticks_msgpack` when
a connection uses MessagePack) once for the new ticks, which gives one *piece* per symbol. For
each connection it then picks the pieces of the symbols it subscribes to and wraps them with
:func:`frame_ticks_json` / :func:`frame_ticks_msgpack`: the frame is built by concatenation,
never by re-encoding, so the work per connection grows with flushes and symbols, not ticks.
The same holds for quotes (:func:`encode_quotes_json` gives each symbol's latest quote).

A :class:`Piece` is ``bytes`` that also knows how many ticks it holds (``ticks``: for the
MessagePack array header, and for the fan-out's delivered-ticks figures):

* JSON: the comma-joined objects of the symbol's ticks, ``{"s":…,"b":…,…},{…}``;
* MessagePack: the concatenated maps of the symbol's ticks, without an array header.

Neither is a document by itself; a frame is ``head + pieces + tail``.

Guarantees:

* a frame is byte-for-byte what encoding the matching :mod:`~tickwire.protocol.messages`
  Struct gives (``Ticks``, ``Quotes``, ``BarMessage``), so one schema describes both paths;
* floats are written in the shortest form that reads back to the same ``float`` (JSON), or as
  IEEE doubles (MessagePack): prices round-trip exactly; integers are exact;
* within a piece, ticks are in offset order; pieces and frames never mix encodings.

How: ticks become small :class:`~tickwire.protocol.messages.WireTick` Structs (no
``array_like``: the wire format is objects) that msgspec encodes one symbol's list at a time.
``bench/encode_bench.py`` compares this with pre-formatted bytes; the Structs are faster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from ..model import Bar, JournaledBatch, PriceSide, Quote
from .messages import (
    JSON_ENCODER,
    MSGPACK_ENCODER,
    BarMessage,
    BarState,
    Encoding,
    Interval,
    ServerMessage,
    WireTick,
)

__all__ = [
    "CODECS",
    "Codec",
    "Piece",
    "encode_bar_json",
    "encode_bar_msgpack",
    "encode_quotes_json",
    "encode_quotes_msgpack",
    "encode_ticks_json",
    "encode_ticks_msgpack",
    "frame_quotes_json",
    "frame_quotes_msgpack",
    "frame_ticks_json",
    "frame_ticks_msgpack",
    "wire_quote",
    "wire_ticks",
]

_SORT_ABOVE: Final = 512
"""Batches at least this long are grouped by a stable argsort instead of a Python loop."""

_JOIN_TWICE_UP_TO: Final = 16 * 1024
"""JSON frames estimated up to this size are built with two joins (see :func:`_frame_json`)."""

_json_encode = JSON_ENCODER.encode
_msgpack_encode = MSGPACK_ENCODER.encode


def _msgpack_str(text: str) -> bytes:
    return _msgpack_encode(text)


class Piece(bytes):
    """Encoded ticks of one symbol (see the module docstring), holding ``ticks`` ticks."""

    ticks: int

    @classmethod
    def of(cls, data: bytes | memoryview, ticks: int) -> Piece:
        """A piece of ``data`` holding ``ticks`` ticks."""
        piece = cls(data)
        piece.ticks = ticks
        return piece

    def __repr__(self) -> str:
        return f"Piece({bytes(self)!r}, ticks={self.ticks})"


_ticks_of: Callable[[Piece], int] = attrgetter("ticks")


def _msgpack_array_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    if count < 0x10000:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


_TICKS_JSON_HEAD: Final = b'{"type":"ticks","ticks":['
_QUOTES_JSON_HEAD: Final = b'{"type":"quotes","quotes":['
_JSON_TAIL: Final = b"]}"
_TICKS_MSGPACK_HEAD: Final = (
    b"\x82" + _msgpack_str("type") + _msgpack_str("ticks") + _msgpack_str("ticks")
)
_QUOTES_MSGPACK_HEAD: Final = (
    b"\x82" + _msgpack_str("type") + _msgpack_str("quotes") + _msgpack_str("quotes")
)


# -- grouping -----------------------------------------------------------------------------


TickBatches = JournaledBatch | Iterable[JournaledBatch]


class TickEncoder(Protocol):
    """Encodes the ticks of batches per symbol (of ``only``, if given): see the codecs."""

    def __call__(
        self, batches: TickBatches, only: frozenset[str] | None = None
    ) -> dict[str, Piece]: ...


def wire_ticks(
    batches: TickBatches, only: frozenset[str] | None = None
) -> dict[str, list[WireTick]]:
    """The ticks of ``batches`` as :class:`WireTick` lists by symbol, each in offset order;
    only the symbols in ``only`` when it is given (the others are not even built).

    Several batches (given in offset order) merge; symbols appear in the order of the first
    batch's ``symbols`` that has them.
    """
    if isinstance(batches, JournaledBatch):
        return _group(batches, only)
    out: dict[str, list[WireTick]] = {}
    for batch in batches:
        for name, ticks in _group(batch, only).items():
            have = out.get(name)
            if have is None:
                out[name] = ticks
            else:
                have.extend(ticks)
    return out


def _group(batch: JournaledBatch, only: frozenset[str] | None) -> dict[str, list[WireTick]]:
    n = len(batch)
    names = batch.symbols
    epoch = batch.epoch
    first = batch.first_offset
    picked: npt.NDArray[np.int64] | None = None  # positions of the wanted ticks; None: all
    if only is not None:
        wanted = [i for i, name in enumerate(names) if name in only]
        if not wanted:
            return {}
        if len(wanted) < len(names):
            picked = np.flatnonzero(np.isin(batch.sym, wanted))
            n = len(picked)
    if picked is None and n < _SORT_ABOVE:
        lists: list[list[WireTick]] = [[] for _ in names]
        for i, (s, q, t, b, a) in enumerate(
            zip(
                batch.sym.tolist(),
                batch.seq.tolist(),
                batch.ts.tolist(),
                batch.bid.tolist(),
                batch.ask.tolist(),
                strict=True,
            )
        ):
            lists[s].append(WireTick(names[s], b, a, t, epoch, first + i, q))
        return {names[i]: ticks for i, ticks in enumerate(lists) if ticks}
    # large batch or a selection: one stable sort, then one Struct per tick built by map()
    if picked is None:
        order_idx = np.argsort(batch.sym, kind="stable")
        counts = np.bincount(batch.sym, minlength=len(names)).tolist()
    else:
        order_idx = picked[np.argsort(batch.sym[picked], kind="stable")]
        counts = np.bincount(batch.sym[picked], minlength=len(names)).tolist()
    sorted_sym = batch.sym[order_idx]
    name_col = np.asarray(names, dtype=object)[sorted_sym].tolist()
    structs = list(
        map(
            WireTick,
            name_col,
            batch.bid[order_idx].tolist(),
            batch.ask[order_idx].tolist(),
            batch.ts[order_idx].tolist(),
            repeat(epoch, n),
            (order_idx + first).tolist(),
            batch.seq[order_idx].tolist(),
        )
    )
    out: dict[str, list[WireTick]] = {}
    pos = 0
    for s, count in enumerate(counts):
        if count:
            out[names[s]] = structs[pos : pos + count]
            pos += count
    return out


def _latest(batches: JournaledBatch | Iterable[JournaledBatch]) -> dict[str, WireTick]:
    """The last tick of each symbol in ``batches`` (later batches win)."""
    out: dict[str, WireTick] = {}
    for batch in (batches,) if isinstance(batches, JournaledBatch) else batches:
        n = len(batch)
        if n == 0:
            continue
        last = np.full(len(batch.symbols), -1, dtype=np.int64)
        np.maximum.at(last, batch.sym, np.arange(n, dtype=np.int64))
        for s, i in enumerate(last.tolist()):
            if i >= 0:
                name = batch.symbols[s]
                out.pop(name, None)  # keep symbols in order of their latest tick's batch
                out[name] = WireTick(
                    name,
                    float(batch.bid[i]),
                    float(batch.ask[i]),
                    int(batch.ts[i]),
                    batch.epoch,
                    batch.first_offset + i,
                    int(batch.seq[i]),
                )
    return out


def wire_quote(quote: Quote) -> WireTick:
    """A live-state :class:`~tickwire.model.Quote` in its wire form."""
    return WireTick(
        quote.symbol, quote.bid, quote.ask, quote.ts, quote.epoch, quote.offset, quote.seq
    )


# -- JSON ---------------------------------------------------------------------------------


def encode_ticks_json(batches: TickBatches, only: frozenset[str] | None = None) -> dict[str, Piece]:
    """Per symbol (of ``only``, if given), its ticks as comma-joined JSON objects; each tick is
    encoded once."""
    out: dict[str, Piece] = {}
    for name, ticks in wire_ticks(batches, only).items():
        piece = out[name] = Piece(_json_encode(ticks)[1:-1])  # inline: this runs per symbol
        piece.ticks = len(ticks)
    return out


def frame_ticks_json(pieces: Sequence[bytes]) -> bytes:
    """``{"type":"ticks","ticks":[…]}`` around pieces from :func:`encode_ticks_json`."""
    count = len(pieces)  # _frame_json, inlined: this runs per connection per flush
    if count > 1 and len(pieces[0]) * count > _JOIN_TWICE_UP_TO:
        parts = list(pieces)
        parts[0] = _TICKS_JSON_HEAD + parts[0]
        parts[-1] = parts[-1] + _JSON_TAIL
        return b",".join(parts)
    return b"".join((_TICKS_JSON_HEAD, b",".join(pieces), _JSON_TAIL))


def _frame_json(head: bytes, pieces: Sequence[bytes]) -> bytes:
    """``head`` + comma-joined ``pieces`` + ``]}``.

    Small frames take two C-level joins (the fastest for them). A large frame joined twice
    would hold two large buffers at once, which costs 20-40 times more here than the copies
    themselves (allocator effects), so for an estimated size over :data:`_JOIN_TWICE_UP_TO`
    the head and tail are glued to the first and last piece and the frame is joined once.
    """
    count = len(pieces)
    if count > 1 and len(pieces[0]) * count > _JOIN_TWICE_UP_TO:
        parts = list(pieces)
        parts[0] = head + parts[0]
        parts[-1] = parts[-1] + _JSON_TAIL
        return b",".join(parts)
    return b"".join((head, b",".join(pieces), _JSON_TAIL))


def encode_quotes_json(batches: JournaledBatch | Iterable[JournaledBatch]) -> dict[str, bytes]:
    """Per symbol, its latest tick in ``batches`` as one JSON object (a quote piece)."""
    return {name: _json_encode(tick) for name, tick in _latest(batches).items()}


def frame_quotes_json(pieces: Sequence[bytes]) -> bytes:
    """``{"type":"quotes","quotes":[…]}`` around pieces from :func:`encode_quotes_json`."""
    return _frame_json(_QUOTES_JSON_HEAD, pieces)


def encode_bar_json(bar: Bar, interval: Interval, side: PriceSide, state: BarState) -> bytes:
    """One ``bar`` message in JSON (encode once, send to every subscriber of the bar)."""
    return _json_encode(_bar_message(bar, interval, side, state))


# -- MessagePack --------------------------------------------------------------------------


def encode_ticks_msgpack(
    batches: TickBatches, only: frozenset[str] | None = None
) -> dict[str, Piece]:
    """Per symbol (of ``only``, if given), its tick maps concatenated (no array header); each
    tick is encoded once."""
    out: dict[str, Piece] = {}
    for name, ticks in wire_ticks(batches, only).items():
        count = len(ticks)
        skip = 1 if count < 16 else 3 if count < 0x10000 else 5  # the array header
        piece = out[name] = Piece(_msgpack_encode(ticks)[skip:])
        piece.ticks = count
    return out


def frame_ticks_msgpack(pieces: Sequence[Piece]) -> bytes:
    """The ``ticks`` message as MessagePack, spliced from :func:`encode_ticks_msgpack` pieces."""
    total = sum(map(_ticks_of, pieces))
    return b"".join((_TICKS_MSGPACK_HEAD, _msgpack_array_header(total), *pieces))


def encode_quotes_msgpack(batches: JournaledBatch | Iterable[JournaledBatch]) -> dict[str, bytes]:
    """Per symbol, its latest tick in ``batches`` as one MessagePack map (a quote piece)."""
    return {name: _msgpack_encode(tick) for name, tick in _latest(batches).items()}


def frame_quotes_msgpack(pieces: Sequence[bytes]) -> bytes:
    """The ``quotes`` message as MessagePack around pieces from :func:`encode_quotes_msgpack`."""
    return b"".join((_QUOTES_MSGPACK_HEAD, _msgpack_array_header(len(pieces)), *pieces))


def encode_bar_msgpack(bar: Bar, interval: Interval, side: PriceSide, state: BarState) -> bytes:
    """One ``bar`` message in MessagePack."""
    return _msgpack_encode(_bar_message(bar, interval, side, state))


def _bar_message(bar: Bar, interval: Interval, side: PriceSide, state: BarState) -> BarMessage:
    return BarMessage(
        bar.symbol,
        interval,
        side,
        bar.start,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.ticks,
        state,
    )


# -- one object per encoding --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Codec:
    """Everything the fan-out and the session need for one encoding, under uniform names.

    ``binary`` says which WebSocket frame type carries it (text for JSON, binary for
    MessagePack).
    """

    encoding: Encoding
    binary: bool
    encode: Callable[[ServerMessage], bytes]
    encode_ticks: TickEncoder
    frame_ticks: Callable[[Sequence[Piece]], bytes]
    encode_quotes: Callable[[JournaledBatch | Iterable[JournaledBatch]], dict[str, bytes]]
    frame_quotes: Callable[[Sequence[bytes]], bytes]
    encode_bar: Callable[[Bar, Interval, PriceSide, BarState], bytes]


CODECS: Final[Mapping[Encoding, Codec]] = {
    Encoding.JSON: Codec(
        encoding=Encoding.JSON,
        binary=False,
        encode=_json_encode,
        encode_ticks=encode_ticks_json,
        frame_ticks=frame_ticks_json,
        encode_quotes=encode_quotes_json,
        frame_quotes=frame_quotes_json,
        encode_bar=encode_bar_json,
    ),
    Encoding.MSGPACK: Codec(
        encoding=Encoding.MSGPACK,
        binary=True,
        encode=_msgpack_encode,
        encode_ticks=encode_ticks_msgpack,
        frame_ticks=frame_ticks_msgpack,
        encode_quotes=encode_quotes_msgpack,
        frame_quotes=frame_quotes_msgpack,
        encode_bar=encode_bar_msgpack,
    ),
}
"""The codec of each encoding."""
