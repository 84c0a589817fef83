"""The fan-out's interned, counted symbol sets."""

from __future__ import annotations

from tickwire.gateway.symbolsets import SymbolSets
from tickwire.protocol.messages import Encoding

JSON, MSGPACK = Encoding.JSON, Encoding.MSGPACK


def test_equal_sets_are_interned_and_counted_per_encoding() -> None:
    sets = SymbolSets()
    first = sets.replace(JSON, frozenset(), frozenset({"EURUSD", "GBPUSD"}))
    second = sets.replace(JSON, frozenset(), frozenset({"GBPUSD", "EURUSD"}))
    other = sets.replace(MSGPACK, frozenset(), frozenset({"EURUSD", "GBPUSD"}))
    assert first is second is other  # one object per distinct set
    assert sets.shared(JSON, first) and not sets.shared(MSGPACK, first)
    assert len(sets) == 1


def test_release_drops_unused_sets_and_empty_is_never_held() -> None:
    sets = SymbolSets()
    a = sets.replace(JSON, frozenset(), frozenset({"EURUSD"}))
    b = sets.replace(JSON, frozenset(), frozenset({"EURUSD"}))
    assert sets.shared(JSON, a)
    b = sets.replace(JSON, b, frozenset({"EURUSD", "USDJPY"}))  # one connection subscribes more
    assert not sets.shared(JSON, a) and not sets.shared(JSON, b)
    assert sets.replace(JSON, a, frozenset()) == frozenset()
    assert sets.replace(JSON, b, frozenset()) == frozenset()
    assert len(sets) == 0
    assert not sets.shared(JSON, frozenset())
