"""Bar aggregation over numpy columns: the one definition of OHLC in tickwire.

Pure functions, no I/O and no clock, shared by the live state (forming bars), the store (its
1-minute rollup) and the tests (as the reference every store must agree with, float for float).

The rules:

* a tick falls into the bar whose start is its ``bucket_starts`` value (see
  :func:`tickwire.timeframes.bucket_starts`), which must be a non-decreasing function of ``ts``;
* ticks are ordered by ``(ts, epoch, offset)``: ``open`` is the price of the first tick in that
  order, ``close`` of the last; ``high`` and ``low`` are the maximum and minimum; ``ticks`` counts;
* the mid price is ``(bid + ask) / 2`` in float64, computed by :func:`mid` here and in exactly the
  same way in SQL (``(bid + ask) / 2`` on DOUBLE), so every path yields identical floats.

Ticks usually arrive in offset order; the grouping notices that and then needs only a stable sort
by ``ts`` (or none at all when ``ts`` is already non-decreasing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .model import PriceSide

__all__ = ["BarArrays", "Grouping", "aggregate", "aggregate_sides", "group", "mid", "ohlc"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
AnyInt = npt.NDArray[np.integer]

_EMPTY_I64: I64 = np.empty(0, dtype=np.int64)


def mid(bid: F64, ask: F64) -> F64:
    """The mid price, ``(bid + ask) / 2``: the only way tickwire computes it."""
    result: F64 = (bid + ask) / 2
    return result


@dataclass(frozen=True, slots=True)
class Grouping:
    """How ticks fall into bars, independent of the price side.

    ``order`` sorts the input by ``(by, ts, epoch, offset)``; bar ``i`` holds the sorted ticks
    ``first[i]`` up to ``first[i + 1]``. ``open_index`` and ``close_index`` point into the
    *input* arrays. ``by`` holds each bar's group value (for example a symbol id) when grouping
    by one, else None.
    """

    order: I64
    first: I64
    start: I64
    ticks: I64
    open_index: I64
    close_index: I64
    by: AnyInt | None

    def __len__(self) -> int:
        return len(self.start)


@dataclass(frozen=True, slots=True)
class BarArrays:
    """Bars of one price side as columns, ordered by ``start`` (ns)."""

    start: I64
    open: F64
    high: F64
    low: F64
    close: F64
    ticks: I64

    def __len__(self) -> int:
        return len(self.start)


def _arrival_ordered(offset: AnyInt, epoch: AnyInt | None) -> bool:
    """True if ``(epoch, offset)`` strictly increases along the arrays."""
    d_offset = np.diff(offset)
    if epoch is None:
        return bool(np.all(d_offset > 0))
    d_epoch = np.diff(epoch)
    return bool(np.all((d_epoch > 0) | ((d_epoch == 0) & (d_offset > 0))))


def _order(ts: I64, offset: AnyInt, epoch: AnyInt | None, by: AnyInt | None) -> I64:
    """A permutation that sorts the ticks by ``(by, ts, epoch, offset)``."""
    n = len(ts)
    if not _arrival_ordered(offset, epoch):
        keys: list[npt.NDArray[np.generic]] = [offset]
        if epoch is not None:
            keys.append(epoch)
        keys.append(ts)
        if by is not None:
            keys.append(by)
        full: I64 = np.lexsort(keys).astype(np.int64, copy=False)
        return full
    # in arrival order: a stable sort keeps ties in ts in (epoch, offset) order
    if by is None:
        if bool(np.all(ts[1:] >= ts[:-1])):
            return np.arange(n, dtype=np.int64)
        by_ts: I64 = np.argsort(ts, kind="stable").astype(np.int64, copy=False)
        return by_ts
    by_group: I64 = np.argsort(by, kind="stable").astype(np.int64, copy=False)
    ts_sorted, by_sorted = ts[by_group], by[by_group]
    if bool(np.any((ts_sorted[1:] < ts_sorted[:-1]) & (by_sorted[1:] == by_sorted[:-1]))):
        both: I64 = np.lexsort((ts, by)).astype(np.int64, copy=False)
        return both
    return by_group


def group(
    ts: I64,
    offset: AnyInt,
    bucket_starts: I64,
    *,
    epoch: AnyInt | None = None,
    by: AnyInt | None = None,
) -> Grouping:
    """Group ticks into bars by ``(by, bucket start)``; see the module docstring for the order.

    Raises ValueError if the columns differ in length or ``bucket_starts`` decreases where ``ts``
    increases (it must be a bucketing of ``ts``).
    """
    n = len(ts)
    lengths = {len(offset), len(bucket_starts)}
    if epoch is not None:
        lengths.add(len(epoch))
    if by is not None:
        lengths.add(len(by))
    if lengths != {n}:
        raise ValueError("bar columns differ in length")
    if n == 0:
        return Grouping(
            _EMPTY_I64,
            _EMPTY_I64,
            _EMPTY_I64,
            _EMPTY_I64,
            _EMPTY_I64,
            _EMPTY_I64,
            None if by is None else by[:0],
        )
    order = _order(ts, offset, epoch, by)
    bucket = bucket_starts[order]
    step = bucket[1:] != bucket[:-1]
    decreasing = bucket[1:] < bucket[:-1]
    by_sorted = None
    if by is not None:
        by_sorted = by[order]
        same_group = by_sorted[1:] == by_sorted[:-1]
        step |= ~same_group
        decreasing &= same_group
    if bool(np.any(decreasing)):
        raise ValueError("bucket_starts must not decrease as ts increases")
    first = np.concatenate((np.zeros(1, np.int64), np.flatnonzero(step) + 1))
    ends = np.append(first[1:], n)
    return Grouping(
        order=order,
        first=first,
        start=bucket[first],
        ticks=ends - first,
        open_index=order[first],
        close_index=order[ends - 1],
        by=None if by_sorted is None else by_sorted[first],
    )


def ohlc(grouping: Grouping, price: F64) -> BarArrays:
    """The bars of one price column under ``grouping``."""
    if len(grouping) == 0:
        empty = np.empty(0, dtype=np.float64)
        return BarArrays(_EMPTY_I64, empty, empty, empty, empty, _EMPTY_I64)
    ordered = price[grouping.order]
    return BarArrays(
        start=grouping.start,
        open=price[grouping.open_index],
        high=np.maximum.reduceat(ordered, grouping.first),
        low=np.minimum.reduceat(ordered, grouping.first),
        close=price[grouping.close_index],
        ticks=grouping.ticks,
    )


def aggregate(
    ts: I64,
    offset: AnyInt,
    price: F64,
    bucket_starts: I64,
    *,
    epoch: AnyInt | None = None,
) -> BarArrays:
    """Bars of one symbol and one price column."""
    return ohlc(group(ts, offset, bucket_starts, epoch=epoch), price)


def aggregate_sides(
    ts: I64,
    offset: AnyInt,
    bid: F64,
    ask: F64,
    bucket_starts: I64,
    *,
    epoch: AnyInt | None = None,
) -> dict[PriceSide, BarArrays]:
    """Bid, ask and mid bars of one symbol, sharing one grouping."""
    grouping = group(ts, offset, bucket_starts, epoch=epoch)
    return {
        PriceSide.BID: ohlc(grouping, bid),
        PriceSide.ASK: ohlc(grouping, ask),
        PriceSide.MID: ohlc(grouping, mid(bid, ask)),
    }
