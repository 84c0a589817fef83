"""Optional pandas helpers: bars and ticks as DataFrames. pandas is imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from ._models import Bar, Tick

__all__ = ["bars_frame", "ticks_frame"]


def _pandas(what: str) -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError as exc:
        raise ImportError(
            f"{what} needs pandas, which is not installed: pip install pandas"
        ) from exc


def bars_frame(bars: Sequence[Bar]) -> Any:
    """A DataFrame indexed by bar start (UTC): open, high, low, close, ticks, complete."""
    pd = _pandas("bars_df()")
    index = pd.DatetimeIndex(pd.to_datetime([b.ts for b in bars], unit="ns", utc=True), name="time")
    columns = {
        "open": [b.open for b in bars],
        "high": [b.high for b in bars],
        "low": [b.low for b in bars],
        "close": [b.close for b in bars],
        "ticks": pd.array([b.ticks for b in bars], dtype="int64"),
        "complete": pd.array([b.complete for b in bars], dtype="bool"),
    }
    return pd.DataFrame(columns, index=index)


def ticks_frame(ticks: Sequence[Tick]) -> Any:
    """A DataFrame indexed by tick time (UTC, ns): symbol, bid, ask, epoch, offset, seq."""
    pd = _pandas("ticks_df()")
    index = pd.DatetimeIndex(
        pd.to_datetime([t.ts for t in ticks], unit="ns", utc=True), name="time"
    )
    columns = {
        "symbol": [t.symbol for t in ticks],
        "bid": [t.bid for t in ticks],
        "ask": [t.ask for t in ticks],
        "epoch": pd.array([t.epoch for t in ticks], dtype="int64"),
        "offset": pd.array([t.offset for t in ticks], dtype="int64"),
        "seq": pd.array([t.seq for t in ticks], dtype="int64"),
    }
    return pd.DataFrame(columns, index=index)
