"""Rate limits and monthly quotas per key, behind one small interface.

:class:`RateLimiter` answers one question per request: may key ``K`` spend ``cost`` requests
now? Two limits apply, and a request must pass both:

- a **token bucket**: ``burst`` tokens, refilled at ``rate`` tokens per second;
- a **monthly quota**: at most ``monthly_quota`` requests per calendar month (UTC).

A refused request costs nothing: it takes no tokens and does not count against the quota.
A ``cost`` larger than the bucket takes the whole (full) bucket, so a key with ``burst=1`` can
still make a cost-5 call; the quota is always charged the full cost.

:class:`MemoryRateLimiter` keeps the state of one process. A multi-node deployment replaces it
with a Redis implementation of the same interface: the quota as ``INCRBY`` on a per-month key
that expires after the month, and the bucket as a short Lua script (read tokens and timestamp,
refill, take, write back with a TTL) so each check is one atomic round trip. That is why
:meth:`RateLimiter.hit` is a coroutine even though the memory implementation never waits.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from .keys import write_atomic

__all__ = ["USAGE_FILE", "Decision", "MemoryRateLimiter", "RateLimiter"]

log = logging.getLogger("tickwire.access")

USAGE_FILE = "usage.json"
"""Name of :class:`MemoryRateLimiter`'s usage file inside the data directory."""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The answer for one request, and what to put in the ``X-RateLimit-*`` headers.

    The headers describe the monthly quota when the key has one (TraderMade's plans are monthly
    quotas, and its SDK reads these headers) and the token bucket otherwise, so for a given key
    they always describe the same limit. ``retry_after`` is set only on refusals.
    """

    allowed: bool
    limit: int
    """The quota, or the bucket size for keys without a quota."""
    remaining: int
    """Requests left in the quota (or whole tokens in the bucket) after this one."""
    reset: int
    """Epoch seconds when the quota starts again, or when the bucket will be full."""
    retry_after: int | None = None
    """Seconds to wait before the same request can succeed (≥ 1); None when allowed."""
    reason: Literal["rate", "quota"] | None = None
    """Why the request was refused: the bucket is empty, or the monthly quota is used up."""


class RateLimiter(abc.ABC):
    """Counts requests per key id. Implementations must be safe to call from the event loop."""

    @abc.abstractmethod
    async def hit(
        self,
        key_id: str,
        *,
        rate: float,
        burst: int,
        monthly_quota: int | None,
        cost: int = 1,
        now: float | None = None,
    ) -> Decision:
        """Spend ``cost`` requests for ``key_id`` if both limits allow it (see the module doc).

        ``now`` (epoch seconds) overrides the limiter's clock, for tests.
        """

    async def flush(self) -> None:
        """Persist what must survive a restart (called periodically); a no-op by default."""
        return None

    async def aclose(self) -> None:
        """Flush and release resources. The limiter may still be used, unpersisted."""
        await self.flush()


class _State:
    """Per-key state: the token bucket and this month's usage."""

    __slots__ = ("last", "month", "tokens", "used")

    def __init__(self, month: int, used: int = 0) -> None:
        self.tokens: float | None = None  # None: full (the bucket size is known on first hit)
        self.last = 0.0
        self.month = month
        self.used = used


class _UsageFile(msgspec.Struct, kw_only=True):
    version: int
    month: str
    """``YYYY-MM``: the counts are for this month."""
    saved: float
    used: dict[str, int]
    """Requests counted this month, by key id."""


_usage_decoder = msgspec.json.Decoder(_UsageFile)
_usage_encoder = msgspec.json.Encoder()


def _month_index(now: float) -> int:
    d = datetime.fromtimestamp(now, UTC)
    return d.year * 12 + d.month - 1


def _month_start(index: int) -> float:
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC).timestamp()


def _month_label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


