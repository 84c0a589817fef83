"""Bar resolutions and how a timestamp falls into a bar.

Alignment rules (all UTC):

* second, minute and hour bars are aligned to 00:00 UTC (the Unix epoch);
* day bars start at the daily cut: 00:00, or 22:00 of the previous calendar day (the FX
  convention TraderMade uses, where the bar for date D covers D-1 22:00 to D 22:00);
* week bars start on Monday 00:00 with the 00:00 cut, or on Sunday 22:00 with the 22:00 cut.

A multiplier counts whole units from those anchors. Bars exist only where ticks exist, so the
weekend (no ticks) produces no bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import InvalidQueryError
from .model import BarUnit

__all__ = ["NS_PER", "DailyCut", "Resolution", "bucket_start", "bucket_starts"]

SECOND_NS = 1_000_000_000
NS_PER: dict[BarUnit, int] = {
    BarUnit.SECOND: SECOND_NS,
    BarUnit.MINUTE: 60 * SECOND_NS,
    BarUnit.HOUR: 3_600 * SECOND_NS,
    BarUnit.DAY: 86_400 * SECOND_NS,
    BarUnit.WEEK: 7 * 86_400 * SECOND_NS,
}
_MONDAY_AFTER_EPOCH_NS = 4 * 86_400 * SECOND_NS  # 1970-01-05 00:00 UTC was a Monday
MAX_MULTIPLIER = 10_000


class DailyCut(int):
    """Hour of day (UTC) at which daily and weekly bars start: 0 or 22."""

    def __new__(cls, hour: int) -> DailyCut:
        if hour not in (0, 22):
            raise InvalidQueryError("daily cut must be 0 or 22 (UTC hour)", param="daily_cut")
        return super().__new__(cls, hour)


@dataclass(frozen=True, slots=True)
class Resolution:
    """``multiplier × unit`` with a daily cut; knows its bucket width and anchor in ns."""

    multiplier: int
    unit: BarUnit
    daily_cut: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.multiplier <= MAX_MULTIPLIER:
            raise InvalidQueryError(
                f"multiplier must be between 1 and {MAX_MULTIPLIER}", param="multiplier"
            )
        DailyCut(self.daily_cut)

    @property
    def width_ns(self) -> int:
        return self.multiplier * NS_PER[self.unit]

    @property
    def anchor_ns(self) -> int:
        """A bucket boundary; every boundary is ``anchor + k × width``."""
        # the 22:00 cut puts boundaries 2 h before midnight
        shift = (self.daily_cut - 24) * 3_600 * SECOND_NS if self.daily_cut else 0
        if self.unit is BarUnit.WEEK:
            return _MONDAY_AFTER_EPOCH_NS + shift
        if self.unit is BarUnit.DAY:
            return shift
        return 0

    def __str__(self) -> str:
        return f"{self.multiplier}{self.unit.value}"


def bucket_start(ts: int, resolution: Resolution) -> int:
    """Start (ns) of the bar that contains ``ts``."""
    width, anchor = resolution.width_ns, resolution.anchor_ns
    return (ts - anchor) // width * width + anchor


def bucket_starts(ts: npt.NDArray[np.int64], resolution: Resolution) -> npt.NDArray[np.int64]:
    """Vectorised :func:`bucket_start`."""
    width, anchor = resolution.width_ns, resolution.anchor_ns
    result: npt.NDArray[np.int64] = (ts - anchor) // width * width + anchor
    return result
