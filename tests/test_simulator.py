"""The simulator feed: a deterministic, consistent, session-shaped FX market."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from tickwire.catalog import CATALOG, Catalog
from tickwire.feeds.simulator import (
    HOUR_NS,
    SECOND_NS,
    SYMBOL_PARAMS,
    Simulator,
    SimulatorConfig,
    SimulatorFeed,
)
from tickwire.markethours import open_mask
from tickwire.model import Kind, Symbol, TickBatch

MAJORS = ("EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD")


def utc(year: int, month: int, day: int, hour: int = 0) -> int:
    """UTC nanoseconds of a date and hour."""
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp()) * SECOND_NS


TUESDAY = utc(2026, 3, 10)  # a Tuesday: the market is open all day
FRIDAY = utc(2026, 3, 13)


def concat(batches: list[TickBatch]) -> TickBatch:
    """One batch from many that share their symbols."""
    return TickBatch(
        batches[0].symbols,
        np.concatenate([b.sym for b in batches]),
        np.concatenate([b.ts for b in batches]),
        np.concatenate([b.bid for b in batches]),
        np.concatenate([b.ask for b in batches]),
    )


def history(start: int, end: int, *, rate: float = 4.0, seed: int = 7, **config: bool) -> TickBatch:
    """All ticks of a backfill, as one batch."""
    sim = Simulator(SimulatorConfig(seed=seed, **config))
    return concat(list(sim.history(start, end, rate=rate)))


def of(batch: TickBatch, code: str) -> npt.NDArray[np.bool_]:
    """The mask of one symbol's ticks."""
    mask: npt.NDArray[np.bool_] = batch.sym == batch.symbols.index(code)
    return mask


def assert_same(a: TickBatch, b: TickBatch) -> None:
    """Two batches are identical, column by column."""
    assert a.symbols == b.symbols
    for col in ("sym", "ts", "bid", "ask"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))


@pytest.fixture(scope="module")
def tuesday() -> TickBatch:
    """A weekday of history at 4 ticks/s."""
    return history(TUESDAY, TUESDAY + 24 * HOUR_NS)


def test_same_seed_same_batches() -> None:
    """The same seed and calls give identical batches; another seed gives other prices."""
    runs = []
    for seed in (7, 7, 8):
        sim = Simulator(SimulatorConfig(seed=seed))
        batches = list(sim.history(TUESDAY, TUESDAY + 2 * HOUR_NS, rate=5.0))
        batches.append(sim.generate(TUESDAY + 2 * HOUR_NS, TUESDAY + 2 * HOUR_NS + SECOND_NS))
        runs.append(concat(batches))
    assert len(runs[0]) > 1_000
    assert_same(runs[0], runs[1])
    assert len(runs[0]) != len(runs[2]) or not np.array_equal(runs[0].bid, runs[2].bid)


def test_catalog_coverage() -> None:
    """Every catalogue symbol has parameters and ticks; majors and metals are there."""
    assert len(CATALOG) >= 40
    assert set(CATALOG) <= set(SYMBOL_PARAMS)
    for code in (*MAJORS, "XAUUSD", "XAGUSD"):
        assert code in CATALOG
    batch = history(TUESDAY + 12 * HOUR_NS, TUESDAY + 14 * HOUR_NS, rate=50.0)
    assert batch.symbols == tuple(CATALOG)
    assert set(np.unique(batch.sym).tolist()) == set(range(len(CATALOG)))


def test_starting_mids_match_table() -> None:
    """Every symbol starts within 0.1% of its table level."""
    mids = Simulator(SimulatorConfig()).mids()
    for code, mid in mids.items():
        assert mid == pytest.approx(SYMBOL_PARAMS[code].level, rel=1e-3), code


def test_crosses_consistent_with_legs() -> None:
    """EURJPY stays within two spreads of EURUSD × USDJPY at the same moment."""
    sim = Simulator(SimulatorConfig())
    start = TUESDAY + 14 * HOUR_NS
    batch = sim.generate(start, start + 2 * SECOND_NS, rate=5_000.0)
    mid = (batch.bid + batch.ask) / 2

    def asof(code: str, ts: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float64], ...]:
        m = of(batch, code)
        i = np.searchsorted(batch.ts[m], ts, side="right") - 1
        return mid[m][i], ts - batch.ts[m][i]

    cross = of(batch, "EURJPY")
    ts = batch.ts[cross][20:]  # skip the first ticks, before both legs have quoted
    eurusd, age1 = asof("EURUSD", ts)
    usdjpy, age2 = asof("USDJPY", ts)
    assert len(ts) > 100 and max(age1.max(), age2.max()) < 50_000_000
    spread = (batch.ask - batch.bid)[cross][20:]
    assert np.all(np.abs(mid[cross][20:] - eurusd * usdjpy) <= 2 * spread)


