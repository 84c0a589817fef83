"""Typed configuration objects for the SDK: timeouts, 429 retries and reconnect backoff."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Final

import msgspec

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUTS",
    "Backoff",
    "Retries",
    "Timeouts",
]


class Timeouts(msgspec.Struct, frozen=True, kw_only=True):
    """Seconds to wait: to connect (HTTP and WebSocket), to read, to write, for a pooled slot."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0


class Retries(msgspec.Struct, frozen=True, kw_only=True):
    """How 429 answers are retried.

    A 429 is retried at most ``max_retries`` times, each after the server's ``Retry-After``
    (or ``default_wait`` when it gave none). A ``Retry-After`` longer than ``max_wait`` is not
    waited for: the call raises :class:`RateLimitError` at once.
    """

    max_retries: int = 3
    max_wait: float = 30.0
    default_wait: float = 1.0


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Reconnect delays: a random first delay, then geometric growth up to a cap.

    ``max_attempts`` failed connection attempts in a row (None: no limit) end the stream with
    the last error. A connection that delivers data resets the sequence.
    """

    initial: float = 0.5
    minimum: float = 0.25
    factor: float = 2.0
    maximum: float = 30.0
    max_attempts: int | None = None

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Yield the delay before each reconnect attempt: jittered start, then capped growth."""
        rand = (rng or random).random
        yield rand() * self.initial
        delay = self.minimum
        while True:
            # Full jitter around the geometric curve, so clients that lost one server spread out.
            yield delay * (0.5 + rand() / 2)
            delay = min(delay * self.factor, self.maximum)


DEFAULT_TIMEOUTS: Final = Timeouts()
DEFAULT_RETRIES: Final = Retries()
DEFAULT_BACKOFF: Final = Backoff()
