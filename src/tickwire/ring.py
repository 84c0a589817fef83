"""A bounded in-memory window of the most recent journaled batches, for cheap resume.

Guarantees: holds at most ``capacity`` ticks plus one batch; batches are contiguous in offset;
reading a range that has been evicted says so (returns None) instead of returning a gap.
"""

from __future__ import annotations

import bisect
from collections import deque

from .model import JournaledBatch

__all__ = ["TickRing"]


class TickRing:
    """Recent batches, oldest first. Appends evict from the front beyond ``capacity`` ticks."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        if capacity < 1:
            raise ValueError("ring capacity must be positive")
        self.capacity = capacity
        self._batches: deque[JournaledBatch] = deque()
        self._firsts: deque[int] = deque()
        self._ticks = 0

    def __len__(self) -> int:
        return self._ticks

    @property
    def first_offset(self) -> int | None:
        """The oldest offset held, or None when empty."""
        return self._firsts[0] if self._firsts else None

    def append(self, batch: JournaledBatch) -> None:
        """Add the next batch; it must follow the last one held."""
        if len(batch) == 0:
            return
        if self._batches and batch.first_offset != self._batches[-1].last_offset + 1:
            # a new epoch or a gap after recovery: start a fresh window
            self.clear()
        self._batches.append(batch)
        self._firsts.append(batch.first_offset)
        self._ticks += len(batch)
        while self._ticks - len(self._batches[0]) >= self.capacity:
            self._ticks -= len(self._batches.popleft())
            self._firsts.popleft()

    def clear(self) -> None:
        self._batches.clear()
        self._firsts.clear()
        self._ticks = 0

    def read(self, after: int, *, max_ticks: int = 100_000) -> list[JournaledBatch] | None:
        """Batches with the ticks after ``after``: at most ``max_ticks`` of them (whole batches,
        except that a first batch larger than ``max_ticks`` is cut).

        Returns None if ticks right after ``after`` have been evicted (or were never held), and
        an empty list if there is nothing newer yet.
        """
        if not self._batches:
            return None
        if after >= self._batches[-1].last_offset:
            return []
        if after + 1 < self._firsts[0]:
            return None
        index = max(0, bisect.bisect_right(self._firsts, after + 1) - 1)
        out: list[JournaledBatch] = []
        total = 0
        for i in range(index, len(self._batches)):
            batch = self._batches[i].since(after)
            if total + len(batch) > max_ticks:
                if not out:
                    out.append(batch.head(max_ticks))
                break
            out.append(batch)
            total += len(batch)
        return out
