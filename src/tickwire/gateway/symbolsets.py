"""The tick symbol sets of the fan-out's connections, interned and counted.

Connections that subscribe to the same symbols hold the very same ``frozenset`` object, so the
fan-out's per-flush lookups keyed by a set hit on identity instead of comparing sets element by
element, and whether a frame will be reused is known without counting the connections on every
flush. The table holds one entry per distinct set in use, so it is bounded by the number of
connections.
"""

from __future__ import annotations

from ..protocol.messages import Encoding

__all__ = ["SymbolSets"]

EMPTY: frozenset[str] = frozenset()


class SymbolSets:
    """Interned symbol sets with the number of connections holding each, per encoding."""

    def __init__(self) -> None:
        self._holders: dict[tuple[Encoding, frozenset[str]], int] = {}
        self._interned: dict[frozenset[str], tuple[frozenset[str], int]] = {}

    def __len__(self) -> int:
        """The number of distinct sets in use."""
        return len(self._interned)

    def replace(
        self, encoding: Encoding, old: frozenset[str], new: frozenset[str]
    ) -> frozenset[str]:
        """Release ``old`` (a set this table returned, or empty), hold ``new``; return the
        interned equal of ``new`` (the empty set is never held)."""
        if old:
            self._release(encoding, old)
        if not new:
            return EMPTY
        canonical, users = self._interned.get(new, (new, 0))
        self._interned[canonical] = (canonical, users + 1)
        key = (encoding, canonical)
        self._holders[key] = self._holders.get(key, 0) + 1
        return canonical

    def shared(self, encoding: Encoding, symbols: frozenset[str]) -> bool:
        """True if more than one connection with ``encoding`` holds ``symbols``."""
        return self._holders.get((encoding, symbols), 0) > 1

    def _release(self, encoding: Encoding, symbols: frozenset[str]) -> None:
        key = (encoding, symbols)
        holders = self._holders[key] - 1
        if holders:
            self._holders[key] = holders
        else:
            del self._holders[key]
        canonical, users = self._interned[symbols]
        if users > 1:
            self._interned[symbols] = (canonical, users - 1)
        else:
            del self._interned[symbols]
