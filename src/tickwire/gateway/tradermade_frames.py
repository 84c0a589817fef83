"""TraderMade stream frames: legacy ``/feedadv`` ticks, V2 market and control frames.

Pure: no I/O, no event loop, no clock. The session (:mod:`.tradermade_session`) builds control
frames with it, and the asyncio shell (:mod:`.tradermade_stream`) gets each connection's tick
frames from a shared :class:`FrameCache`.

Guarantees:

* A legacy tick is ``{"symbol","ts","bid","ask","mid"}`` in that key order, ``ts`` is epoch
  milliseconds as a string, prices are JSON numbers.
* A V2 tick is ``{"a","av","b","bv","s","t","ts"}`` (the order of TraderMade's own frames),
  prices are strings, ``ts`` is ``YYYYMMDD-HH:MM:SS.mmm`` UTC; CSV and SSV carry the same fields
  in the same order.
* Prices agree with REST ``/live``: a catalogue pair streams its journaled bid and ask and a mid
  rounded to its decimals + 1; an inverse pair streams ``1/ask`` and ``1/bid`` (as
  :func:`tickwire.rates.derive_quote` derives them) rounded to 6 significant digits.
* Each tick is encoded at most once per streamed symbol and format while its batch is cached,
  whatever the number of connections that receive it; the cache holds at most ``max_bytes``
  of frames.
"""

from __future__ import annotations

import enum
import functools
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

from ..api.tradermade_wire import round_sig
from ..catalog import Catalog
from ..model import JournaledBatch

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "NO_VOLUME",
    "ErrorFrame",
    "FrameCache",
    "LoginOk",
    "LoginReject",
    "StreamSymbol",
    "SubAck",
    "TickFormat",
    "UnsubAck",
    "encode_control",
    "legacy_payload",
    "price_text",
    "quote_prices",
    "resolve_symbol",
    "select_frames",
    "v2_payload",
    "v2_timestamp",
    "ws_text_frame",
]

NO_VOLUME: Final = "0"
"""``av``/``bv`` of V2 frames: tickwire's ticks carry no volume, so the field says none."""
DEFAULT_CACHE_BYTES: Final = 16 * 1024 * 1024
"""Default bound on the frames a :class:`FrameCache` keeps."""
MERGED_SLICES: Final = 16
"""Merged bus slices a :class:`FrameCache` keeps besides its cached batches (each at most one
read, ``max_ticks_per_read`` ticks)."""
MAX_CODE_CHARS: Final = 16
_CODE = re.compile(r"[A-Z0-9._]{1,16}")
_I64 = npt.NDArray[np.int64]


class TickFormat(enum.StrEnum):
    """How ticks are written: the legacy feed's JSON, or one of V2's ``fmt`` values."""

    LEGACY = "legacy"
    JSON = "JSON"
    CSV = "CSV"
    SSV = "SSV"


# -- symbols and prices -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamSymbol:
    """A code a client may stream: a catalogue pair, or the reverse of one (``inverted``).

    ``source`` is the catalogue symbol whose ticks it is made of; ``decimals`` is that symbol's
    display precision (its bid and ask; a direct mid has one more).
    """

    code: str
    source: str
    inverted: bool
    base: str
    quote: str
    decimals: int


def resolve_symbol(catalog: Catalog, code: str) -> StreamSymbol | None:
    """The streamable symbol for ``code`` (upper case, stripped), or None if there is none.

    A code is streamable when it is in the catalogue, or is six characters whose halves
    reversed are in the catalogue (``USDEUR`` from ``EURUSD``). Crosses are not streamed.
    """
    if not _CODE.fullmatch(code):
        return None
    if code in catalog:
        s = catalog[code]
        return StreamSymbol(code, code, False, s.base, s.quote, s.decimals)
    if len(code) == 6:
        reverse = code[3:] + code[:3]
        if reverse in catalog:
            s = catalog[reverse]
            return StreamSymbol(code, reverse, True, s.quote, s.base, s.decimals)
    return None