def test_eurusd_gbpusd_correlated(tuesday: TickBatch) -> None:
    """Five-minute returns of EURUSD and GBPUSD over a day correlate above 0.4."""
    grid = TUESDAY + np.arange(1, 288, dtype=np.int64) * 300 * SECOND_NS
    series = []
    for code in ("EURUSD", "GBPUSD"):
        m = of(tuesday, code)
        i = np.searchsorted(tuesday.ts[m], grid, side="right") - 1
        series.append(np.diff(np.log((tuesday.bid[m] + tuesday.ask[m])[i] / 2)))
    assert np.corrcoef(*series)[0, 1] > 0.4


def test_sessions_shape_intensity(tuesday: TickBatch) -> None:
    """The London/New York overlap hour has clearly more ticks than 03:00 UTC."""
    hour = (tuesday.ts - TUESDAY) // HOUR_NS
    counts = np.bincount(hour, minlength=24)
    assert counts[13] > 2 * counts[3]
    assert counts[22] < counts[3]  # rollover is sparse
    jpy = of(tuesday, "AUDJPY")  # relatively busier in Asia than EURGBP
    gbp = of(tuesday, "EURGBP")
    share = [np.sum(m & (hour == 3)) / np.sum(m & (hour == 13)) for m in (jpy, gbp)]
    assert share[0] > 2 * share[1]


def test_spreads_widen_at_rollover(tuesday: TickBatch) -> None:
    """EURUSD spreads around 22:00 UTC are wider than in the London/New York overlap."""
    m = of(tuesday, "EURUSD")
    spread = (tuesday.ask - tuesday.bid)[m]
    hour = (tuesday.ts[m] - TUESDAY) / HOUR_NS
    rollover = spread[(hour >= 21.9) & (hour < 22.2)]
    overlap = spread[(hour >= 13) & (hour < 15)]
    assert len(rollover) > 10
    assert np.median(rollover) > 2 * np.median(overlap)


def test_weekend_closed_for_fx_open_for_crypto() -> None:
    """From Friday 22:00 to Sunday 22:00 UTC only crypto ticks; FX prices stay put."""
    sim = Simulator(SimulatorConfig())
    start, end = FRIDAY + 20 * HOUR_NS, FRIDAY + (2 * 24 + 23) * HOUR_NS
    batches = list(sim.history(start, FRIDAY + 22 * HOUR_NS, rate=20.0))
    friday = sim.mids()
    batches += list(sim.history(FRIDAY + 22 * HOUR_NS, FRIDAY + 70 * HOUR_NS, rate=20.0))
    sunday = sim.mids()
    batches += list(sim.history(FRIDAY + 70 * HOUR_NS, end, rate=20.0))
    batch = concat(batches)
    crypto = np.array([CATALOG[c].kind is Kind.CRYPTO for c in batch.symbols])[batch.sym]
    closed = ~open_mask(batch.ts)
    assert not np.any(closed & ~crypto)
    assert np.sum(closed & crypto) > 1_000
    assert np.any(~crypto & (batch.ts < FRIDAY + 22 * HOUR_NS))
    assert np.any(~crypto & (batch.ts >= FRIDAY + 70 * HOUR_NS))
    assert friday["EURUSD"] == sunday["EURUSD"] and friday["XAUUSD"] == sunday["XAUUSD"]
    assert friday["BTCUSD"] != sunday["BTCUSD"]


def test_weekend_open_for_demos() -> None:
    """With weekend_closed=False, FX ticks on Saturday too."""
    saturday = FRIDAY + 24 * HOUR_NS
    batch = history(saturday + 12 * HOUR_NS, saturday + 13 * HOUR_NS, weekend_closed=False)
    assert np.sum(of(batch, "EURUSD")) > 100


