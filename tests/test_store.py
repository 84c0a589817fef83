"""The DuckDB tick store: round trips, replay, bars that agree with tickwire.bars exactly."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tickwire import bars as barlib
from tickwire.errors import StoreError
from tickwire.markethours import open_mask
from tickwire.model import BarUnit, JournaledBatch, Position, PriceSide
from tickwire.store.base import BarColumns, TickColumns, TickCursor
from tickwire.store.duckdb import WRITER_NICE, DuckDBStore
from tickwire.timeframes import Resolution, bucket_starts

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MONDAY = 1_716_768_000 * SECOND  # 2024-05-27 00:00 UTC, a Monday
SYMBOLS = ("EURUSD", "USDJPY", "GBPUSD")
EVERYTHING = (MONDAY - 14 * DAY, MONDAY + 30 * DAY)
RESOLUTIONS = [
    Resolution(1, BarUnit.SECOND),
    Resolution(7, BarUnit.SECOND),
    Resolution(60, BarUnit.SECOND),
    Resolution(90, BarUnit.SECOND),
    Resolution(1, BarUnit.MINUTE),
    Resolution(5, BarUnit.MINUTE),
    Resolution(1, BarUnit.HOUR),
    Resolution(4, BarUnit.HOUR),
    Resolution(1, BarUnit.DAY),
    Resolution(1, BarUnit.DAY, daily_cut=22),
    Resolution(3, BarUnit.DAY, daily_cut=22),
    Resolution(1, BarUnit.WEEK),
    Resolution(1, BarUnit.WEEK, daily_cut=22),
]


@dataclass
class Ticks:
    """Journaled ticks in offset order (two epochs), as flat columns."""

    sym: np.ndarray
    epoch: np.ndarray
    offset: np.ndarray
    seq: np.ndarray
    ts: np.ndarray
    bid: np.ndarray
    ask: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def of(self, symbol: str) -> Ticks:
        """This symbol's ticks, still in offset order."""
        mask = self.sym == SYMBOLS.index(symbol)
        return Ticks(*(getattr(self, f)[mask] for f in Ticks.__dataclass_fields__))

    def batches(self, seed: int, lo: int = 0, hi: int | None = None) -> list[JournaledBatch]:
        """Ticks ``lo:hi`` as batches cut at random points, each with its own symbol table."""
        rng = np.random.default_rng(seed)
        hi = len(self) if hi is None else hi
        cuts = {lo, hi}
        cuts.update(rng.integers(lo, hi, 12).tolist())  # some long batches
        cuts.update((lo + rng.integers(0, 40, 8)).tolist())  # tiny ones at the start
        cuts.update((lo + 1 + np.flatnonzero(np.diff(self.epoch[lo:hi]))).tolist())  # epochs
        edges = sorted(c for c in cuts if lo <= c <= hi)
        out = []
        for a, b in itertools.pairwise(edges):
            order = rng.permutation(len(SYMBOLS))  # batch-local symbol indexes
            local = np.argsort(order).astype(np.uint16)
            out.append(
                JournaledBatch(
                    epoch=int(self.epoch[a]),
                    first_offset=int(self.offset[a]),
                    symbols=tuple(SYMBOLS[i] for i in order),
                    sym=local[self.sym[a:b]],
                    seq=self.seq[a:b].astype(np.uint64),
                    ts=self.ts[a:b],
                    bid=self.bid[a:b],
                    ask=self.ask[a:b],
                )
            )
        return out


