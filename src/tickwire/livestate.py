"""Live state: the last quote of every symbol and the bars still forming.

The tickplant applies every committed batch here, after the journal has made it durable, so
live state never shows a tick that could be lost. Forming bars use the same OHLC rules as the
store (:mod:`tickwire.bars`), so a forming bar equals the stored bar over the same ticks.

A tick older than a symbol's forming bar (a late tick for a closed bar) leaves the forming bar
alone; the store applies it to the closed bar.

State lives in numpy arrays indexed by a per-symbol slot, so applying a batch costs a fixed
number of vectorised operations whatever the number of symbols in it. Quotes are updated at
once; forming bars are folded lazily, when read or when ``fold_every`` ticks are pending (a
bound on the memory held), so under load many commits share one grouping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from . import bars
from .journal.records import SymbolState
from .model import Bar, BarUnit, JournaledBatch, PriceSide, Quote
from .timeframes import Resolution, bucket_starts

__all__ = ["LIVE_RESOLUTIONS", "LiveState"]

LIVE_RESOLUTIONS = (Resolution(1, BarUnit.SECOND), Resolution(1, BarUnit.MINUTE))
_SIDE_INDEX = {PriceSide.BID: 0, PriceSide.ASK: 1, PriceSide.MID: 2}
_NO_BAR = np.iinfo(np.int64).min
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class _Forming:
    """Forming bars of one resolution: one row per symbol slot, three price sides."""

    def __init__(self, capacity: int) -> None:
        self.start = np.full(capacity, _NO_BAR, dtype=np.int64)
        self.open_ts = np.zeros(capacity, dtype=np.int64)
        self.open_off = np.zeros(capacity, dtype=np.int64)
        self.close_ts = np.zeros(capacity, dtype=np.int64)
        self.close_off = np.zeros(capacity, dtype=np.int64)
        self.ticks = np.zeros(capacity, dtype=np.int64)
        self.ohlc = np.zeros((capacity, 3, 4), dtype=np.float64)  # slot, side, o/h/l/c

    def grow(self, capacity: int) -> None:
        extra = capacity - len(self.start)
        if extra <= 0:
            return
        self.start = np.concatenate([self.start, np.full(extra, _NO_BAR, dtype=np.int64)])
        for name in ("open_ts", "open_off", "close_ts", "close_off", "ticks"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra, np.int64)]))
        self.ohlc = np.concatenate([self.ohlc, np.zeros((extra, 3, 4))])


class LiveState:
    """Last quotes and forming bars, updated batch by batch (see the module docstring)."""

    def __init__(
        self, resolutions: Iterable[Resolution] = LIVE_RESOLUTIONS, *, fold_every: int = 8_192
    ) -> None:
        self.resolutions = tuple(resolutions)
        self.epoch = 0
        self.version = 0  # increases with every applied batch; a cheap cache key
        self.offset = 0  # the last offset applied
        self._slots: dict[str, int] = {}
        self._names: list[str] = []
        self._slot_cache: dict[tuple[str, ...], npt.NDArray[np.intp]] = {}
        capacity = 64
        self._q_ts = np.zeros(capacity, dtype=np.int64)
        self._q_bid = np.zeros(capacity)
        self._q_ask = np.zeros(capacity)
        self._q_offset = np.zeros(capacity, dtype=np.int64)
        self._q_seq = np.zeros(capacity, dtype=np.int64)
        self._q_epoch = np.zeros(capacity, dtype=np.int64)
        self._has_quote = np.zeros(capacity, dtype=bool)
        self._forming = {r: _Forming(capacity) for r in self.resolutions}
        self._pending: list[tuple[npt.NDArray[np.intp], JournaledBatch]] = []
        self._pending_ticks = 0
        self.fold_every = fold_every

    # -- reading ----------------------------------------------------------------------------

    def quote(self, symbol: str) -> Quote | None:
        """The last tick of ``symbol``, or None if it has none yet."""
        slot = self._slots.get(symbol)
        if slot is None or not self._has_quote[slot]:
            return None
        return Quote(
            symbol,
            int(self._q_ts[slot]),
            float(self._q_bid[slot]),
            float(self._q_ask[slot]),
            int(self._q_epoch[slot]),
            int(self._q_offset[slot]),
            int(self._q_seq[slot]),
        )

    def quotes(self) -> dict[str, Quote]:
        """Every last quote, by symbol."""
        out = {}
        for name in self._names:
            quote = self.quote(name)
            if quote is not None:
                out[name] = quote
        return out

    def forming(self, symbol: str, resolution: Resolution, side: PriceSide) -> Bar | None:
        """The forming bar of ``symbol`` at ``resolution``, or None before its first tick."""
        self._fold()
        slot = self._slots.get(symbol)
        state = self._forming[resolution]
        if slot is None or state.start[slot] == _NO_BAR:
            return None
        o, h, low, c = state.ohlc[slot, _SIDE_INDEX[side]].tolist()
        return Bar(
            symbol, int(state.start[slot]), o, h, low, c, int(state.ticks[slot]), complete=False
        )

    def forming_state(
        self, symbol: str, resolution: Resolution
    ) -> tuple[int, tuple[int, int], tuple[int, int], list[list[float]], int] | None:
        """The forming bar with its keys: ``(start, open_key, close_key, ohlc, ticks)``.

        ``ohlc`` is ``[[o, h, l, c]]`` for bid, ask and mid; keys are ``(ts, offset)``.
        """
        self._fold()
        slot = self._slots.get(symbol)
        state = self._forming[resolution]
        if slot is None or state.start[slot] == _NO_BAR:
            return None
        return (
            int(state.start[slot]),
            (int(state.open_ts[slot]), int(state.open_off[slot])),
            (int(state.close_ts[slot]), int(state.close_off[slot])),
            state.ohlc[slot].tolist(),
            int(state.ticks[slot]),
        )

    # -- writing ----------------------------------------------------------------------------

    def restore(self, epoch: int, states: Mapping[str, SymbolState]) -> None:
        """Seed last quotes from the journal's recovered per-symbol state."""
        self.epoch = epoch
        self.version += 1
        self.offset = max((st.offset for st in states.values()), default=0)
        for name, st in states.items():
            slot = self._slot(name)
            self._q_ts[slot], self._q_bid[slot], self._q_ask[slot] = st.ts, st.bid, st.ask
            self._q_offset[slot], self._q_seq[slot], self._q_epoch[slot] = st.offset, st.seq, epoch
            self._has_quote[slot] = True

    def _slot(self, name: str) -> int:
        slot = self._slots.get(name)
        if slot is None:
            slot = len(self._names)
            self._slots[name] = slot
            self._names.append(name)
            if slot >= len(self._q_ts):
                self._grow(2 * len(self._q_ts))
        return slot

    def _grow(self, capacity: int) -> None:
        extra = capacity - len(self._q_ts)
        for name in ("_q_ts", "_q_offset", "_q_seq", "_q_epoch"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra, np.int64)]))
        for name in ("_q_bid", "_q_ask"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra)]))
        self._has_quote = np.concatenate([self._has_quote, np.zeros(extra, dtype=bool)])
        for forming in self._forming.values():
            forming.grow(capacity)

    def _slots_of(self, symbols: tuple[str, ...]) -> npt.NDArray[np.intp]:
        slots = self._slot_cache.get(symbols)
        if slots is None:
            slots = np.array([self._slot(s) for s in symbols], dtype=np.intp)
            if len(self._slot_cache) > 1024:
                self._slot_cache.clear()
            self._slot_cache[symbols] = slots
        return slots

    def apply(self, batch: JournaledBatch) -> None:
        """Fold a committed batch into the quotes and forming bars."""
        n = len(batch)
        if n == 0:
            return
        self.epoch = batch.epoch
        self.version += 1
        self.offset = batch.last_offset
        local_slots = self._slots_of(batch.symbols)
        # last tick of each symbol, by arrival (offset) order
        last = np.full(len(batch.symbols), -1, dtype=np.int64)
        np.maximum.at(last, batch.sym, np.arange(n, dtype=np.int64))
        present = last >= 0
        idx = last[present]
        slots = local_slots[present]
        self._q_ts[slots] = batch.ts[idx]
        self._q_bid[slots] = batch.bid[idx]
        self._q_ask[slots] = batch.ask[idx]
        self._q_offset[slots] = batch.first_offset + idx
        self._q_seq[slots] = batch.seq[idx].astype(np.int64)
        self._q_epoch[slots] = batch.epoch
        self._has_quote[slots] = True

        # forming bars are folded lazily, many batches at a time (see _fold)
        self._pending.append((local_slots[batch.sym], batch))
        self._pending_ticks += n
        if self._pending_ticks >= self.fold_every:
            self._fold()

    def _fold(self) -> None:
        """Fold the pending batches into the forming bars with one grouping per resolution."""
        if not self._pending:
            return
        pending, self._pending, self._pending_ticks = self._pending, [], 0
        if len(pending) == 1:
            slots, batch = pending[0]
            ts, bid, ask = batch.ts, batch.bid, batch.ask
            offsets = batch.first_offset + np.arange(len(batch), dtype=np.int64)
        else:
            slots = np.concatenate([p[0] for p in pending])
            ts = np.concatenate([p[1].ts for p in pending])
            bid = np.concatenate([p[1].bid for p in pending])
            ask = np.concatenate([p[1].ask for p in pending])
            offsets = np.concatenate(
                [b.first_offset + np.arange(len(b), dtype=np.int64) for _, b in pending]
            )
        prices = (bid, ask, bars.mid(bid, ask))
        for resolution in self.resolutions:
            self._apply_resolution(
                self._forming[resolution], resolution, ts, offsets, prices, slots
            )

    @staticmethod
    def _apply_resolution(
        state: _Forming,
        resolution: Resolution,
        ts: I64,
        offsets: I64,
        prices: tuple[F64, F64, F64],
        tick_slots: npt.NDArray[np.intp],
    ) -> None:
        grouping = bars.group(ts, offsets, bucket_starts(ts, resolution), by=tick_slots)
        assert grouping.by is not None
        by = grouping.by
        # only the latest bar of each symbol in the batch can be the forming one
        is_last = np.ones(len(grouping), dtype=bool)
        is_last[:-1] = by[1:] != by[:-1]
        g = np.flatnonzero(is_last)
        slots = by[g].astype(np.intp)
        start = grouping.start[g]
        oi, ci = grouping.open_index[g], grouping.close_index[g]
        open_ts, close_ts = ts[oi], ts[ci]
        open_off, close_off = offsets[oi], offsets[ci]
        sides = [bars.ohlc(grouping, p) for p in prices]
        new = np.stack(
            [np.stack([s.open[g], s.high[g], s.low[g], s.close[g]], axis=1) for s in sides],
            axis=1,
        )  # group, side, o/h/l/c
        ticks = grouping.ticks[g]

        current = state.start[slots]
        fresh = start > current  # a new bar (the previous one, if any, has closed)
        same = start == current  # more ticks for the forming bar; older starts are late ticks

        if fresh.any():
            s = slots[fresh]
            state.start[s] = start[fresh]
            state.open_ts[s], state.open_off[s] = open_ts[fresh], open_off[fresh]
            state.close_ts[s], state.close_off[s] = close_ts[fresh], close_off[fresh]
            state.ticks[s] = ticks[fresh]
            state.ohlc[s] = new[fresh]
        if same.any():
            s = slots[same]
            ots, ooff = open_ts[same], open_off[same]
            cts, coff = close_ts[same], close_off[same]
            sub = new[same]
            earlier = (ots < state.open_ts[s]) | (
                (ots == state.open_ts[s]) & (ooff < state.open_off[s])
            )
            later = (cts > state.close_ts[s]) | (
                (cts == state.close_ts[s]) & (coff > state.close_off[s])
            )
            block = state.ohlc[s]
            block[:, :, 0] = np.where(earlier[:, None], sub[:, :, 0], block[:, :, 0])
            block[:, :, 1] = np.maximum(block[:, :, 1], sub[:, :, 1])
            block[:, :, 2] = np.minimum(block[:, :, 2], sub[:, :, 2])
            block[:, :, 3] = np.where(later[:, None], sub[:, :, 3], block[:, :, 3])
            state.ohlc[s] = block
            state.open_ts[s] = np.where(earlier, ots, state.open_ts[s])
            state.open_off[s] = np.where(earlier, ooff, state.open_off[s])
            state.close_ts[s] = np.where(later, cts, state.close_ts[s])
            state.close_off[s] = np.where(later, coff, state.close_off[s])
            state.ticks[s] += ticks[same]
