"""Bar aggregation (tickwire.bars) against a plain-Python reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from tickwire import bars
from tickwire.model import BarUnit, PriceSide
from tickwire.timeframes import Resolution, bucket_starts

I64 = np.int64
MINUTE = Resolution(1, BarUnit.MINUTE)
T0 = 1_717_000_000 * 10**9  # some Wednesday, 2024-05-29 16:26:40 UTC


def reference(
    ts: Sequence[int],
    offset: Sequence[int],
    price: Sequence[float],
    resolution: Resolution,
    epoch: Sequence[int] | None = None,
) -> list[tuple[int, float, float, float, float, int]]:
    """Bars by the written rules, one tick at a time: (start, open, high, low, close, ticks)."""
    epochs = list(epoch) if epoch is not None else [0] * len(ts)
    rows = sorted(zip(ts, epochs, offset, price, strict=True))
    out: dict[int, list[float]] = {}
    for t, _, _, p in rows:
        start = (t - resolution.anchor_ns) // resolution.width_ns * resolution.width_ns
        start += resolution.anchor_ns
        bar = out.get(start)
        if bar is None:
            out[start] = [p, p, p, p, 1]
        else:
            bar[1], bar[2], bar[3], bar[4] = max(bar[1], p), min(bar[2], p), p, bar[4] + 1
    return [(s, b[0], b[1], b[2], b[3], int(b[4])) for s, b in sorted(out.items())]


def as_rows(result: bars.BarArrays) -> list[tuple[int, float, float, float, float, int]]:
    """BarArrays as reference-style rows."""
    return list(
        zip(
            result.start.tolist(),
            result.open.tolist(),
            result.high.tolist(),
            result.low.tolist(),
            result.close.tolist(),
            result.ticks.tolist(),
            strict=True,
        )
    )


def random_ticks(
    seed: int, n: int = 2_000, late: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ticks in offset order with coarse timestamps (many ties) and some late ticks."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.sort(rng.integers(0, 4 * 3_600, n)) * 250_000_000  # 0.25 s grid, many ties
    is_late = rng.random(n) < late
    ts[is_late] -= rng.integers(1, 600, int(is_late.sum())) * 1_000_000_000
    offset = np.arange(1, n + 1, dtype=I64)
    bid = np.round(1.1 + np.cumsum(rng.normal(0, 1e-4, n)), 5)
    ask = np.round(bid + rng.integers(1, 20, n) * 1e-5, 5)
    return ts.astype(I64), offset, bid, ask


def test_open_close_follow_ts_then_offset() -> None:
    """Open is the earliest tick by (ts, offset) and close the latest, whatever the input order."""
    ts = np.array([T0 + 5, T0 + 1, T0 + 1, T0 + 9, T0 + 9], dtype=I64)
    offset = np.array([1, 2, 3, 4, 5], dtype=I64)
    price = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    result = bars.aggregate(ts, offset, price, bucket_starts(ts, MINUTE))
    assert as_rows(result) == [(T0 - T0 % 60_000_000_000, 2.0, 5.0, 1.0, 5.0, 5)]
    shuffled = np.array([4, 0, 3, 1, 2])
    again = bars.aggregate(
        ts[shuffled], offset[shuffled], price[shuffled], bucket_starts(ts[shuffled], MINUTE)
    )
    assert as_rows(again) == as_rows(result)


def test_epoch_breaks_ties_before_offset() -> None:
    """Ticks with equal ts are ordered by epoch first: a later epoch's offset 1 comes last."""
    ts = np.array([T0, T0, T0], dtype=I64)
    epoch = np.array([1, 1, 2], dtype=I64)
    offset = np.array([7, 8, 1], dtype=I64)
    price = np.array([1.0, 2.0, 3.0])
    result = bars.aggregate(ts, offset, price, bucket_starts(ts, MINUTE), epoch=epoch)
    assert (result.open[0], result.close[0]) == (1.0, 3.0)
    reverse = bars.aggregate(ts[::-1], offset[::-1], price[::-1], ts[::-1], epoch=epoch[::-1])
    assert (reverse.open[0], reverse.close[0]) == (1.0, 3.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "resolution",
    [
        Resolution(1, BarUnit.SECOND),
        Resolution(7, BarUnit.SECOND),
        Resolution(1, BarUnit.MINUTE),
        Resolution(5, BarUnit.MINUTE),
        Resolution(1, BarUnit.HOUR),
    ],
    ids=str,
)
def test_matches_reference_with_late_ticks(seed: int, resolution: Resolution) -> None:
    """Bars equal the one-tick-at-a-time reference, with ties and late ticks, in any order."""
    ts, offset, bid, _ = random_ticks(seed)
    want = reference(ts.tolist(), offset.tolist(), bid.tolist(), resolution)
    got = bars.aggregate(ts, offset, bid, bucket_starts(ts, resolution))
    assert as_rows(got) == want
    perm = np.random.default_rng(seed + 100).permutation(len(ts))
    shuffled = bars.aggregate(
        ts[perm], offset[perm], bid[perm], bucket_starts(ts[perm], resolution)
    )
    assert as_rows(shuffled) == want


