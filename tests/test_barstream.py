"""Live bar events: closed, forming and revised bars equal the reference OHLC of their ticks."""

from __future__ import annotations

import numpy as np

from tickwire import bars
from tickwire.gateway.barstream import BarTracker
from tickwire.livestate import LiveState
from tickwire.model import JournaledBatch, PriceSide, TickBatch
from tickwire.protocol import BarState, Interval
from tickwire.protocol.session import INTERVAL_RESOLUTIONS
from tickwire.timeframes import bucket_starts

from .conftest import T0

SECOND = 10**9


def journaled(rows: list[tuple[int, float]], first_offset: int) -> JournaledBatch:
    """EURUSD ticks at ``T0 + ts`` with bid ``price`` and a fixed spread."""
    batch = TickBatch.from_rows([("EURUSD", T0 + ts, p, p + 0.0001) for ts, p in rows])
    seq = np.arange(first_offset, first_offset + len(batch), dtype=np.uint64)
    return JournaledBatch(
        1, first_offset, batch.symbols, batch.sym, seq, batch.ts, batch.bid, batch.ask
    )


def reference(batches: list[JournaledBatch], start: int) -> tuple[float, float, float, float, int]:
    """Bid OHLC and count of every tick in the 1 s bar starting at ``start``."""
    ts = np.concatenate([b.ts for b in batches])
    offset = np.concatenate([b.first_offset + np.arange(len(b)) for b in batches])
    bid = np.concatenate([b.bid for b in batches])
    starts = bucket_starts(ts, INTERVAL_RESOLUTIONS[Interval.SECOND])
    mask = starts == start
    arrays = bars.aggregate(ts[mask], offset[mask], bid[mask], starts[mask])
    return (
        float(arrays.open[0]),
        float(arrays.high[0]),
        float(arrays.low[0]),
        float(arrays.close[0]),
        int(arrays.ticks[0]),
    )


def test_closed_forming_and_revised_bars() -> None:
    """Bars close when a later period starts, and a late tick revises the closed bar."""
    tracker = BarTracker(LiveState())
    wanted = {("EURUSD", Interval.SECOND)}
    first = journaled([(100, 1.10), (200_000_000, 1.12), (900_000_000, 1.11)], 1)
    events = tracker.advance([first], wanted)[("EURUSD", Interval.SECOND, PriceSide.BID)]
    assert [e.state for e in events] == [BarState.FORMING]
    second = journaled([(1_100_000_000, 1.13), (2_500_000_000, 1.09)], 4)
    events = tracker.advance([second], wanted)[("EURUSD", Interval.SECOND, PriceSide.BID)]
    assert [e.state for e in events] == [BarState.CLOSED, BarState.CLOSED, BarState.FORMING]
    closed = events[0].bar
    assert closed.start == T0 // SECOND * SECOND and closed.complete
    assert (closed.open, closed.high, closed.low, closed.close, closed.ticks) == reference(
        [first, second], closed.start
    )
    late = journaled([(500_000_000, 1.20)], 6)  # belongs to the first, closed bar
    events = tracker.advance([late], wanted)[("EURUSD", Interval.SECOND, PriceSide.BID)]
    assert [e.state for e in events] == [BarState.REVISED]
    revised = events[0].bar
    assert (revised.open, revised.high, revised.low, revised.close, revised.ticks) == reference(
        [first, second, late], closed.start
    )
    assert revised.high == 1.20
