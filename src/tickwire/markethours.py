"""When the FX market is open: Sunday 22:00 UTC to Friday 22:00 UTC.

Crypto trades around the clock. Holidays are not modelled.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .model import Kind

__all__ = ["MarketStatus", "is_open", "market_status", "open_mask"]

HOUR_NS = 3_600 * 1_000_000_000
WEEK_NS = 7 * 24 * HOUR_NS
# Boundaries measured from Sunday 22:00 UTC; 1970-01-04 was a Sunday.
_WEEK_OPEN_NS = (3 * 24 + 22) * HOUR_NS  # 1970-01-04 22:00 UTC
_OPEN_SPAN_NS = 5 * 24 * HOUR_NS  # Sunday 22:00 → Friday 22:00


def _since_week_open(ts: int) -> int:
    return (ts - _WEEK_OPEN_NS) % WEEK_NS


def is_open(ts: int, kind: Kind = Kind.FX) -> bool:
    """True if an instrument of ``kind`` trades at ``ts`` (UTC ns)."""
    return kind is Kind.CRYPTO or _since_week_open(ts) < _OPEN_SPAN_NS


def open_mask(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Vectorised :func:`is_open` for FX hours."""
    mask: npt.NDArray[np.bool_] = (ts - _WEEK_OPEN_NS) % WEEK_NS < _OPEN_SPAN_NS
    return mask


class MarketStatus:
    """Open or closed at ``now``, with the next open and next close (None: never changes)."""

    __slots__ = ("is_open", "next_close", "next_open", "now")

    def __init__(
        self, now: int, is_open: bool, next_open: int | None, next_close: int | None
    ) -> None:
        self.now = now
        self.is_open = is_open
        self.next_open = next_open
        self.next_close = next_close


def market_status(now: int, kind: Kind = Kind.FX) -> MarketStatus:
    """The market status of ``kind`` at ``now`` (UTC ns)."""
    if kind is Kind.CRYPTO:
        return MarketStatus(now, True, None, None)
    into = _since_week_open(now)
    week_open = now - into
    if into < _OPEN_SPAN_NS:
        return MarketStatus(now, True, week_open + WEEK_NS, week_open + _OPEN_SPAN_NS)
    return MarketStatus(now, False, week_open + WEEK_NS, week_open + WEEK_NS + _OPEN_SPAN_NS)