def test_in_order_ticks_take_the_same_result_as_unordered() -> None:
    """The no-sort path (ts already non-decreasing) gives the reference result."""
    ts, offset, bid, _ = random_ticks(9, late=0.0)
    assert bool(np.all(np.diff(ts) >= 0))
    got = bars.aggregate(ts, offset, bid, bucket_starts(ts, MINUTE))
    assert as_rows(got) == reference(ts.tolist(), offset.tolist(), bid.tolist(), MINUTE)


def test_group_by_key_equals_grouping_each_key_alone() -> None:
    """Grouping by (by, bucket) equals aggregating each group value on its own."""
    ts, offset, bid, _ = random_ticks(3, n=3_000)
    by = np.random.default_rng(3).integers(0, 4, len(ts)).astype(np.uint16)
    grouping = bars.group(ts, offset, bucket_starts(ts, MINUTE), by=by)
    together = bars.ohlc(grouping, bid)
    assert grouping.by is not None
    for key in range(4):
        mask = grouping.by == key
        alone = bars.aggregate(
            ts[by == key], offset[by == key], bid[by == key], bucket_starts(ts[by == key], MINUTE)
        )
        assert np.array_equal(together.start[mask], alone.start)
        for field in ("open", "high", "low", "close", "ticks"):
            assert np.array_equal(getattr(together, field)[mask], getattr(alone, field)), field


def test_sides_share_one_grouping_and_mid_is_exact() -> None:
    """aggregate_sides gives bid, ask and mid bars; mid uses (bid + ask) / 2 per tick."""
    ts, offset, bid, ask = random_ticks(5)
    starts = bucket_starts(ts, MINUTE)
    sides = bars.aggregate_sides(ts, offset, bid, ask, starts)
    assert set(sides) == {PriceSide.BID, PriceSide.ASK, PriceSide.MID}
    mid = (bid + ask) / 2
    assert np.array_equal(bars.mid(bid, ask), mid)
    want = reference(ts.tolist(), offset.tolist(), mid.tolist(), MINUTE)
    assert as_rows(sides[PriceSide.MID]) == want
    assert as_rows(sides[PriceSide.ASK]) == as_rows(bars.aggregate(ts, offset, ask, starts))


def test_empty_input_gives_no_bars() -> None:
    """No ticks, no bars, with the right dtypes."""
    empty_i, empty_f = np.empty(0, I64), np.empty(0)
    result = bars.aggregate(empty_i, empty_i, empty_f, empty_i)
    assert len(result) == 0
    assert result.start.dtype == np.int64 and result.open.dtype == np.float64


def test_rejects_inconsistent_columns() -> None:
    """Columns of different lengths, or buckets that go back in time, raise ValueError."""
    ts = np.array([T0, T0 + 1], dtype=I64)
    with pytest.raises(ValueError, match="length"):
        bars.group(ts, np.array([1], dtype=I64), ts)
    with pytest.raises(ValueError, match="decrease"):
        bars.group(ts, np.array([1, 2], dtype=I64), np.array([T0 + 5, T0], dtype=I64))
