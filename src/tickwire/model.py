"""Typed models: symbols, ticks, quotes, bars and stream positions.

Two shapes exist for ticks:

* :class:`Tick` is one tick as a small frozen msgspec Struct, for APIs and tests.
* :class:`TickBatch` / :class:`JournaledBatch` hold many ticks as numpy columns. The tick path
  (feeds → tickplant → journal → bus → store) moves batches, never single ticks, so that the cost
  per tick stays a few vectorised operations.

A batch names its symbols in its own small dictionary (``symbols``) and refers to them by
``uint16`` index (``sym``), so a batch decodes alone: in the journal, on a bus, in a store.

Positions: ``offset`` is global, gap-free and starts at 1 within an ``epoch`` (one journal
generation). ``seq`` is per symbol, gap-free and starts at 1. The position ``(epoch, offset)``
names the last tick a reader has *seen*; resuming from it delivers ``offset + 1`` onwards.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

__all__ = [
    "Bar",
    "BarUnit",
    "JournaledBatch",
    "Kind",
    "Position",
    "PriceSide",
    "Quote",
    "Symbol",
    "Tick",
    "TickBatch",
    "merge_symbols",
]

U16 = npt.NDArray[np.uint16]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]


class Kind(enum.StrEnum):
    """Instrument class."""

    FX = "fx"
    METAL = "metal"
    CFD = "cfd"
    CRYPTO = "crypto"


class PriceSide(enum.StrEnum):
    """Which price a bar is built from."""

    BID = "bid"
    ASK = "ask"
    MID = "mid"


class BarUnit(enum.StrEnum):
    """Bar time units; a bar resolution is ``multiplier × unit``."""

    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


class Symbol(msgspec.Struct, frozen=True, kw_only=True):
    """An instrument in the catalogue.

    ``pip`` is the size of one pip in price units (0.0001 for EURUSD, 0.01 for USDJPY);
    ``decimals`` is how many decimals a price is displayed with (usually one more than the pip).
    """

    code: str
    base: str
    quote: str
    kind: Kind
    pip: float
    decimals: int
    name: str


class Position(msgspec.Struct, frozen=True, array_like=True):
    """A point in the stream: the last tick seen is ``offset`` of journal generation ``epoch``."""

    epoch: int
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """Parse ``EPOCH:OFFSET``; raises ValueError on anything else."""
        epoch_text, sep, offset_text = text.partition(":")
        if not sep:
            raise ValueError(f"position must be EPOCH:OFFSET, got {text!r}")
        epoch, offset = int(epoch_text), int(offset_text)
        if epoch < 0 or offset < 0:
            raise ValueError(f"position must be non-negative, got {text!r}")
        return cls(epoch, offset)


class Tick(msgspec.Struct, frozen=True, gc=False):
    """One journaled tick. ``ts`` is UTC nanoseconds since the Unix epoch."""

    symbol: str
    ts: int
    bid: float
    ask: float
    epoch: int
    offset: int
    seq: int

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


class Quote(msgspec.Struct, frozen=True, gc=False):
    """The last tick of a symbol, as live state serves it."""

    symbol: str
    ts: int
    bid: float
    ask: float
    epoch: int
    offset: int
    seq: int

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


class Bar(msgspec.Struct, frozen=True, gc=False):
    """OHLC of one price side over ``[start, start + duration)``, in ns.

    ``open`` is the price of the earliest tick by ``(ts, offset)``, ``close`` of the latest.
    ``complete`` is False while the bar is still forming.
    """

    symbol: str
    start: int
    open: float
    high: float
    low: float
    close: float
    ticks: int
    complete: bool = True


def merge_symbols(parts: Sequence[tuple[tuple[str, ...], U16]]) -> tuple[tuple[str, ...], U16]:
    """Columns of several batches, each ``(symbols, sym)`` with its own symbol dictionary, as
    one dictionary (in order of first appearance) and one ``sym`` column."""
    names: dict[str, int] = {}
    syms = []
    for symbols, sym in parts:
        mapping = np.array([names.setdefault(n, len(names)) for n in symbols], dtype=np.uint16)
        syms.append(mapping[sym])
    return tuple(names), np.concatenate(syms) if len(syms) > 1 else syms[0]


@dataclass(frozen=True, slots=True)
class TickBatch:
    """Ticks from a feed, in arrival order, before the tickplant has positioned them.

    Guarantees: all columns have the same length; ``sym`` indexes ``symbols``.
    """

    symbols: tuple[str, ...]
    sym: U16
    ts: I64
    bid: F64
    ask: F64

    def __post_init__(self) -> None:
        n = len(self.sym)
        if not (len(self.ts) == len(self.bid) == len(self.ask) == n):
            raise ValueError("TickBatch columns differ in length")

    def __len__(self) -> int:
        return len(self.sym)

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[str, int, float, float]]) -> TickBatch:
        """Build a batch from ``(symbol, ts_ns, bid, ask)`` rows (convenient, not fast)."""
        index: dict[str, int] = {}
        sym = np.fromiter(
            (index.setdefault(r[0], len(index)) for r in rows), dtype=np.uint16, count=len(rows)
        )
        return cls(
            symbols=tuple(index),
            sym=sym,
            ts=np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
            bid=np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows)),
            ask=np.fromiter((r[3] for r in rows), dtype=np.float64, count=len(rows)),
        )


@dataclass(frozen=True, slots=True)
class JournaledBatch:
    """Ticks that are durable in the journal: offsets ``first_offset .. last_offset``.

    Guarantees: offsets are contiguous; ``seq`` holds each tick's per-symbol sequence number.
    """

    epoch: int
    first_offset: int
    symbols: tuple[str, ...]
    sym: U16
    seq: U64
    ts: I64
    bid: F64
    ask: F64

    def __len__(self) -> int:
        return len(self.sym)

    @property
    def last_offset(self) -> int:
        return self.first_offset + len(self.sym) - 1

    def since(self, offset: int) -> JournaledBatch:
        """The ticks after ``offset`` (all of them if ``offset`` is before this batch)."""
        skip = max(0, min(len(self), offset - self.first_offset + 1))
        if skip == 0:
            return self
        return JournaledBatch(
            self.epoch,
            self.first_offset + skip,
            self.symbols,
            self.sym[skip:],
            self.seq[skip:],
            self.ts[skip:],
            self.bid[skip:],
            self.ask[skip:],
        )

    def head(self, count: int) -> JournaledBatch:
        """The first ``count`` ticks."""
        if count >= len(self):
            return self
        return JournaledBatch(
            self.epoch,
            self.first_offset,
            self.symbols,
            self.sym[:count],
            self.seq[:count],
            self.ts[:count],
            self.bid[:count],
            self.ask[:count],
        )

    @staticmethod
    def concat(batches: Sequence[JournaledBatch]) -> JournaledBatch:
        """Consecutive batches of one epoch as one batch (their symbol dictionaries merged).

        Raises ValueError if the batches are empty, of several epochs or not contiguous.
        """
        if not batches:
            raise ValueError("nothing to concatenate")
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        expected = first.first_offset
        for batch in batches:
            if batch.epoch != first.epoch or batch.first_offset != expected:
                raise ValueError(
                    f"batch {batch.epoch}:{batch.first_offset} does not follow "
                    f"{first.epoch}:{expected - 1}"
                )
            expected = batch.last_offset + 1
        symbols, sym = merge_symbols([(b.symbols, b.sym) for b in batches])
        return JournaledBatch(
            first.epoch,
            first.first_offset,
            symbols,
            sym,
            np.concatenate([b.seq for b in batches]),
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.bid for b in batches]),
            np.concatenate([b.ask for b in batches]),
        )

    def ticks(self) -> Iterator[Tick]:
        """Each tick as a :class:`Tick` (for APIs and tests, not for the hot path)."""
        names = self.symbols
        for i, (s, q, t, b, a) in enumerate(
            zip(
                self.sym.tolist(),
                self.seq.tolist(),
                self.ts.tolist(),
                self.bid.tolist(),
                self.ask.tolist(),
                strict=True,
            )
        ):
            yield Tick(names[s], t, b, a, self.epoch, self.first_offset + i, q)