def test_prices_valid(tuesday: TickBatch) -> None:
    """Ask exceeds bid by at least one last-decimal unit; both are rounded to the decimals."""
    for k, code in enumerate(tuesday.symbols):
        m = tuesday.sym == k
        decimals = CATALOG[code].decimals
        bid, ask = tuesday.bid[m], tuesday.ask[m]
        assert np.array_equal(np.round(bid, decimals), bid), code
        assert np.array_equal(np.round(ask, decimals), ask), code
        assert np.all(ask - bid >= 10.0**-decimals * (1 - 1e-9)), code
        typical = SYMBOL_PARAMS[code].spread_pips * CATALOG[code].pip
        assert 0.5 * typical <= np.median(ask - bid) <= 2 * typical, code


def test_timestamps_sorted_and_unique_per_symbol() -> None:
    """Ticks come sorted by ts, inside their range, strictly increasing per symbol."""
    sim = Simulator(SimulatorConfig())
    start = TUESDAY + 13 * HOUR_NS
    edges = [start + k * 100_000_000 for k in range(11)]
    batches = [sim.generate(a, b, rate=20_000.0) for a, b in itertools.pairwise(edges)]
    for (a, b), batch in zip(itertools.pairwise(edges), batches, strict=True):
        assert len(batch) and batch.ts[0] >= a and batch.ts[-1] < b
    batch = concat(batches)
    assert np.all(np.diff(batch.ts) >= 0)
    for k in range(len(batch.symbols)):
        assert np.all(np.diff(batch.ts[batch.sym == k]) > 0)


def test_timestamps_unique_under_extreme_rates() -> None:
    """Even when ticks collide on the same nanosecond, each symbol's timestamps stay unique."""
    sim = Simulator(SimulatorConfig())
    start = TUESDAY + 14 * HOUR_NS
    batch = sim.generate(start, start + 10_000, rate=3e8)
    assert len(batch) > 2_000
    assert np.all(np.diff(batch.ts) >= 0) and batch.ts[0] >= start and batch.ts[-1] < start + 10_000
    for k in range(len(batch.symbols)):
        assert np.all(np.diff(batch.ts[batch.sym == k]) > 0)


def test_rate_does_not_change_prices() -> None:
    """The price path depends on the time grid only, not on the tick rate."""
    mids = []
    for rate in (1.0, 100.0):
        sim = Simulator(SimulatorConfig())
        sim.generate(TUESDAY, TUESDAY + 10 * SECOND_NS, rate=rate)
        mids.append(sim.mids())
    assert mids[0] == mids[1]


def test_ranges_must_be_contiguous() -> None:
    """A range that does not start where the previous one ended is refused."""
    sim = Simulator(SimulatorConfig())
    sim.generate(TUESDAY, TUESDAY + SECOND_NS)
    with pytest.raises(ValueError, match="contiguous"):
        sim.generate(TUESDAY + 2 * SECOND_NS, TUESDAY + 3 * SECOND_NS)
    with pytest.raises(ValueError, match="contiguous"):
        sim.history(TUESDAY, TUESDAY + HOUR_NS, rate=1.0)
    with pytest.raises(ValueError, match="load_rate"):
        sim.load(TUESDAY + SECOND_NS, TUESDAY + 2 * SECOND_NS)


@pytest.mark.parametrize(
    "settings",
    [{"rate": -1.0}, {"rate": math.nan}, {"step": 0.0}, {"load_rate": 0.0}, {"seed": -1}],
)
def test_config_validated(settings: dict[str, float]) -> None:
    """Invalid settings raise ValueError."""
    with pytest.raises(ValueError):
        SimulatorConfig(**settings)  # type: ignore[arg-type]


def test_load_mode_exact_count() -> None:
    """Load mode emits exactly load_rate × elapsed ticks, evenly spaced, symbols round-robin."""
    sim = Simulator(SimulatorConfig(load_rate=333.3))
    step = 100_000_000
    start = utc(2026, 3, 14, 12)  # Saturday: load mode ignores the weekend
    total = 0
    for k in range(1, 31):
        batch = sim.load(start + (k - 1) * step, start + k * step)
        total += len(batch)
        assert total == math.floor(333.3 * k / 10 + 1e-9)
        assert np.all(np.diff(batch.ts) > 0) and np.all(batch.ask > batch.bid)
    single = Simulator(SimulatorConfig(load_rate=1_000.0)).load(start, start + SECOND_NS)
    assert len(single) == 1_000
    assert single.sym[:3].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(np.diff(single.ts), np.full(999, 1_000_000))
    counts = np.bincount(single.sym, minlength=len(CATALOG))
    assert counts.max() - counts.min() <= 1


