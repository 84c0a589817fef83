"""Open stream connections per API key, shared by every streaming surface."""

from __future__ import annotations

__all__ = ["ConnectionCounter"]


class ConnectionCounter:
    """Counts open connections per key id; bounded by the number of keys with connections.

    ``acquire`` and ``release`` are synchronous, so a caller that acquires before its next
    ``await`` cannot race another connection for the key's last slot.
    """

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def count(self, key_id: str) -> int:
        return self._open.get(key_id, 0)

    def acquire(self, key_id: str, limit: int) -> bool:
        """Take one slot if fewer than ``limit`` are open; True when taken."""
        current = self._open.get(key_id, 0)
        if current >= limit:
            return False
        self._open[key_id] = current + 1
        return True

    def add(self, key_id: str) -> None:
        """Count a connection that was admitted elsewhere (the session applied the limit)."""
        self._open[key_id] = self._open.get(key_id, 0) + 1

    def release(self, key_id: str) -> None:
        current = self._open.get(key_id, 0) - 1
        if current > 0:
            self._open[key_id] = current
        else:
            self._open.pop(key_id, None)

    def total(self) -> int:
        return sum(self._open.values())
