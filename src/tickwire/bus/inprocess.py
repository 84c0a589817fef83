"""The in-process bus: a ring of recent batches plus the journal for older ones.

Publishing appends to the ring and wakes waiting consumers through one shared event, so its cost
does not depend on the number of consumers. A consumer reads from the ring while its position is
in it, and from the journal (in a worker thread) when it has fallen further behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..errors import JournalUnavailableError, PositionUnavailableError
from ..model import JournaledBatch
from ..ring import TickRing
from .base import Bus, Subscription

__all__ = ["InProcessBus"]

HistoryReader = Callable[[int, int], list[JournaledBatch]]
"""``(after, max_ticks) -> batches``; raises LookupError when ``after`` is too old."""


class InProcessBus(Bus):
    """A :class:`Bus` for one process; ``history`` reads older ticks (the journal)."""

    def __init__(
        self,
        *,
        epoch: int,
        last_offset: int,
        history: HistoryReader,
        ring_ticks: int = 1_000_000,
    ) -> None:
        self.ring = TickRing(ring_ticks)
        self._epoch = epoch
        self._last_offset = last_offset
        self._history = history
        self._published = asyncio.Event()
        self._closed = False

    @property
    def last_offset(self) -> int:
        return self._last_offset

    @property
    def epoch(self) -> int:
        return self._epoch

    async def publish(self, batch: JournaledBatch) -> None:
        if len(batch) == 0:
            return
        if batch.epoch != self._epoch:
            raise ValueError(f"batch of epoch {batch.epoch} on a bus of epoch {self._epoch}")
        self.ring.append(batch)
        self._last_offset = batch.last_offset
        self._published.set()
        self._published = asyncio.Event()

    def subscribe(self, after: int) -> Subscription:
        if after < 0 or after > self._last_offset:
            raise PositionUnavailableError(
                f"offset {after} is beyond the last published offset {self._last_offset}",
                reason="ahead",
            )
        return _InProcessSubscription(self, after)

    async def aclose(self) -> None:
        self._closed = True
        self._published.set()

    async def _read(self, after: int, max_ticks: int) -> list[JournaledBatch]:
        if self._closed:
            raise JournalUnavailableError("bus is closed")
        batches = self.ring.read(after, max_ticks=max_ticks)
        if batches is not None:
            return batches
        try:
            return await asyncio.to_thread(self._history, after, max_ticks)
        except LookupError as exc:
            raise PositionUnavailableError(str(exc), reason="too_old") from exc


class _InProcessSubscription(Subscription):
    def __init__(self, bus: InProcessBus, after: int) -> None:
        self._bus = bus
        self.after = after

    async def next(self, *, max_ticks: int = 100_000) -> list[JournaledBatch]:
        while True:
            wakeup = self._bus._published
            batches = await self._bus._read(self.after, max_ticks)
            if batches:
                self.after = batches[-1].last_offset
                return batches
            await wakeup.wait()