def make_ticks(n: int = 12_000, seed: int = 1) -> Ticks:
    """Ticks over 2½ FX weeks with many equal timestamps, late ticks and an epoch change."""
    rng = np.random.default_rng(seed)
    ts = MONDAY + np.sort(rng.integers(0, 18 * DAY // (100 * 10**6), n)) * (100 * 10**6)
    ties = np.flatnonzero(rng.random(n) < 0.08)
    ts[ties[ties > 0]] = ts[ties[ties > 0] - 1]
    late = rng.random(n) < 0.03
    ts[late] -= rng.integers(1, 600, int(late.sum())) * SECOND
    very_late = rng.random(n) < 0.003
    ts[very_late] -= rng.integers(1, 40, int(very_late.sum())) * HOUR
    ts = ts[open_mask(ts)]
    n = len(ts)
    sym = rng.integers(0, len(SYMBOLS), n).astype(np.uint16)
    level = np.array([1.08, 157.0, 1.27])[sym]
    bid = np.round(level * np.exp(np.cumsum(rng.normal(0, 2e-4, n))), 5)
    ask = np.round(bid + rng.integers(1, 30, n) * 1e-5, 5)
    cut = int(n * 0.6)
    # late ticks of the new epoch with the ts of an old-epoch tick of the same symbol: the
    # epoch, not the (smaller) offset, must order them last
    for i in rng.choice(np.arange(cut, cut + 800), 40, replace=False).tolist():
        same = np.flatnonzero(sym[cut - 800 : cut] == sym[i]) + cut - 800
        ts[i] = ts[int(rng.choice(same))]
    epoch = np.where(np.arange(n) < cut, 1, 2).astype(np.int64)
    offset = np.where(np.arange(n) < cut, np.arange(1, n + 1), np.arange(1, n + 1) - cut)
    seq = np.zeros(n, dtype=np.int64)
    for i in range(len(SYMBOLS)):
        seq[sym == i] = np.arange(1, int((sym == i).sum()) + 1)
    return Ticks(sym, epoch, offset.astype(np.int64), seq, ts.astype(np.int64), bid, ask)


DATA = make_ticks()


async def load(path: Path, data: Ticks = DATA, seed: int = 0) -> DuckDBStore:
    """A store at ``path`` with ``data`` applied, one to three batches per apply."""
    store = await DuckDBStore.open(path)
    batches = data.batches(seed)
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(batches):
        k = int(rng.integers(1, 4))
        await store.apply(batches[i : i + k])
        i += k
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[DuckDBStore]:
    """A store holding DATA."""
    s = await load(tmp_path / "store.duckdb")
    yield s
    await s.aclose()


def expected_bars(
    symbol: str,
    resolution: Resolution,
    side: PriceSide,
    start: int,
    end: int,
    data: Ticks = DATA,
) -> barlib.BarArrays:
    """The reference: tickwire.bars over the symbol's ticks, bars starting in [start, end)."""
    t = data.of(symbol)
    sides = barlib.aggregate_sides(
        t.ts, t.offset, t.bid, t.ask, bucket_starts(t.ts, resolution), epoch=t.epoch
    )
    b = sides[side]
    keep = (b.start >= start) & (b.start < end)
    return barlib.BarArrays(
        *(getattr(b, f)[keep] for f in ("start", "open", "high", "low", "close", "ticks"))
    )


def assert_same_bars(got: BarColumns, want: BarColumns | barlib.BarArrays, label: str) -> None:
    """Every column equal, floats bit for bit."""
    assert len(got) == len(want), label
    for field in ("start", "open", "high", "low", "close", "ticks"):
        g, w = getattr(got, field), getattr(want, field)
        assert g.dtype == w.dtype, (label, field)
        assert np.array_equal(g, w), (label, field)


def expected_ticks(symbol: str, start: int, end: int, data: Ticks = DATA) -> Ticks:
    """The symbol's ticks with start <= ts < end, ordered by (ts, epoch, offset)."""
    t = data.of(symbol)
    keep = (t.ts >= start) & (t.ts < end)
    t = Ticks(*(getattr(t, f)[keep] for f in Ticks.__dataclass_fields__))
    order = np.lexsort((t.offset, t.epoch, t.ts))
    return Ticks(*(getattr(t, f)[order] for f in Ticks.__dataclass_fields__))


async def all_ticks(
    store: DuckDBStore, symbol: str, start: int, end: int, page: int
) -> TickColumns:
    """Every tick in the range, fetched page by page and concatenated."""
    pages: list[TickColumns] = []
    after: TickCursor | None = None
    while True:
        cols = await store.ticks(symbol, start, end, limit=page, after=after)
        assert len(cols) <= page
        if len(cols) == 0:
            break
        pages.append(cols)
        after = TickCursor(int(cols.ts[-1]), int(cols.epoch[-1]), int(cols.offset[-1]))
    assert all(len(p) == page for p in pages[:-1])  # only the last page may be short
    fields = ("epoch", "offset", "seq", "ts", "bid", "ask")
    empty = {f: np.empty(0, np.float64 if f in ("bid", "ask") else np.int64) for f in fields}
    return TickColumns(
        symbol,
        **{f: np.concatenate([getattr(p, f) for p in pages] or [empty[f]]) for f in fields},
    )


async def snapshot(store: DuckDBStore) -> dict[str, object]:
    """Everything the store answers, for before/after comparisons."""
    out: dict[str, object] = {"hw": await store.high_water()}
    for symbol in SYMBOLS:
        t = await store.ticks(symbol, *EVERYTHING, limit=10**9)
        out[symbol] = [
            getattr(t, f).tolist() for f in ("epoch", "offset", "seq", "ts", "bid", "ask")
        ]
        for res in (
            Resolution(1, BarUnit.SECOND),
            Resolution(1, BarUnit.MINUTE),
            Resolution(1, BarUnit.DAY),
        ):
            b = await store.bars(symbol, res, PriceSide.MID, *EVERYTHING, limit=10**9)
            out[f"{symbol}/{res}"] = [
                getattr(b, f).tolist() for f in ("start", "open", "high", "low", "close", "ticks")
            ]
    return out


# -- ticks --------------------------------------------------------------------------------------


async def test_ticks_round_trip_with_pagination(store: DuckDBStore) -> None:
    """Paging through ticks returns each stored tick once, in (ts, epoch, offset) order."""
    for symbol in SYMBOLS:
        for start, end in (EVERYTHING, (MONDAY + DAY + 7 * HOUR, MONDAY + 2 * DAY + 3 * HOUR)):
            got = await all_ticks(store, symbol, start, end, page=97)
            want = expected_ticks(symbol, start, end)
            assert len(got) == len(want) > 0
            for field in ("epoch", "offset", "seq", "ts", "bid", "ask"):
                assert np.array_equal(getattr(got, field), getattr(want, field)), field
            assert got.ts.dtype == np.int64 and got.bid.dtype == np.float64


async def test_a_page_boundary_inside_equal_timestamps(tmp_path: Path) -> None:
    """A page that ends among ticks with the same ts resumes at the next (epoch, offset)."""
    ts = np.full(5, MONDAY + HOUR, dtype=np.int64)
    batch = JournaledBatch(
        3, 10, ("EURUSD",), np.zeros(5, np.uint16), np.arange(1, 6, dtype=np.uint64), ts,
        np.arange(5.0), np.arange(5.0) + 0.5,
    )  # fmt: skip
    async with await DuckDBStore.open(tmp_path / "s.duckdb") as s:
        await s.apply([batch])
        got = await all_ticks(s, "EURUSD", MONDAY, MONDAY + DAY, page=2)
    assert got.offset.tolist() == [10, 11, 12, 13, 14]


# -- high water and replay ----------------------------------------------------------------------


async def test_high_water_and_idempotent_replay(store: DuckDBStore) -> None:
    """Replaying everything, split differently, changes nothing; the high water is the last tick."""
    last = len(DATA) - 1
    assert await store.high_water() == Position(int(DATA.epoch[last]), int(DATA.offset[last]))
    before = await snapshot(store)
    batches = DATA.batches(seed=42)
    await store.apply(batches)
    await store.apply(batches[: len(batches) // 2])
    assert await snapshot(store) == before


async def test_apply_skips_old_ticks_and_stores_the_rest(tmp_path: Path) -> None:
    """A batch straddling the high water stores only its new ticks; older epochs are skipped."""
    half = len(DATA) // 3
    async with await DuckDBStore.open(tmp_path / "s.duckdb") as s:
        assert await s.high_water() is None
        await s.apply(DATA.batches(1, 0, half))
        assert await s.high_water() == Position(1, half)
        straddling = DATA.batches(2, half - 50, half + 70)
        await s.apply(straddling)
        await s.apply(DATA.batches(3, half + 70, len(DATA)))
        assert await snapshot(s) == await snapshot_of_full_store(tmp_path)


async def snapshot_of_full_store(tmp_path: Path) -> dict[str, object]:
    """The snapshot of a store loaded in one go with DATA."""
    s = await load(tmp_path / "full.duckdb", seed=5)
    try:
        return await snapshot(s)
    finally:
        await s.aclose()


async def test_gap_and_epoch_rules(tmp_path: Path) -> None:
    """A gap in an epoch raises StoreError; older epochs are ignored; a new one starts anywhere."""

    def batch(epoch: int, first: int, n: int, t0: int) -> JournaledBatch:
        return JournaledBatch(
            epoch, first, ("EURUSD",), np.zeros(n, np.uint16), np.arange(n, dtype=np.uint64),
            t0 + np.arange(n, dtype=np.int64) * SECOND, np.full(n, 1.1), np.full(n, 1.2),
        )  # fmt: skip

    async with await DuckDBStore.open(tmp_path / "s.duckdb") as s:
        await s.apply([batch(5, 100, 10, MONDAY)])  # an empty store takes any first offset
        with pytest.raises(StoreError, match="gap"):
            await s.apply([batch(5, 111, 10, MONDAY + MINUTE)])
        assert await s.high_water() == Position(5, 109)
        await s.apply([batch(4, 1, 10, MONDAY + 2 * MINUTE)])  # older epoch: ignored
        await s.apply([batch(6, 40, 10, MONDAY + 3 * MINUTE)])  # newer epoch: any offset
        assert await s.high_water() == Position(6, 49)
        t = await s.ticks("EURUSD", *EVERYTHING, limit=100)
        assert t.epoch.tolist() == [5] * 10 + [6] * 10


# -- bars ---------------------------------------------------------------------------------------


async def test_bars_agree_exactly_with_the_reference(store: DuckDBStore) -> None:
    """Every resolution and side equals tickwire.bars on the same ticks, float for float."""
    for res in RESOLUTIONS:
        for side in PriceSide:
            for symbol in SYMBOLS:
                got = await store.bars(symbol, res, side, *EVERYTHING, limit=10**9)
                want = expected_bars(symbol, res, side, *EVERYTHING)
                assert len(want) > 0
                assert_same_bars(got, want, f"{symbol} {res} cut {res.daily_cut} {side}")


async def test_bars_many_equals_bars_per_symbol(store: DuckDBStore) -> None:
    """bars_many returns, per symbol, what bars returns; unknown symbols get no bars."""
    for res in (Resolution(1, BarUnit.DAY, daily_cut=22), Resolution(15, BarUnit.SECOND)):
        many = await store.bars_many([*SYMBOLS, "XXXYYY"], res, PriceSide.BID, *EVERYTHING)
        assert set(many) == {*SYMBOLS, "XXXYYY"}
        assert len(many["XXXYYY"]) == 0
        for symbol in SYMBOLS:
            want = expected_bars(symbol, res, PriceSide.BID, *EVERYTHING)
            assert_same_bars(many[symbol], want, f"{symbol} {res}")
            assert many[symbol].symbol == symbol


async def test_bar_range_and_limit_follow_bucket_starts(store: DuckDBStore) -> None:
    """Only bars whose start lies in [start, end) are returned, at most ``limit``, oldest first."""
    for res in (
        Resolution(5, BarUnit.MINUTE),
        Resolution(30, BarUnit.SECOND),
        Resolution(1, BarUnit.DAY, daily_cut=22),
    ):
        width = res.width_ns
        first = expected_bars("EURUSD", res, PriceSide.ASK, *EVERYTHING).start
        start = int(first[3]) + width // 2  # inside a bar: the next one comes first
        end = int(first[len(first) * 2 // 3])  # a bar start: excluded
        got = await store.bars("EURUSD", res, PriceSide.ASK, start, end, limit=10**6)
        want = expected_bars("EURUSD", res, PriceSide.ASK, start, end)
        assert int(got.start[0]) == int(first[4]) and int(got.start[-1]) < end
        assert_same_bars(got, want, str(res))
        limited = await store.bars("EURUSD", res, PriceSide.ASK, start, end, limit=5)
        assert limited.start.tolist() == want.start[:5].tolist()


async def test_late_tick_moves_open_and_close(tmp_path: Path) -> None:
    """A late tick becomes the open of its minute if earliest; an equal-ts later tick closes it."""
    t0 = MONDAY + 10 * HOUR

    def one(offset: int, ts: int, bid: float) -> JournaledBatch:
        return JournaledBatch(
            1, offset, ("EURUSD",), np.zeros(1, np.uint16), np.array([offset], np.uint64),
            np.array([ts], np.int64), np.array([bid]), np.array([bid + 0.0002]),
        )  # fmt: skip

    m1, h1 = Resolution(1, BarUnit.MINUTE), Resolution(1, BarUnit.HOUR)
    async with await DuckDBStore.open(tmp_path / "s.duckdb") as s:
        await s.apply([one(1, t0 + 30 * SECOND, 1.2), one(2, t0 + 40 * SECOND, 1.3)])
        await s.apply([one(3, t0 + 10 * SECOND, 1.1)])  # late: the new open
        await s.apply([one(4, t0 + 10 * SECOND, 1.15)])  # same ts, later offset: not the open
        await s.apply([one(5, t0 + 40 * SECOND, 1.25)])  # same ts as the close: the new close
        await s.apply([one(6, t0 - 50 * MINUTE, 1.0)])  # very late: an earlier minute and hour
        for res in (m1, h1):
            got = await s.bars("EURUSD", res, PriceSide.BID, *EVERYTHING, limit=10)
            t = await s.ticks("EURUSD", *EVERYTHING, limit=10)
            want = barlib.aggregate(t.ts, t.offset, t.bid, bucket_starts(t.ts, res), epoch=t.epoch)
            assert_same_bars(got, want, str(res))
        got = await s.bars("EURUSD", m1, PriceSide.BID, *EVERYTHING, limit=10)
        assert got.open.tolist() == [1.0, 1.1] and got.close.tolist() == [1.0, 1.25]
        assert got.ticks.tolist() == [1, 5]


async def test_weekend_has_no_bars(store: DuckDBStore) -> None:
    """No tick, no bar: nothing starts between Friday 22:00 and Sunday 22:00 UTC."""
    friday_close = MONDAY + 4 * DAY + 22 * HOUR
    weekend = (friday_close, friday_close + 2 * DAY)
    for res in (
        Resolution(1, BarUnit.MINUTE),
        Resolution(1, BarUnit.HOUR),
        Resolution(1, BarUnit.DAY, daily_cut=22),
    ):
        got = await store.bars("USDJPY", res, PriceSide.MID, *weekend, limit=10_000)
        assert len(got) == 0, str(res)
    daily = await store.bars(
        "USDJPY", Resolution(1, BarUnit.DAY), PriceSide.MID, *EVERYTHING, limit=100
    )
    weekdays = {int(((s // DAY) + 3) % 7) for s in daily.start.tolist()}  # 0 = Monday
    assert 5 not in weekdays  # no Saturday bar; Sunday has the two hours after 22:00


async def test_buckets_before_the_anchor_floor_like_timeframes(tmp_path: Path) -> None:
    """Ticks before a resolution's anchor (even before 1970) fall in the same bars as in numpy."""
    n = 600
    ts = -4 * DAY + np.arange(n, dtype=np.int64) * 37 * MINUTE + 11 * SECOND
    rng = np.random.default_rng(11)
    bid = np.round(1.1 + rng.normal(0, 1e-3, n), 5)
    batch = JournaledBatch(
        1, 1, ("EURUSD",), np.zeros(n, np.uint16), np.arange(1, n + 1, dtype=np.uint64), ts,
        bid, bid + 1e-4,
    )  # fmt: skip
    one_to_n = np.arange(1, n + 1, dtype=np.int64)
    early = Ticks(
        np.zeros(n, np.uint16), np.ones(n, np.int64), one_to_n, one_to_n, ts, bid, bid + 1e-4
    )
    everything = (-30 * DAY, 30 * DAY)
    async with await DuckDBStore.open(tmp_path / "s.duckdb") as s:
        await s.apply([batch])
        for res in (
            Resolution(1, BarUnit.WEEK),
            Resolution(1, BarUnit.WEEK, daily_cut=22),
            Resolution(1, BarUnit.DAY, daily_cut=22),
            Resolution(3, BarUnit.HOUR),
            Resolution(45, BarUnit.SECOND),
        ):
            got = await s.bars("EURUSD", res, PriceSide.MID, *everything, limit=10**6)
            want = expected_bars("EURUSD", res, PriceSide.MID, *everything, data=early)
            assert_same_bars(got, want, f"{res} cut {res.daily_cut}")


# -- pruning and reopening ----------------------------------------------------------------------


async def test_prune_drops_raw_ticks_and_keeps_bars(store: DuckDBStore) -> None:
    """prune_ticks drops ticks before the cut, second bars with them; minute bars and up stay."""
    cut = MONDAY + 8 * DAY + 5 * HOUR + 17 * SECOND
    kept = [r for r in RESOLUTIONS if r.width_ns % MINUTE == 0]
    before = [
        await store.bars(s, r, PriceSide.MID, *EVERYTHING, limit=10**9)
        for s in SYMBOLS
        for r in kept
    ]
    dropped = await store.prune_ticks(cut)
    assert dropped == int((DATA.ts < cut).sum()) > 0
    assert await store.prune_ticks(cut) == 0
    after = [
        await store.bars(s, r, PriceSide.MID, *EVERYTHING, limit=10**9)
        for s in SYMBOLS
        for r in kept
    ]
    for got, want in zip(after, before, strict=True):
        assert_same_bars(got, want, want.symbol)
    one_second = Resolution(1, BarUnit.SECOND)
    for s in SYMBOLS:
        t = await store.ticks(s, *EVERYTHING, limit=10**9)
        assert len(t) == len(expected_ticks(s, cut, EVERYTHING[1]))
        assert int(t.ts.min()) >= cut
        secs = await store.bars(s, one_second, PriceSide.MID, *EVERYTHING, limit=10**9)
        assert_same_bars(secs, expected_bars(s, one_second, PriceSide.MID, cut, EVERYTHING[1]), s)


async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    """After close and reopen the store answers the same and keeps accepting ticks."""
    third = len(DATA) // 3
    s = await DuckDBStore.open(tmp_path / "s.duckdb")
    await s.apply(DATA.batches(7, 0, third))
    before = await snapshot(s)
    await s.aclose()
    await s.aclose()  # idempotent
    s = await DuckDBStore.open(tmp_path / "s.duckdb")
    try:
        assert await snapshot(s) == before
        await s.apply(DATA.batches(8, third, len(DATA)))
        for res in (Resolution(1, BarUnit.MINUTE), Resolution(1, BarUnit.WEEK, daily_cut=22)):
            for symbol in SYMBOLS:
                got = await s.bars(symbol, res, PriceSide.MID, *EVERYTHING, limit=10**9)
                assert_same_bars(
                    got, expected_bars(symbol, res, PriceSide.MID, *EVERYTHING), str(res)
                )
    finally:
        await s.aclose()


# -- edges and concurrency ----------------------------------------------------------------------


async def test_unknown_symbols_and_empty_ranges_return_empty_columns(store: DuckDBStore) -> None:
    """Unknown symbols, empty ranges and a zero limit give empty columns, not errors."""
    m1 = Resolution(1, BarUnit.MINUTE)
    assert len(await store.ticks("NOPE", *EVERYTHING, limit=10)) == 0
    assert len(await store.bars("NOPE", m1, PriceSide.BID, *EVERYTHING, limit=10)) == 0
    assert len(await store.ticks("EURUSD", MONDAY + DAY, MONDAY, limit=10)) == 0
    assert len(await store.bars("EURUSD", m1, PriceSide.BID, *EVERYTHING, limit=0)) == 0
    empty = await store.bars("EURUSD", m1, PriceSide.BID, MONDAY - 7 * DAY, MONDAY - DAY, limit=5)
    assert empty.symbol == "EURUSD" and empty.start.dtype == np.int64 and len(empty) == 0
    many = await store.bars_many(["NOPE"], m1, PriceSide.BID, *EVERYTHING)
    assert list(many) == ["NOPE"] and len(many["NOPE"]) == 0


async def test_many_concurrent_reads_with_few_slots(tmp_path: Path) -> None:
    """More concurrent reads than threads and queue slots all complete, with correct answers."""
    s = await DuckDBStore.open(tmp_path / "s.duckdb", read_threads=1, max_pending_reads=2)
    try:
        await s.apply(DATA.batches(3))
        m5 = Resolution(5, BarUnit.MINUTE)
        results = await asyncio.gather(
            *(
                s.bars(SYMBOLS[i % 3], m5, PriceSide.ASK, *EVERYTHING, limit=10**6)
                for i in range(24)
            )
        )
        for i, got in enumerate(results):
            assert_same_bars(
                got, expected_bars(SYMBOLS[i % 3], m5, PriceSide.ASK, *EVERYTHING), str(i)
            )
    finally:
        await s.aclose()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    """After aclose every call raises StoreError."""
    s = await DuckDBStore.open(tmp_path / "s.duckdb")
    await s.aclose()
    with pytest.raises(StoreError, match="closed"):
        await s.apply(DATA.batches(1, 0, 10))
    with pytest.raises(StoreError, match="closed"):
        await s.prune_ticks(MONDAY)


async def test_open_refuses_foreign_files(tmp_path: Path) -> None:
    """A file that is not a DuckDB database, or has another schema version, raises StoreError."""
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database" * 1000)
    with pytest.raises(StoreError):
        await DuckDBStore.open(junk)
    s = await DuckDBStore.open(tmp_path / "v.duckdb")
    await s.aclose()
    con = duckdb.connect(str(tmp_path / "v.duckdb"))
    con.execute("UPDATE meta SET schema_version = 99")
    con.close()
    with pytest.raises(StoreError, match="schema version 99"):
        await DuckDBStore.open(tmp_path / "v.duckdb")


async def test_writer_thread_yields_the_cpu_to_the_event_loop(store: DuckDBStore) -> None:
    """The writer thread (and DuckDB's workers it starts) runs niced below the event loop."""
    await store.high_water()  # opened: the writer thread exists
    writers = [t for t in threading.enumerate() if t.name.startswith("tickwire-store-writer")]
    assert writers and writers[0].native_id is not None
    writer_nice = os.getpriority(os.PRIO_PROCESS, writers[0].native_id)
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert writer_nice == loop_nice + WRITER_NICE
