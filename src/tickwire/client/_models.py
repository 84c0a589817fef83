"""Typed answers of the native API, as msgspec Structs.

Unknown fields are ignored (the server may add some); a missing or mistyped field is a decode
error, never a silent default. Times are UTC ``datetime`` objects; ``ts`` fields are integer
nanoseconds since the epoch, as the server sends them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = [
    "Bar",
    "BarsPage",
    "Conversion",
    "ConversionLeg",
    "Health",
    "Market",
    "MarketStatus",
    "Position",
    "Quote",
    "QuotesPage",
    "Resolution",
    "Symbol",
    "SymbolDetail",
    "Tick",
    "TicksPage",
]


class Position(msgspec.Struct, frozen=True, order=True):
    """A stream position, ``EPOCH:OFFSET``: the last tick seen."""

    epoch: int
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: str | Position) -> Position:
        """``"EPOCH:OFFSET"`` (or a Position) as a Position; raises ValueError otherwise."""
        if isinstance(text, Position):
            return text
        epoch, sep, offset = text.partition(":")
        if not sep or not (epoch + offset).isascii() or not epoch.isdigit() or not offset.isdigit():
            raise ValueError(f"a position is EPOCH:OFFSET with two integers, not {text!r}")
        return cls(int(epoch), int(offset))


class Tick(msgspec.Struct, frozen=True, gc=False):
    """One tick: symbol, time (ns), bid, ask and its stream position (epoch, offset, seq)."""

    symbol: str
    ts: int
    bid: float
    ask: float
    epoch: int
    offset: int
    seq: int

    @property
    def mid(self) -> float:
        """The mid price."""
        return (self.bid + self.ask) / 2

    @property
    def time(self) -> datetime:
        """``ts`` as an aware UTC datetime (microsecond precision)."""
        return datetime.fromtimestamp(self.ts / 1e9, UTC)

    @property
    def position(self) -> Position:
        """This tick's stream position."""
        return Position(self.epoch, self.offset)


class Quote(msgspec.Struct, frozen=True):
    """A live quote, with the position of the tick it comes from."""

    symbol: str
    bid: float
    ask: float
    mid: float
    ts: int
    time: datetime
    epoch: int
    offset: int
    seq: int


class QuotesPage(msgspec.Struct, frozen=True):
    """``GET /v1/quotes``: quotes in request order, and symbols that have not ticked yet."""

    quotes: list[Quote]
    missing: list[str]


class Resolution(msgspec.Struct, frozen=True):
    """A bar width: ``multiplier`` × ``unit``, days cut at ``daily_cut`` UTC."""

    multiplier: int
    unit: str
    daily_cut: int


class Bar(msgspec.Struct, frozen=True, gc=False):
    """One OHLC bar; ``complete`` is False for the forming bar."""

    time: datetime
    ts: int
    open: float
    high: float
    low: float
    close: float
    ticks: int
    complete: bool


class BarsPage(msgspec.Struct, frozen=True):
    """One page of ``GET /v1/bars/{symbol}``."""

    symbol: str
    resolution: Resolution
    side: str
    from_: datetime = msgspec.field(name="from")
    to: datetime
    bars: list[Bar]
    next_cursor: str | None
    as_of: Position


class _RestTick(msgspec.Struct, frozen=True, gc=False):
    time: datetime
    ts: int
    bid: float
    ask: float
    epoch: int
    offset: int
    seq: int


class _RawTicksPage(msgspec.Struct, frozen=True):
    symbol: str
    from_: datetime = msgspec.field(name="from")
    to: datetime
    ticks: list[_RestTick]
    next_cursor: str | None
    as_of: Position


class TicksPage(msgspec.Struct, frozen=True):
    """One page of ``GET /v1/ticks/{symbol}``, oldest first."""

    symbol: str
    from_: datetime
    to: datetime
    ticks: list[Tick]
    next_cursor: str | None
    as_of: Position


class ConversionLeg(msgspec.Struct, frozen=True):
    """One quote a conversion used; ``inverted`` when the pair was taken the other way."""

    symbol: str
    inverted: bool
    bid: float
    ask: float
    time: datetime
    epoch: int
    offset: int
    seq: int


class Conversion(msgspec.Struct, frozen=True):
    """``GET /v1/convert``: ``amount`` of ``from_`` is ``total`` of ``to`` at ``rate``."""

    from_: str = msgspec.field(name="from")
    to: str
    amount: float
    rate: float
    total: float
    bid: float
    ask: float
    method: str
    time: datetime
    path: list[ConversionLeg]


class Symbol(msgspec.Struct, frozen=True):
    """A catalogue entry."""

    code: str
    base: str
    quote: str
    kind: str
    pip: float
    decimals: int
    name: str


class _SymbolList(msgspec.Struct, frozen=True):
    symbols: list[Symbol]


class MarketStatus(msgspec.Struct, frozen=True):
    """Whether a market is open, and when it next opens and closes (None: never)."""

    open: bool
    next_open: datetime | None
    next_close: datetime | None


class SymbolDetail(Symbol, frozen=True):
    """``GET /v1/symbols/{symbol}``: the entry, its market status and its last quote."""

    market: MarketStatus | None = None
    last_quote: Quote | None = None


class Market(msgspec.Struct, frozen=True):
    """``GET /v1/market``: the status of each market kind."""

    time: datetime
    markets: dict[str, MarketStatus]


class Health(msgspec.Struct, frozen=True):
    """``GET /health``: ``status`` is ``ok``, ``starting`` or ``degraded``."""

    status: str
    epoch: int
    offset: int
    store_offset: int | None = None
    store_lag: int | None = None
    problems: list[Any] = msgspec.field(default_factory=list)

    @property
    def position(self) -> Position:
        """The last journaled position."""
        return Position(self.epoch, self.offset)


def ticks_page(raw: _RawTicksPage) -> TicksPage:
    """A decoded REST ticks page with the symbol put on each tick."""
    symbol = raw.symbol
    return TicksPage(
        symbol=symbol,
        from_=raw.from_,
        to=raw.to,
        ticks=[Tick(symbol, t.ts, t.bid, t.ask, t.epoch, t.offset, t.seq) for t in raw.ticks],
        next_cursor=raw.next_cursor,
        as_of=raw.as_of,
    )
