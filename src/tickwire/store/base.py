"""The history store interface.

The store holds what the journal has made durable, as raw ticks (kept for a configurable
retention) and as bars (kept for good). It is fed by a store writer that consumes the bus in
offset order, so it is always a prefix of the journal: ``high_water()`` names the last tick it
holds, and ``apply()`` ignores ticks at or below it, which makes replay after a crash exact.

The embedded implementation is DuckDB; a PostgreSQL or ClickHouse implementation will satisfy
the same interface. Every method is async: blocking engines run their work off the event loop.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..model import JournaledBatch, Position, PriceSide
from ..timeframes import Resolution

__all__ = ["BarColumns", "TickColumns", "TickCursor", "TickStore"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TickCursor:
    """Where a page of ticks stopped: the last tick's ``(ts, offset)``; the next page is after."""

    ts: int
    epoch: int
    offset: int


@dataclass(frozen=True, slots=True)
class TickColumns:
    """Stored ticks of one symbol, ordered by ``(ts, epoch, offset)``."""

    symbol: str
    epoch: I64
    offset: I64
    seq: I64
    ts: I64
    bid: F64
    ask: F64

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True, slots=True)
class BarColumns:
    """Bars of one symbol and price side, ordered by ``start`` (ns)."""

    symbol: str
    start: I64
    open: F64
    high: F64
    low: F64
    close: F64
    ticks: I64

    def __len__(self) -> int:
        return len(self.start)


class TickStore(abc.ABC):
    """History of ticks and bars; see the module docstring for the guarantees."""

    @abc.abstractmethod
    async def high_water(self) -> Position | None:
        """The last journaled tick the store holds, or None if it is empty."""

    @abc.abstractmethod
    async def apply(self, batches: Sequence[JournaledBatch]) -> None:
        """Store the ticks and update the bars, atomically, skipping ticks already held."""

    @abc.abstractmethod
    async def ticks(
        self,
        symbol: str,
        start: int,
        end: int,
        *,
        limit: int,
        after: TickCursor | None = None,
    ) -> TickColumns:
        """Up to ``limit`` ticks of ``symbol`` with ``start <= ts < end``, after ``after``."""

    @abc.abstractmethod
    async def bars(
        self,
        symbol: str,
        resolution: Resolution,
        side: PriceSide,
        start: int,
        end: int,
        *,
        limit: int,
    ) -> BarColumns:
        """Up to ``limit`` bars whose start lies in ``[start, end)``, oldest first.

        A bar covers the ticks with ``bar.start <= ts < bar.start + width``; bars built from
        ticks that arrive later are updated in place. Second bars are available only as far back
        as raw ticks are retained; minute and longer bars are kept for good.
        """

    @abc.abstractmethod
    async def bars_many(
        self,
        symbols: Sequence[str],
        resolution: Resolution,
        side: PriceSide,
        start: int,
        end: int,
    ) -> dict[str, BarColumns]:
        """Bars of several symbols at once (for example daily bars of the whole catalogue)."""

    @abc.abstractmethod
    async def prune_ticks(self, before: int) -> int:
        """Drop raw ticks with ``ts < before`` (bars stay); returns how many were dropped."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Flush and close. Idempotent."""
