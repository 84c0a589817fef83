"""The bus: journaled ticks, in offset order, to any number of consumers.

Publishing is only ever done by the tickplant, after the journal has made a batch durable.
A consumer subscribes *after* an offset and pulls batches in order; it never misses one and
never sees one twice. A consumer that falls behind the bus's retention raises
:class:`PositionUnavailableError`. Publishing costs the same whatever the number of consumers.

This is the contract that the in-process bus implements now, and that NATS JetStream (a
stream with consumers by sequence) or Redis Streams (``XREAD`` by id) implement across
processes. Callers use only this interface.
"""

from __future__ import annotations

import abc
from types import TracebackType

from ..model import JournaledBatch

__all__ = ["Bus", "Subscription"]


class Subscription(abc.ABC):
    """An ordered cursor on the bus."""

    after: int
    """The last offset delivered (the next batch starts at ``after + 1``)."""

    @abc.abstractmethod
    async def next(self, *, max_ticks: int = 100_000) -> list[JournaledBatch]:
        """Wait for and return the batches after ``after``: at least one tick, at most
        ``max_ticks``; ``after`` then moves to the last offset returned.

        Raises :class:`~tickwire.errors.PositionUnavailableError` if they are gone, and
        :class:`~tickwire.errors.JournalUnavailableError` once the bus is closed.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Stop consuming. Idempotent."""

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Bus(abc.ABC):
    """Where journaled batches are published and consumed."""

    @property
    @abc.abstractmethod
    def last_offset(self) -> int:
        """The last offset published (0 before any)."""

    @property
    @abc.abstractmethod
    def epoch(self) -> int:
        """The epoch of the batches being published."""

    @abc.abstractmethod
    async def publish(self, batch: JournaledBatch) -> None:
        """Make a journaled batch visible to every consumer (tickplant only)."""

    @abc.abstractmethod
    def subscribe(self, after: int) -> Subscription:
        """A cursor that delivers the ticks after offset ``after`` of the current epoch."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Wake every consumer with an error and stop. Idempotent."""
