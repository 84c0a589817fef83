"""Live state: last quotes, and forming bars that equal the stored bars over the same ticks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tickwire.feeds.simulator import Simulator, SimulatorConfig
from tickwire.livestate import LIVE_RESOLUTIONS, LiveState
from tickwire.model import JournaledBatch, PriceSide, TickBatch
from tickwire.store.duckdb import DuckDBStore

from .conftest import T0


def journaled(batches: list[TickBatch]) -> list[JournaledBatch]:
    """Give simulator batches offsets and per-symbol seqs, as the tickplant would."""
    out, offset, seqs = [], 1, {}
    for batch in batches:
        seq = np.empty(len(batch), dtype=np.uint64)
        for i, s in enumerate(batch.sym.tolist()):
            name = batch.symbols[s]
            seqs[name] = seqs.get(name, 0) + 1
            seq[i] = seqs[name]
        out.append(
            JournaledBatch(1, offset, batch.symbols, batch.sym, seq, batch.ts, batch.bid, batch.ask)
        )
        offset += len(batch)
    return out


def split(batch: JournaledBatch, cuts: list[int]) -> list[JournaledBatch]:
    """Cut a batch at the given positions into consecutive smaller batches."""
    parts, start = [], 0
    for cut in [*cuts, len(batch)]:
        parts.append(batch.since(batch.first_offset + start - 1).head(cut - start))
        start = cut
    return parts


async def test_forming_bars_equal_stored_bars(tmp_path: Path) -> None:
    """For every symbol, side and live resolution, the forming bar equals the store's bar."""
    sim = Simulator(SimulatorConfig(seed=3, weekend_closed=False))
    raw = [
        sim.generate(T0 + i * 20 * 10**9, T0 + (i + 1) * 20 * 10**9, rate=400.0) for i in range(9)
    ]  # three minutes of busy ticks
    batches = journaled(raw)
    rng = np.random.default_rng(1)
    pieces = [
        p
        for b in batches
        for p in split(b, sorted(rng.choice(np.arange(1, len(b)), 5, replace=False).tolist()))
    ]
    live = LiveState()
    store = await DuckDBStore.open(tmp_path / "store.duckdb")
    for piece in pieces:
        live.apply(piece)
    await store.apply(pieces)
    checked = 0
    for name in {n for b in batches for n in b.symbols}:
        for resolution in LIVE_RESOLUTIONS:
            for side in PriceSide:
                bar = live.forming(name, resolution, side)
                assert bar is not None and not bar.complete
                stored = await store.bars(
                    name, resolution, side, bar.start, bar.start + resolution.width_ns, limit=10
                )
                assert len(stored) == 1
                assert (stored.open[0], stored.high[0], stored.low[0], stored.close[0]) == (
                    bar.open,
                    bar.high,
                    bar.low,
                    bar.close,
                ), (name, resolution, side)
                assert stored.ticks[0] == bar.ticks
                checked += 1
    assert checked >= 40 * 2 * 3
    await store.aclose()


def test_last_quotes_follow_the_last_tick() -> None:
    """Each symbol's quote is its last tick by offset, with its position."""
    sim = Simulator(SimulatorConfig(seed=5, weekend_closed=False))
    batches = journaled([sim.generate(T0, T0 + 30 * 10**9, rate=200.0)])
    live = LiveState()
    live.apply(batches[0])
    ticks = list(batches[0].ticks())
    last = {t.symbol: t for t in ticks}
    quotes = live.quotes()
    assert set(quotes) == set(last)
    for name, tick in last.items():
        q = quotes[name]
        assert (q.ts, q.bid, q.ask, q.offset, q.seq, q.epoch) == (
            tick.ts,
            tick.bid,
            tick.ask,
            tick.offset,
            tick.seq,
            tick.epoch,
        )


def test_late_tick_leaves_the_forming_bar_alone() -> None:
    """A tick older than the forming bar does not change it."""
    base = TickBatch.from_rows([("EURUSD", T0 + 61 * 10**9, 1.1, 1.1001)])
    late = TickBatch.from_rows([("EURUSD", T0, 1.2, 1.2001)])
    batches = journaled([base, late])
    live = LiveState()
    for b in batches:
        live.apply(b)
    minute = LIVE_RESOLUTIONS[1]
    bar = live.forming("EURUSD", minute, PriceSide.BID)
    assert bar is not None and bar.ticks == 1 and bar.high == 1.1
    quote = live.quote("EURUSD")
    assert quote is not None and quote.bid == 1.2  # the last tick by arrival is the quote