class MemoryRateLimiter(RateLimiter):
    """Token buckets and monthly counters in this process's memory.

    Bounds: at most ``max_keys`` keys are tracked; beyond that the least recently used key is
    forgotten (its bucket starts full again and its month's count restarts at zero). The default
    matches the key store's cap, so with one store nothing is ever evicted.

    Persistence: with ``usage_path`` (usually ``<data_dir>/usage.json``), this month's counts
    are loaded at start and written atomically by :meth:`flush`, which
    :class:`~tickwire.access.AccessMiddleware` calls every ``maintenance_interval`` seconds and
    at shutdown. A crash therefore forgets at most that interval's requests (they are forgiven,
    never double counted). Token buckets are not persisted: after a restart every bucket is
    full. Counts from an earlier month are dropped.

    The clock (``clock``, epoch seconds) is injectable; a clock that steps back never refills a
    bucket and never reopens a finished month's count. Every method takes a short thread lock,
    so :meth:`flush`'s file write can run in a worker thread.
    """

    def __init__(
        self,
        *,
        usage_path: Path | str | None = None,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Start empty, or with this month's counts from ``usage_path`` if it exists.

        A damaged usage file is logged and ignored (the month's counts restart at zero): a
        limiter that cannot start would take the whole API down.
        """
        self.usage_path = None if usage_path is None else Path(usage_path)
        self.max_keys = max_keys
        self._clock = clock
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._dirty = False
        self._load()

    def __repr__(self) -> str:
        return f"MemoryRateLimiter(usage_path={self.usage_path!r}, keys={len(self._states)})"

    async def hit(
        self,
        key_id: str,
        *,
        rate: float,
        burst: int,
        monthly_quota: int | None,
        cost: int = 1,
        now: float | None = None,
    ) -> Decision:
        return self.hit_nowait(
            key_id, rate=rate, burst=burst, monthly_quota=monthly_quota, cost=cost, now=now
        )

    def hit_nowait(
        self,
        key_id: str,
        *,
        rate: float,
        burst: int,
        monthly_quota: int | None,
        cost: int = 1,
        now: float | None = None,
    ) -> Decision:
        """:meth:`hit`, synchronously: this implementation never has to wait."""
        if now is None:
            now = self._clock()
        month = _month_index(now)
        with self._lock:
            state = self._state(key_id, month)
            if month > state.month:
                state.month, state.used = month, 0
            elapsed = max(0.0, now - state.last)
            tokens = burst if state.tokens is None else min(burst, state.tokens + elapsed * rate)
            state.tokens, state.last = tokens, max(now, state.last)
            take = min(cost, burst)

            reason: Literal["rate", "quota"] | None = None
            if monthly_quota is not None and state.used + cost > monthly_quota:
                reason = "quota"
                retry_after = _month_start(state.month + 1) - now
            elif tokens < take:
                reason = "rate"
                retry_after = (take - tokens) / rate
            else:
                state.tokens = tokens = tokens - take
                state.used += cost
                self._dirty = True

            if monthly_quota is not None:
                limit = monthly_quota
                remaining = max(0, monthly_quota - state.used)
                reset = math.ceil(_month_start(state.month + 1))
            else:
                limit = burst
                remaining = math.floor(tokens)
                reset = math.ceil(now + (burst - tokens) / rate)
            if reason is None:
                return Decision(allowed=True, limit=limit, remaining=remaining, reset=reset)
            return Decision(
                allowed=False,
                limit=limit,
                remaining=remaining,
                reset=reset,
                retry_after=max(1, math.ceil(retry_after)),
                reason=reason,
            )

    def usage(self, key_id: str, *, now: float | None = None) -> int:
        """Requests counted for ``key_id`` in the current month (UTC)."""
        month = _month_index(self._clock() if now is None else now)
        with self._lock:
            state = self._states.get(key_id)
            return state.used if state is not None and state.month == month else 0

    def _state(self, key_id: str, month: int) -> _State:
        state = self._states.get(key_id)
        if state is None:
            state = self._states[key_id] = _State(month)
            if len(self._states) > self.max_keys:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key_id)
        return state

    async def flush(self) -> None:
        """Write this month's counts to ``usage_path`` if any changed since the last flush.

        The file write runs in a worker thread. Raises ``OSError`` if it fails; the counts stay
        marked unsaved, so the next flush tries again.
        """
        if self.usage_path is None or not self._dirty:
            return
        await asyncio.to_thread(self.flush_sync)

    def flush_sync(self) -> None:
        """:meth:`flush`, blocking the calling thread."""
        if self.usage_path is None:
            return
        with self._write_lock:
            now = self._clock()
            month = _month_index(now)
            with self._lock:
                if not self._dirty:
                    return
                used = {k: s.used for k, s in self._states.items() if s.month == month and s.used}
                self._dirty = False
            body = _UsageFile(version=1, month=_month_label(month), saved=now, used=used)
            try:
                write_atomic(self.usage_path, _usage_encoder.encode(body) + b"\n")
            except BaseException:
                self._dirty = True
                raise

    def _load(self) -> None:
        if self.usage_path is None:
            return
        try:
            body = _usage_decoder.decode(self.usage_path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError) as exc:
            log.error("ignoring usage file %s (%s); monthly counts restart", self.usage_path, exc)
            return
        month = _month_index(self._clock())
        if body.version != 1 or body.month != _month_label(month):
            return
        for key_id, used in list(body.used.items())[: self.max_keys]:
            self._states[key_id] = _State(month, used)