def quote_prices(symbol: StreamSymbol, bid: float, ask: float) -> tuple[float, float, float]:
    """``(bid, ask, mid)`` of ``symbol`` from its source's bid and ask (see the module doc).

    For an inverse, ``bid`` and ``ask`` must be positive (callers drop other ticks).
    """
    if not symbol.inverted:
        return bid, ask, round((bid + ask) / 2, symbol.decimals + 1)
    inv_bid, inv_ask = 1 / ask, 1 / bid
    return round_sig(inv_bid), round_sig(inv_ask), round_sig((inv_bid + inv_ask) / 2)


def price_text(symbol: StreamSymbol, value: float) -> str:
    """A V2 price string: fixed to the pair's decimals (6 significant digits for an inverse).

    A direct price that needs more digits than the catalogue shows keeps them all.
    """
    if symbol.inverted:
        if value == 0 or not math.isfinite(value):
            return repr(value)
        places = max(0, 5 - math.floor(math.log10(abs(value))))
        return f"{value:.{places}f}"
    text = f"{value:.{symbol.decimals}f}"
    return text if float(text) == value else repr(value)


@functools.lru_cache(maxsize=8)
def _second_label(second: int) -> str:
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(second))


def v2_timestamp(ts_ns: int) -> str:
    """``YYYYMMDD-HH:MM:SS.mmm`` (UTC, milliseconds truncated) of a nanosecond timestamp."""
    ms = ts_ns // 1_000_000
    return f"{_second_label(ms // 1000)}.{ms % 1000:03d}"


# -- tick payloads ----------------------------------------------------------------------------


class _LegacyTick(msgspec.Struct, gc=False):
    symbol: str
    ts: str
    bid: float
    ask: float
    mid: float


class _V2Tick(msgspec.Struct, gc=False):
    a: str
    av: str
    b: str
    bv: str
    s: str
    t: str
    ts: str


_encoder = msgspec.json.Encoder()


