"""SSE's shared encodings: one per batch for every connection, within a byte budget."""

from __future__ import annotations

import json

import numpy as np

from tickwire.gateway.sse import SharedPieces, _quotes_body, _ticks_body
from tickwire.model import JournaledBatch

from .conftest import make_batch


def journaled(first_offset: int, n: int, seed: int) -> JournaledBatch:
    b = make_batch(n, seed=seed)
    seq = np.arange(first_offset, first_offset + n, dtype=np.uint64)  # unique, increasing
    return JournaledBatch(7, first_offset, b.symbols, b.sym, seq, b.ts, b.bid, b.ask)


def test_a_batch_is_encoded_once_for_every_connection() -> None:
    shared = SharedPieces()
    batch = journaled(1, 100, 0)
    assert shared.ticks(batch) is shared.ticks(batch)
    body = json.loads(_ticks_body(shared, [batch], {"EURUSD", "USDJPY"}))
    ticks = body["ticks"]
    assert {t["s"] for t in ticks} == {"EURUSD", "USDJPY"}
    names = np.array(batch.symbols)[batch.sym]
    assert len(ticks) == int(np.isin(names, ["EURUSD", "USDJPY"]).sum())
    assert sorted(t["o"] for t in ticks) == sorted({t["o"] for t in ticks})
    assert _ticks_body(shared, [batch], {"XAUUSD"}) == b""


def test_quotes_are_each_symbols_latest_tick() -> None:
    shared = SharedPieces()
    batches = [journaled(1, 50, 1), journaled(51, 50, 2)]
    quotes = json.loads(_quotes_body(shared, batches, {"EURUSD", "GBPUSD", "USDJPY"}))["ticks"]
    assert len(quotes) == 3
    for quote in quotes:
        offsets = [
            b.first_offset + i
            for b in batches
            for i, s in enumerate(b.sym.tolist())
            if b.symbols[s] == quote["s"]
        ]
        assert quote["o"] == max(offsets)


def test_the_cache_stays_within_its_byte_budget() -> None:
    shared = SharedPieces(max_bytes=20_000)
    first = journaled(1, 100, 3)
    pieces = shared.ticks(first)
    for i in range(1, 50):
        shared.ticks(journaled(1 + 100 * i, 100, i))
        assert shared.size <= 20_000
    assert shared.ticks(first) is not pieces  # evicted, encoded again: same bytes
    assert shared.ticks(first) == pieces


def test_an_event_of_several_batches_is_grouped_by_symbol() -> None:
    """Within an event each symbol's ticks are together and in offset order, across batches."""
    shared = SharedPieces()
    batches = [journaled(1, 40, 4), journaled(41, 40, 5)]
    ticks = json.loads(_ticks_body(shared, batches, {"EURUSD", "GBPUSD", "USDJPY"}))["ticks"]
    order = [t["s"] for t in ticks]
    runs = [s for i, s in enumerate(order) if i == 0 or order[i - 1] != s]
    assert len(runs) == len(set(runs)) == 3  # one run per symbol
    for symbol in set(order):
        offsets = [t["o"] for t in ticks if t["s"] == symbol]
        assert offsets == sorted(offsets)
