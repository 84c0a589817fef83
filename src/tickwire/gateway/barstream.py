"""Live bar events for the ``bars`` channel, computed per fan-out flush.

For every ``(symbol, interval)`` somebody subscribes to, a flush turns the symbol's new ticks
into bar events with the same OHLC rules as the store (:mod:`tickwire.bars`):

* the bars that ended within the flush: ``closed`` (the forming bar merged with the flush's
  ticks of its period, and any whole period inside the flush);
* the bar still forming at the end of the flush: ``forming``.

A late tick (older than the forming bar) that falls into one of the last ``CLOSED_BARS_KEPT``
closed bars produces ``revised`` with the corrected bar; an older one only reaches the store
(REST serves the corrected bar).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .. import bars
from ..livestate import LiveState
from ..model import Bar, JournaledBatch, PriceSide
from ..protocol import BarState, Interval
from ..protocol.session import INTERVAL_RESOLUTIONS
from ..timeframes import bucket_starts

__all__ = ["BarEvent", "BarTracker"]

_SIDES = (PriceSide.BID, PriceSide.ASK, PriceSide.MID)
CLOSED_BARS_KEPT = 120


@dataclass(frozen=True, slots=True)
class BarEvent:
    """One bar of one side, and where it is in its life."""

    bar: Bar
    state: BarState


@dataclass(slots=True)
class _Forming:
    start: int
    open_key: tuple[int, int]
    close_key: tuple[int, int]
    ohlc: dict[PriceSide, list[float]]
    ticks: int


class BarTracker:
    """Forming bars of the subscribed ``(symbol, interval)`` pairs, advanced flush by flush.

    ``view`` is the live state as of the start of the flush: a pair seen for the first time
    starts from its forming bar there, so the first event already covers the whole period.
    """

    def __init__(self, view: LiveState) -> None:
        self._forming: dict[tuple[str, Interval], _Forming] = {}
        self._closed: dict[tuple[str, Interval], OrderedDict[int, _Forming]] = {}
        self._view = view

    def advance(
        self, batches: list[JournaledBatch], wanted: Iterable[tuple[str, Interval]]
    ) -> dict[tuple[str, Interval, PriceSide], list[BarEvent]]:
        """Events per ``(symbol, interval, side)`` for the ticks in ``batches``."""
        wanted = set(wanted)
        for key in [k for k in self._forming if k not in wanted]:
            del self._forming[key]  # nobody subscribes any more: forget it (bounded)
            self._closed.pop(key, None)
        if not wanted:
            return {}
        by_symbol: dict[str, list[tuple[JournaledBatch, np.ndarray]]] = {}
        symbols = {s for s, _ in wanted}
        for batch in batches:
            for local, name in enumerate(batch.symbols):
                if name in symbols:
                    idx = np.flatnonzero(batch.sym == local)
                    if len(idx):
                        by_symbol.setdefault(name, []).append((batch, idx))
        events: dict[tuple[str, Interval, PriceSide], list[BarEvent]] = {}
        for symbol, interval in wanted:
            parts = by_symbol.get(symbol)
            if not parts:
                continue
            ts = np.concatenate([b.ts[i] for b, i in parts])
            bid = np.concatenate([b.bid[i] for b, i in parts])
            ask = np.concatenate([b.ask[i] for b, i in parts])
            offset = np.concatenate([b.first_offset + i for b, i in parts]).astype(np.int64)
            self._advance_one(symbol, interval, ts, offset, bid, ask, events)
        return events

    def _advance_one(
        self,
        symbol: str,
        interval: Interval,
        ts: np.ndarray,
        offset: np.ndarray,
        bid: np.ndarray,
        ask: np.ndarray,
        events: dict[tuple[str, Interval, PriceSide], list[BarEvent]],
    ) -> None:
        resolution = INTERVAL_RESOLUTIONS[interval]
        starts = bucket_starts(ts, resolution)
        current = self._forming.get((symbol, interval))
        if current is None:
            seed = self._view.forming_state(symbol, resolution)
            if seed is not None:
                start, open_key, close_key, ohlc, ticks = seed
                current = _Forming(
                    start, open_key, close_key, {s: ohlc[i] for i, s in enumerate(_SIDES)}, ticks
                )
        out: list[tuple[_Forming, BarState]] = []
        history = self._closed.setdefault((symbol, interval), OrderedDict())
        if current is not None:
            late = starts < current.start
            if late.any():
                # late ticks revise a recently closed bar; older ones only reach the store
                for piece in _pieces(ts[late], offset[late], bid[late], ask[late], starts[late]):
                    closed = history.get(piece.start)
                    if closed is not None:
                        history[piece.start] = revised = _merge(closed, piece)
                        out.append((revised, BarState.REVISED))
                keep = ~late
                ts, offset, bid, ask, starts = (
                    ts[keep],
                    offset[keep],
                    bid[keep],
                    ask[keep],
                    starts[keep],
                )
        pieces = _pieces(ts, offset, bid, ask, starts)
        if pieces and current is not None and pieces[0].start > current.start:
            out.append((current, BarState.CLOSED))
            current = None
        for index, piece in enumerate(pieces):
            if current is not None and current.start == piece.start:
                piece = _merge(current, piece)
            current = None
            last = index == len(pieces) - 1
            out.append((piece, BarState.FORMING if last else BarState.CLOSED))
        if not out:
            return
        for bar_state, state in out:
            if state is BarState.CLOSED:
                history[bar_state.start] = bar_state
        while len(history) > CLOSED_BARS_KEPT:
            history.popitem(last=False)
        if pieces:
            self._forming[(symbol, interval)] = out[-1][0]
        for state_bar, state in out:
            for side in _SIDES:
                o, h, lo, c = state_bar.ohlc[side]
                bar = Bar(
                    symbol,
                    state_bar.start,
                    o,
                    h,
                    lo,
                    c,
                    state_bar.ticks,
                    complete=state is not BarState.FORMING,
                )
                events.setdefault((symbol, interval, side), []).append(BarEvent(bar, state))


def _pieces(
    ts: np.ndarray, offset: np.ndarray, bid: np.ndarray, ask: np.ndarray, starts: np.ndarray
) -> list[_Forming]:
    """The ticks grouped into bars (all three sides), oldest first."""
    if len(ts) == 0:
        return []
    order = np.lexsort((offset, ts))  # bars.group needs non-decreasing bucket order
    ts, offset, bid, ask, starts = ts[order], offset[order], bid[order], ask[order], starts[order]
    sides = bars.aggregate_sides(ts, offset, bid, ask, starts)
    grouping = bars.group(ts, offset, starts)
    out = []
    for g in range(len(grouping)):
        oi, ci = int(grouping.open_index[g]), int(grouping.close_index[g])
        out.append(
            _Forming(
                int(grouping.start[g]),
                (int(ts[oi]), int(offset[oi])),
                (int(ts[ci]), int(offset[ci])),
                {
                    s: [
                        float(sides[s].open[g]),
                        float(sides[s].high[g]),
                        float(sides[s].low[g]),
                        float(sides[s].close[g]),
                    ]
                    for s in _SIDES
                },
                int(sides[PriceSide.MID].ticks[g]),
            )
        )
    return out


def _merge(old: _Forming, new: _Forming) -> _Forming:
    earlier = new.open_key < old.open_key
    later = new.close_key > old.close_key
    return _Forming(
        old.start,
        new.open_key if earlier else old.open_key,
        new.close_key if later else old.close_key,
        {
            s: [
                new.ohlc[s][0] if earlier else old.ohlc[s][0],
                max(old.ohlc[s][1], new.ohlc[s][1]),
                min(old.ohlc[s][2], new.ohlc[s][2]),
                new.ohlc[s][3] if later else old.ohlc[s][3],
            ]
            for s in _SIDES
        },
        old.ticks + new.ticks,
    )
