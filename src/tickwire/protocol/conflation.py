"""Conflation of the quotes channel: the latest value per symbol, at most ``max_rate`` a second.

A :class:`QuoteConflator` belongs to one connection. The fan-out *offers* the latest quote of
each symbol that changed (usually the encoded quote piece, shared by every connection), and
asks which values are *due*. It keeps no clock: ``now`` is always an argument.

Guarantees, per subscribed symbol:

* two emissions are at least ``1 / max_rate`` seconds apart (by the ``now`` values given),
  less :data:`SLACK` (1 µs), so that float rounding never pushes an update to the next flush;
* an emission always carries the latest value offered, never an older one after a newer;
* a value offered at time ``t`` is emitted by the first :meth:`QuoteConflator.due` call at or
  after ``max(t, previous emission + 1 / max_rate)``: a quiet symbol's last quote is not lost,
  as long as the caller calls :meth:`~QuoteConflator.due` by :meth:`~QuoteConflator.next_due`;
* memory is bounded by the number of subscribed symbols.

A client that reads slowly just sees fewer updates: while the fan-out holds back (it does not
call :meth:`~QuoteConflator.due`), newer offers replace older ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["SLACK", "QuoteConflator"]

V = TypeVar("V")

SLACK = 1e-6
"""Seconds an update may come early: absorbs float rounding of ``now + 1 / max_rate``."""


class QuoteConflator(Generic[V]):
    """Per-symbol rate-limited latest values for one connection (see the module docstring)."""

    __slots__ = ("_interval", "_next", "_pending")

    def __init__(self) -> None:
        self._interval: dict[str, float] = {}
        self._next: dict[str, float] = {}
        self._pending: dict[str, V] = {}

    def __len__(self) -> int:
        return len(self._interval)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._interval

    def __iter__(self) -> Iterator[str]:
        return iter(self._interval)

    def __repr__(self) -> str:
        return f"<QuoteConflator symbols={len(self._interval)} pending={len(self._pending)}>"

    def add(self, symbol: str, max_rate: float, *, now: float) -> None:
        """Conflate ``symbol`` to ``max_rate`` updates per second; its first update may go now.

        Adding a symbol again changes its rate and keeps its schedule.
        """
        if not max_rate > 0:
            raise ValueError(f"max_rate must be positive, got {max_rate!r}")
        self._interval[symbol] = 1.0 / max_rate
        self._next.setdefault(symbol, now)

    def discard(self, symbol: str) -> None:
        """Stop conflating ``symbol`` and drop its pending value, if any."""
        self._interval.pop(symbol, None)
        self._next.pop(symbol, None)
        self._pending.pop(symbol, None)

    def sent(self, symbol: str, *, now: float) -> None:
        """Record that ``symbol``'s current value went out at ``now`` by another path (a snapshot).

        The next update waits for the interval, and a value pending before it is dropped.
        """
        interval = self._interval.get(symbol)
        if interval is not None:
            self._next[symbol] = now + interval
            self._pending.pop(symbol, None)

    def offer(self, symbol: str, value: V) -> bool:
        """Make ``value`` the latest of ``symbol``; False (and nothing kept) if not subscribed."""
        if symbol not in self._interval:
            return False
        self._pending[symbol] = value
        return True

    def offer_many(self, latest: Mapping[str, V]) -> int:
        """:meth:`offer` every subscribed symbol of ``latest``; returns how many were taken.

        Costs O(min(len(latest), subscribed symbols)).
        """
        pending = self._pending
        taken = 0
        if len(latest) <= len(self._interval):
            for symbol, value in latest.items():
                if symbol in self._interval:
                    pending[symbol] = value
                    taken += 1
        else:
            for symbol in self._interval:
                if symbol in latest:
                    pending[symbol] = latest[symbol]
                    taken += 1
        return taken

    def due(self, now: float) -> list[V]:
        """The pending values whose symbol may be updated at ``now``; they are marked as sent."""
        if not self._pending:
            return []
        out: list[V] = []
        ready: list[str] = []
        nxt = self._next
        limit = now + SLACK
        for symbol in self._pending:
            if nxt[symbol] <= limit:
                ready.append(symbol)
        for symbol in ready:
            out.append(self._pending.pop(symbol))
            nxt[symbol] = now + self._interval[symbol]
        return out

    def next_due(self) -> float | None:
        """When the earliest pending value becomes due, or None if nothing is pending."""
        if not self._pending:
            return None
        nxt = self._next
        return min(nxt[symbol] for symbol in self._pending)

    @property
    def pending(self) -> int:
        """How many symbols have a value waiting."""
        return len(self._pending)