def legacy_payload(symbol: StreamSymbol, ts_ns: int, bid: float, ask: float) -> bytes:
    """One legacy tick: ``{"symbol":"EURUSD","ts":"1614076641917","bid":…,"ask":…,"mid":…}``."""
    b, a, m = quote_prices(symbol, bid, ask)
    return _encoder.encode(_LegacyTick(symbol.code, str(ts_ns // 1_000_000), b, a, m))


def v2_payload(
    symbol: StreamSymbol,
    ts_ns: int,
    bid: float,
    ask: float,
    fmt: TickFormat,
    kind: str = "QUOTE",
) -> bytes:
    """One V2 market frame (``kind`` is ``QUOTE`` or ``LAST_QUOTE``) in ``fmt``."""
    b, a, _ = quote_prices(symbol, bid, ask)
    bid_text, ask_text = price_text(symbol, b), price_text(symbol, a)
    ts = v2_timestamp(ts_ns)
    if fmt is TickFormat.CSV or fmt is TickFormat.SSV:
        sep = "," if fmt is TickFormat.CSV else " "
        return sep.join((ask_text, NO_VOLUME, bid_text, NO_VOLUME, symbol.code, kind, ts)).encode()
    return _encoder.encode(_V2Tick(ask_text, NO_VOLUME, bid_text, NO_VOLUME, symbol.code, kind, ts))


def _payload(symbol: StreamSymbol, fmt: TickFormat, ts_ns: int, bid: float, ask: float) -> bytes:
    if fmt is TickFormat.LEGACY:
        return legacy_payload(symbol, ts_ns, bid, ask)
    return v2_payload(symbol, ts_ns, bid, ask, fmt)


def ws_text_frame(payload: bytes) -> bytes:
    """``payload`` as one complete, unmasked WebSocket text frame (server to client)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65_536:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


# -- control frames (V2) ----------------------------------------------------------------------


class _Control(msgspec.Struct, tag_field="type"):
    pass


class LoginOk(_Control, tag="login_ok"):
    """The key is accepted; ``symbol_limit`` is how many symbols one connection may hold."""

    symbol_limit: int
    cfds: bool
    trader_ladder: bool


class LoginReject(_Control, tag="login_reject"):
    """The login failed; ``reason`` says why."""

    reason: str


class SubAck(_Control, tag="sub_ack"):
    """The answer to a subscribe: every requested symbol is in exactly one list."""

    accepted: list[str]
    denied: list[str]
    denied_reasons: dict[str, str]
    invalid: list[str]


class UnsubAck(_Control, tag="unsub_ack"):
    """The answer to an unsubscribe."""


class ErrorFrame(_Control, tag="error"):
    """A request that could not be handled; ``reason`` says why."""

    reason: str


def encode_control(frame: LoginOk | LoginReject | SubAck | UnsubAck | ErrorFrame) -> bytes:
    """The JSON of a V2 control frame, ``type`` first."""
    return _encoder.encode(frame)


# -- the shared frame cache -------------------------------------------------------------------


class _BatchFrames:
    """Frames made from one batch, per (symbol, format), and where each tick sits in the batch."""

    __slots__ = ("_bounds", "_order", "asked", "batch", "frames", "index", "joined", "nbytes")

    def __init__(self, batch: JournaledBatch) -> None:
        self.batch = batch
        self.index = {name: i for i, name in enumerate(batch.symbols)}
        self.frames: dict[tuple[str, TickFormat], tuple[_I64, list[bytes]]] = {}
        self.joined: dict[tuple[frozenset[str], TickFormat], tuple[bytes, int]] = {}
        self.asked: set[tuple[frozenset[str], TickFormat]] = set()  # joins made once, not kept
        # what holding the entry costs: the batch's columns, and the sort order made from them
        self.nbytes = batch_nbytes(batch) + 8 * len(batch)
        self._order: _I64 | None = None
        self._bounds: list[int] = []

    def positions(self, local: int) -> _I64:
        """Positions (ascending) of the ticks of the batch's ``local`` symbol."""
        if self._order is None:
            sym = self.batch.sym
            self._order = np.argsort(sym, kind="stable").astype(np.int64)
            counts = np.bincount(sym, minlength=len(self.batch.symbols))
            self._bounds = [0, *np.cumsum(counts).tolist()]
        return self._order[self._bounds[local] : self._bounds[local + 1]]


def batch_nbytes(batch: JournaledBatch) -> int:
    """Bytes of a batch's columns."""
    return sum(a.nbytes for a in (batch.sym, batch.seq, batch.ts, batch.bid, batch.ask))


class FrameCache:
    """Wire-ready frames of recent batches, shared by every connection of one node.

    Keyed by ``(epoch, first_offset, length)`` of a batch, which names its ticks exactly, so a
    connection that reads the bus in other slices still gets correct frames (it only misses the
    cache). At most ``max_bytes`` are kept, counting the batches an entry holds as well as its
    frames; the oldest batches go first. A batch without the asked symbol is not kept.
    """

    def __init__(self, *, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.encoded = 0
        """Ticks encoded so far (each tick once per format while its batch is cached)."""
        self._batches: dict[tuple[int, int, int], _BatchFrames] = {}
        self._merged: dict[tuple[int, int, int], JournaledBatch] = {}

    def __len__(self) -> int:
        return len(self._batches)

    def merged(self, batches: Sequence[JournaledBatch]) -> JournaledBatch:
        """``batches`` (consecutive, one epoch) as one batch, made once per slice of the bus.

        Connections that read the same slice get the same batch, so its frames and joins are
        shared too; the work per read is then per connection, not per small published batch.
        The last :data:`MERGED_SLICES` slices are kept.
        """
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        key = (first.epoch, first.first_offset, sum(map(len, batches)))
        entry = self._batches.get(key)  # its frames are cached: the batch is
        batch = entry.batch if entry is not None else self._merged.get(key)
        if batch is None:
            batch = self._merged[key] = JournaledBatch.concat(batches)
            if len(self._merged) > MERGED_SLICES:
                del self._merged[next(iter(self._merged))]  # the oldest
        return batch

    def _entry(self, batch: JournaledBatch) -> _BatchFrames:
        key = (batch.epoch, batch.first_offset, len(batch))
        entry = self._batches.get(key)
        if entry is None:
            entry = self._batches[key] = _BatchFrames(batch)
            self.nbytes += entry.nbytes
        return entry

    def frames(
        self, batch: JournaledBatch, symbol: StreamSymbol, fmt: TickFormat
    ) -> tuple[_I64, list[bytes]]:
        """Positions in ``batch`` and wire frames of ``symbol``'s ticks, in offset order."""
        if symbol.source not in batch.symbols:
            return np.zeros(0, dtype=np.int64), []  # a quiet symbol never pins a batch
        entry = self._entry(batch)
        cached = entry.frames.get((symbol.code, fmt))
        if cached is not None:
            return cached
        made = self._encode(entry, entry.index[symbol.source], symbol, fmt)
        entry.frames[(symbol.code, fmt)] = made
        size = sum(map(len, made[1]))
        entry.nbytes += size
        self.nbytes += size
        self._evict(keep=entry)
        return made

    def joined(
        self,
        batch: JournaledBatch,
        key: frozenset[str],
        symbols: Mapping[str, StreamSymbol],
        fmt: TickFormat,
    ) -> tuple[bytes, int]:
        """All the frames of ``symbols`` (whose codes are ``key``) in ``batch``, in offset order,
        as one write, and how many frames that is.

        A join asked for a second time is kept while the batch is cached, so connections with
        the same subscriptions share its bytes; a set only one connection has is not kept (the
        bound then holds the shared frames, not one copy per connection).
        """
        if not any(symbol.source in batch.symbols for symbol in symbols.values()):
            return b"", 0  # a quiet set never pins a batch
        entry = self._entry(batch)
        wanted = (key, fmt)
        made = entry.joined.get(wanted)
        if made is None:
            frames = select_frames(self, batch, symbols, fmt, {})
            made = (b"".join(frames), len(frames))
            if wanted in entry.asked:
                entry.joined[wanted] = made
                entry.nbytes += len(made[0])
                self.nbytes += len(made[0])
                self._evict(keep=entry)
            else:
                entry.asked.add(wanted)
        return made

    def _encode(
        self, entry: _BatchFrames, local: int, symbol: StreamSymbol, fmt: TickFormat
    ) -> tuple[_I64, list[bytes]]:
        batch = entry.batch
        pos = entry.positions(local)
        if symbol.inverted and len(pos):
            usable = (batch.bid[pos] > 0) & (batch.ask[pos] > 0)
            if not usable.all():
                pos = pos[usable]
        ts, bid, ask = batch.ts[pos].tolist(), batch.bid[pos].tolist(), batch.ask[pos].tolist()
        frames = [
            ws_text_frame(_payload(symbol, fmt, t, b, a))
            for t, b, a in zip(ts, bid, ask, strict=True)
        ]
        self.encoded += len(frames)
        return pos, frames

    def _evict(self, *, keep: _BatchFrames) -> None:
        if self.nbytes <= self.max_bytes:
            return
        for key in list(self._batches):  # oldest first
            entry = self._batches[key]
            if entry is keep:
                continue
            del self._batches[key]
            self.nbytes -= entry.nbytes
            if self.nbytes <= self.max_bytes:
                return
        # the batch in use is over the bound by itself: serve it, but keep nothing of it
        self._batches.clear()
        self.nbytes = 0


def select_frames(
    cache: FrameCache,
    batch: JournaledBatch,
    symbols: Mapping[str, StreamSymbol],
    fmt: TickFormat,
    skip: Mapping[str, int],
) -> Sequence[bytes]:
    """The wire frames one connection gets from ``batch``, in offset order.

    ``symbols`` are the connection's subscriptions by code; ``skip[code]`` is an offset already
    delivered for ``code`` (as a ``LAST_QUOTE``): its ticks up to that offset are left out.
    """
    positions: list[_I64] = []
    parts: list[list[bytes]] = []
    for code, symbol in symbols.items():
        pos, frames = cache.frames(batch, symbol, fmt)
        if not frames:
            continue
        floor = skip.get(code)
        if floor is not None:
            cut = int(np.searchsorted(pos, floor - batch.first_offset, side="right"))
            if cut:
                pos, frames = pos[cut:], frames[cut:]
                if not frames:
                    continue
        positions.append(pos)
        parts.append(frames)
    if not parts:
        return ()
    if len(parts) == 1:
        return parts[0]
    merged = [f for frames in parts for f in frames]
    order = np.argsort(np.concatenate(positions), kind="stable").tolist()
    return [merged[i] for i in order]