class FakeClock:
    """A clock that only moves when the feed sleeps (plus 3 ms of scheduling lag)."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += round(seconds * SECOND_NS) + 3_000_000


async def test_feed_batches_cover_contiguous_ranges() -> None:
    """SimulatorFeed sleeps to each step boundary and returns generate(last_end, now)."""
    start = TUESDAY + 14 * HOUR_NS + 50_000_000
    clock = FakeClock(start)
    feed = SimulatorFeed(Simulator(SimulatorConfig(rate=2_000.0)), clock=clock, sleep=clock.sleep)
    reference = Simulator(SimulatorConfig(rate=2_000.0))
    last = start
    async with feed:
        for _ in range(20):
            batch = await feed.next_batch()
            assert_same(batch, reference.generate(last, clock.now))
            assert len(batch) and batch.ts[0] >= last and batch.ts[-1] < clock.now
            last = clock.now
    assert clock.sleeps[0] == pytest.approx(0.05)
    assert all(s == pytest.approx(0.097) for s in clock.sleeps[1:])
    assert feed.simulator.time_ns == last


async def test_feed_continues_after_backfill_and_in_load_mode() -> None:
    """After a backfill the feed starts where it ended; in load mode it emits load_rate."""
    sim = Simulator(SimulatorConfig(load_rate=500.0))
    end = TUESDAY + HOUR_NS
    for _ in sim.history(TUESDAY, end, rate=1.0):
        pass
    clock = FakeClock(end + 2 * SECOND_NS)  # the backfill took two seconds
    feed = SimulatorFeed(sim, clock=clock, sleep=clock.sleep)
    first = await feed.next_batch()
    assert len(first) == 1_000 and first.ts[0] == end  # the two seconds, caught up
    second = await feed.next_batch()  # sleeps 0.1 s, wakes 3 ms late
    assert clock.sleeps == [pytest.approx(0.1)]
    assert len(first) + len(second) == math.floor(500 * 2.103)


def test_start_mids_continue_prices() -> None:
    """A simulator started from another's last quotes continues from them, not the table."""
    first = Simulator(SimulatorConfig(seed=1))
    start = TUESDAY + 10 * HOUR_NS
    batch = concat(list(first.history(start - 6 * HOUR_NS, start, rate=20.0)))
    last: dict[str, float] = {}
    for k, code in enumerate(batch.symbols):
        i = np.flatnonzero(batch.sym == k)[-1]
        last[code] = (batch.bid[i] + batch.ask[i]) / 2
    exact = Simulator(SimulatorConfig(seed=2), start_mids=first.mids())
    assert exact.mids() == pytest.approx(first.mids(), rel=1e-9)

    second = Simulator(SimulatorConfig(seed=2), start_mids=last)
    for code in MAJORS:  # the busiest symbols set the currencies
        assert second.mids()[code] == pytest.approx(last[code], rel=2e-4), code
    moved = 0
    for code, mid in second.mids().items():
        assert mid == pytest.approx(last[code], rel=5e-3), code
        moved += abs(mid / SYMBOL_PARAMS[code].level - 1) > 1e-4
    assert moved > len(CATALOG) // 2  # they continue from the last quotes, not the table
    after = second.generate(start, start + SECOND_NS, rate=1_000.0)
    m = of(after, "EURUSD")
    assert after.bid[m][0] == pytest.approx(last["EURUSD"], rel=2e-4)


def test_symbol_outside_table_gets_derived_parameters() -> None:
    """A catalogue symbol missing from the table is priced from its currencies."""
    eurhuf = Symbol(
        code="EURHUF", base="EUR", quote="HUF", kind=Kind.FX, pip=0.01, decimals=3, name="x"
    )
    sim = Simulator(SimulatorConfig(), Catalog([CATALOG["EURUSD"], CATALOG["USDHUF"], eurhuf]))
    assert sim.mids()["EURHUF"] == pytest.approx(1.08 * 365, rel=1e-3)
    batch = sim.generate(TUESDAY + 14 * HOUR_NS, TUESDAY + 14 * HOUR_NS + SECOND_NS, rate=300.0)
    m = of(batch, "EURHUF")
    assert m.sum() > 10 and np.all(batch.ask[m] > batch.bid[m])
