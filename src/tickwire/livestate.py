"""Live state: the last quote of every symbol and the bars still forming.

The tickplant applies every committed batch here, after the journal has made it durable, so
live state never shows a tick that could be lost. Forming bars use the same OHLC rules as the
store (:mod:`tickwire.bars`), so a forming bar equals the stored bar over the same ticks.

A tick older than a symbol's forming bar (a late tick for a closed bar) leaves the forming bar
alone; the store applies it to the closed bar.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from . import bars
from .journal.records import SymbolState
from .model import Bar, BarUnit, JournaledBatch, PriceSide, Quote
from .timeframes import Resolution, bucket_starts

__all__ = ["LIVE_RESOLUTIONS", "FormingBar", "LiveState"]

LIVE_RESOLUTIONS = (Resolution(1, BarUnit.SECOND), Resolution(1, BarUnit.MINUTE))
_SIDES = (PriceSide.BID, PriceSide.ASK, PriceSide.MID)


@dataclass(slots=True)
class FormingBar:
    """A bar still forming, for all three price sides; keys are ``(ts, offset)``."""

    start: int
    open_key: tuple[int, int]
    close_key: tuple[int, int]
    open: dict[PriceSide, float]
    high: dict[PriceSide, float]
    low: dict[PriceSide, float]
    close: dict[PriceSide, float]
    ticks: int

    def bar(self, symbol: str, side: PriceSide) -> Bar:
        return Bar(
            symbol,
            self.start,
            self.open[side],
            self.high[side],
            self.low[side],
            self.close[side],
            self.ticks,
            complete=False,
        )


class LiveState:
    """Last quotes and forming bars, updated batch by batch (see the module docstring)."""

    def __init__(self, resolutions: Iterable[Resolution] = LIVE_RESOLUTIONS) -> None:
        self.resolutions = tuple(resolutions)
        self.epoch = 0
        self._quotes: dict[str, Quote] = {}
        self._forming: dict[Resolution, dict[str, FormingBar]] = {r: {} for r in self.resolutions}

    def restore(self, epoch: int, states: Mapping[str, SymbolState]) -> None:
        """Seed last quotes from the journal's recovered per-symbol state."""
        self.epoch = epoch
        for name, st in states.items():
            self._quotes[name] = Quote(name, st.ts, st.bid, st.ask, epoch, st.offset, st.seq)

    def quote(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)

    def quotes(self) -> dict[str, Quote]:
        """A copy of every last quote, by symbol."""
        return dict(self._quotes)

    def forming(self, symbol: str, resolution: Resolution, side: PriceSide) -> Bar | None:
        """The forming bar of ``symbol`` at ``resolution``, or None before its first tick."""
        bar = self._forming[resolution].get(symbol)
        return None if bar is None else bar.bar(symbol, side)

    def apply(self, batch: JournaledBatch) -> None:
        """Fold a committed batch into the quotes and forming bars."""
        n = len(batch)
        if n == 0:
            return
        self.epoch = batch.epoch
        names = batch.symbols
        offsets = batch.first_offset + np.arange(n, dtype=np.int64)
        last = np.full(len(names), -1, dtype=np.int64)
        np.maximum.at(last, batch.sym, np.arange(n, dtype=np.int64))
        for local, i in enumerate(last.tolist()):
            if i >= 0:
                name = names[local]
                self._quotes[name] = Quote(
                    name,
                    int(batch.ts[i]),
                    float(batch.bid[i]),
                    float(batch.ask[i]),
                    batch.epoch,
                    batch.first_offset + i,
                    int(batch.seq[i]),
                )
        mids = bars.mid(batch.bid, batch.ask)
        prices = {PriceSide.BID: batch.bid, PriceSide.ASK: batch.ask, PriceSide.MID: mids}
        for resolution in self.resolutions:
            self._apply_resolution(resolution, batch, offsets, prices)

    def _apply_resolution(
        self,
        resolution: Resolution,
        batch: JournaledBatch,
        offsets: bars.I64,
        prices: dict[PriceSide, bars.F64],
    ) -> None:
        grouping = bars.group(batch.ts, offsets, bucket_starts(batch.ts, resolution), by=batch.sym)
        assert grouping.by is not None
        by = grouping.by
        # the last (latest) bar of each symbol in this batch is the only one that can be forming
        is_last = np.ones(len(grouping), dtype=bool)
        is_last[:-1] = by[1:] != by[:-1]
        sides = {side: bars.ohlc(grouping, prices[side]) for side in _SIDES}
        forming = self._forming[resolution]
        ts = batch.ts
        for g in np.flatnonzero(is_last).tolist():
            name = batch.symbols[int(by[g])]
            start = int(grouping.start[g])
            oi, ci = int(grouping.open_index[g]), int(grouping.close_index[g])
            open_key = (int(ts[oi]), batch.first_offset + oi)
            close_key = (int(ts[ci]), batch.first_offset + ci)
            current = forming.get(name)
            if current is not None and start < current.start:
                continue  # late ticks for a closed bar: the store owns those
            if current is None or start > current.start:
                forming[name] = FormingBar(
                    start,
                    open_key,
                    close_key,
                    {s: float(sides[s].open[g]) for s in _SIDES},
                    {s: float(sides[s].high[g]) for s in _SIDES},
                    {s: float(sides[s].low[g]) for s in _SIDES},
                    {s: float(sides[s].close[g]) for s in _SIDES},
                    int(grouping.ticks[g]),
                )
                continue
            if open_key < current.open_key:
                current.open_key = open_key
                current.open = {s: float(sides[s].open[g]) for s in _SIDES}
            if close_key > current.close_key:
                current.close_key = close_key
                current.close = {s: float(sides[s].close[g]) for s in _SIDES}
            current.high = {s: max(current.high[s], float(sides[s].high[g])) for s in _SIDES}
            current.low = {s: min(current.low[s], float(sides[s].low[g])) for s in _SIDES}
            current.ticks += int(grouping.ticks[g])
