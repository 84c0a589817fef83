"""The store writer: applies journaled ticks from the bus to the history store, in order.

It consumes the bus after the store's high-water mark, so after a crash it replays exactly the
ticks the store is missing. It applies at most every ``flush_interval`` seconds and at most
``max_ticks`` per apply, so the store sees few large writes. After an apply it also rests at
least ``(1 - max_duty) / max_duty`` times as long as the apply took, up to ``max_rest``
seconds: an apply has a fixed cost (a transaction, the merge into the 1-minute rollup), so under
a high tick rate the writer makes fewer, larger applies and stays near ``max_duty`` of a core
instead of growing with the rate, while one slow apply (a loaded disk, a retry) never leaves the
store more than ``max_rest`` behind.
When the store falls behind the bus's ring, the bus serves it from the journal: memory stays
bounded.
"""

from __future__ import annotations

import asyncio
import logging

from ..bus.base import Bus
from ..model import JournaledBatch
from .base import TickStore

__all__ = ["StoreWriter"]

log = logging.getLogger("tickwire.store")


class StoreWriter:
    """Keeps a :class:`TickStore` up to date with the bus (see the module docstring)."""

    def __init__(
        self,
        store: TickStore,
        bus: Bus,
        *,
        after: int,
        flush_interval: float = 0.1,
        max_ticks: int = 500_000,
        max_duty: float = 0.1,
        max_rest: float = 1.0,
    ) -> None:
        if not 0 < max_duty <= 1:
            raise ValueError("max_duty must be in (0, 1]")
        self.store = store
        self.bus = bus
        self.flush_interval = flush_interval
        self.rest_factor = (1 - max_duty) / max_duty
        self.max_rest = max(max_rest, flush_interval)
        self.max_ticks = max_ticks
        self.applied_offset = after
        self.applied_ticks = 0
        self._caught_up = asyncio.Event()
        self.failure: str | None = None

    @property
    def lag(self) -> int:
        """Ticks published but not yet in the store."""
        return self.bus.last_offset - self.applied_offset

    async def wait_caught_up(self, offset: int) -> None:
        """Wait until the store holds every tick up to ``offset``."""
        while self.applied_offset < offset:
            self._caught_up.clear()
            await self._caught_up.wait()

    async def run(self) -> None:
        """Apply batches until cancelled: everything available, then rest for the interval."""
        subscription = self.bus.subscribe(self.applied_offset)
        loop = asyncio.get_running_loop()
        while True:
            batches = await subscription.next(max_ticks=self.max_ticks)
            started = loop.time()
            await self._apply(batches)
            took = loop.time() - started
            if sum(len(b) for b in batches) < self.max_ticks:
                rest = min(took * self.rest_factor, self.max_rest)
                await asyncio.sleep(max(self.flush_interval, rest))

    async def _apply(self, batches: list[JournaledBatch]) -> None:
        while True:
            try:
                await self.store.apply(batches)
                break
            except Exception as exc:  # keep trying: the journal still holds every tick
                self.failure = f"store apply failed: {exc}"
                log.exception("store writer: apply failed; retrying in 1 s")
                await asyncio.sleep(1)
        self.failure = None
        self.applied_offset = batches[-1].last_offset
        self.applied_ticks += sum(len(b) for b in batches)
        self._caught_up.set()

    async def drain(self) -> None:
        """Apply everything already published (used at shutdown)."""
        target = self.bus.last_offset
        subscription = self.bus.subscribe(self.applied_offset)
        while self.applied_offset < target:
            batches = await subscription.next(max_ticks=self.max_ticks)
            await self._apply(batches)
