"""The feed interface: one async method that yields batches of ticks.

A feed is an async context manager. ``next_batch()`` returns the next :class:`TickBatch`
(possibly empty while the market is quiet) or ``None`` once the feed has ended for good.
Venue-specific details stay inside each feed's module; the tickplant only sees batches.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

from ..model import TickBatch

__all__ = ["FeedSource", "MockFeed"]


class FeedSource(abc.ABC):
    """Base class of every feed."""

    name: str = "feed"

    @abc.abstractmethod
    async def next_batch(self) -> TickBatch | None:
        """The next ticks in arrival order, or None when the feed has ended."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release the feed's resources. Idempotent."""

    async def __aenter__(self) -> FeedSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class MockFeed(FeedSource):
    """A feed driven by a handler or a fixed list of batches, for tests."""

    name = "mock"

    def __init__(
        self,
        source: Iterable[TickBatch] | Callable[[], Awaitable[TickBatch | None]],
    ) -> None:
        if callable(source):
            self._handler: Callable[[], Awaitable[TickBatch | None]] | None = source
            self._batches = None
        else:
            self._handler = None
            self._batches = iter(source)

    async def next_batch(self) -> TickBatch | None:
        if self._handler is not None:
            return await self._handler()
        assert self._batches is not None
        return next(self._batches, None)
