"""TraderMade-compatible streams: the sans-I/O session and frames, then real sockets.

The first part feeds the session bytes and reads what it queues, with no event loop. The second
runs a real :class:`~tickwire.node.Node` ticking at 500 ticks/s and a real picows server on
``127.0.0.1`` port 0, whose listener factory calls :func:`tradermade_listener`, and talks to it
with the ``websockets`` client (what TraderMade's own SDK uses) or with a raw socket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from picows import (
    WSCloseCode,
    WSListener,
    WSUpgradeRequest,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tickwire.access.keys import Entitlements, FileKeyStore, KeyLimits, KeyRecord
from tickwire.api.tradermade_wire import round_sig
from tickwire.catalog import CATALOG
from tickwire.config import Settings
from tickwire.gateway.tradermade_frames import (
    FrameCache,
    TickFormat,
    legacy_payload,
    price_text,
    quote_prices,
    resolve_symbol,
    select_frames,
    v2_timestamp,
    ws_text_frame,
)
from tickwire.gateway.tradermade_session import (
    CONNECTED,
    INVALID_KEY,
    TOO_MANY_CONNECTIONS,
    CloseCode,
    Dialect,
    SessionLimits,
    TraderMadeSession,
)
from tickwire.gateway.tradermade_stream import (
    ConnectionCounter,
    TraderMadeLimits,
    TraderMadeListener,
    close_all,
    frame_cache,
    tradermade_listener,
)
from tickwire.journal.journal import SyncPolicy
from tickwire.model import JournaledBatch, Quote
from tickwire.node import Node
from tickwire.rates import derive_quote

from .conftest import T0, TIMEOUT_SCALE

module_loop = pytest.mark.asyncio(loop_scope="module")

LEGACY_KEYS = ["symbol", "ts", "bid", "ask", "mid"]
V2_KEYS = ["a", "av", "b", "bv", "s", "t", "ts"]


# -- sans-I/O: helpers ------------------------------------------------------------------------


def record(
    key_id: str = "abcd1234",
    *,
    symbols: tuple[str, ...] = ("*",),
    stream: bool = True,
    max_connections: int = 2,
) -> KeyRecord:
    """A key record as the key store returns it."""
    return KeyRecord(
        id=key_id,
        name=f"key-{key_id}",
        plan="pro",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        entitlements=Entitlements(symbols=symbols, stream=stream),
        limits=KeyLimits(rate=10, burst=10, monthly_quota=None, max_connections=max_connections),
    )


def quote(symbol: str, *, bid: float = 1.1, ask: float = 1.1002, offset: int = 10) -> Quote:
    """A live-state quote of ``symbol``."""
    return Quote(symbol, T0, bid, ask, 1, offset, offset)


@dataclass
class Harness:
    """A session with in-memory keys, slots and quotes."""

    keys: dict[str, KeyRecord] = field(default_factory=lambda: {"good": record()})
    slots: ConnectionCounter = field(default_factory=ConnectionCounter)
    quotes: dict[str, Quote] = field(default_factory=dict)
    default: Dialect = Dialect.LEGACY
    limits: SessionLimits = field(default_factory=SessionLimits)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.session = TraderMadeSession(
            catalog=CATALOG,
            verify=self.keys.get,
            slots=self.slots,
            quote=self.quotes.get,
            default=self.default,
            limits=self.limits,
        )

    def send(self, message: Any, *, position: int = 100) -> list[bytes]:
        """Feed one message (JSON-encoded unless bytes) and return what the session queued."""
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.now += 0.001
        self.session.receive(payload, now=self.now, position=position)
        return self.session.data_to_send()

    def send_json(self, message: Any, *, position: int = 100) -> list[dict[str, Any]]:
        """Feed one message and decode every queued frame as JSON."""
        return [json.loads(p) for p in self.send(message, position=position)]


def v2_logged_in(**kwargs: Any) -> Harness:
    """A V2 session logged in with the good key."""
    h = Harness(**kwargs)
    assert h.send_json({"action": "login", "key": "good"})[0]["type"] == "login_ok"
    return h


# -- sans-I/O: the legacy feed ----------------------------------------------------------------


def test_session_greets_with_plain_text_connected() -> None:
    """The first thing a connection gets is the plain text ``Connected``."""
    h = Harness()
    h.session.start()
    assert h.session.data_to_send() == [CONNECTED] == [b"Connected"]


def test_legacy_login_subscribes_known_symbols_and_names_the_others() -> None:
    """A legacy login takes its comma list; unknown and unentitled codes get one text notice."""
    h = Harness(keys={"k": record(symbols=("EUR*", "USD*"))})
    out = h.send({"userKey": "k", "symbol": "eurusd, USDEUR,FOOBAR,GBPUSD,EURUSD"})
    assert out == [b"Symbols not available: FOOBAR (unknown), GBPUSD (not entitled)"]
    assert list(h.session.symbols) == ["EURUSD", "USDEUR"]
    assert h.session.symbols["USDEUR"].inverted and h.session.symbols["USDEUR"].source == "EURUSD"
    assert h.session.dialect is Dialect.LEGACY and h.session.logged_in
    assert h.slots.count("abcd1234") == 1 and h.session.close_with is None


def test_legacy_relogin_replaces_the_list_without_taking_a_second_slot() -> None:
    """Sending the login again replaces the symbols and keeps the one connection slot."""
    h = Harness()
    h.send({"userKey": "good", "symbol": "EURUSD"})
    assert h.send({"userKey": "good", "symbol": "GBPUSD"}) == []
    assert list(h.session.symbols) == ["GBPUSD"] and h.slots.count("abcd1234") == 1
    h.session.finish()
    h.session.finish()
    assert h.slots.count("abcd1234") == 0


def test_legacy_over_the_connection_limit_gets_the_exact_tradermade_text() -> None:
    """The connection after the key's last gets ``User Key Used to many times``, then 4008."""
    slots = ConnectionCounter()
    keys = {"k": record(max_connections=1)}
    first, second = Harness(keys=keys, slots=slots), Harness(keys=keys, slots=slots)
    first.send({"userKey": "k", "symbol": "EURUSD"})
    assert second.send({"userKey": "k", "symbol": "EURUSD"}) == [TOO_MANY_CONNECTIONS]
    assert TOO_MANY_CONNECTIONS == b"User Key Used to many times"
    assert second.session.close_with is not None
    assert second.session.close_with[0] is CloseCode.TOO_MANY_CONNECTIONS
    second.session.finish()
    assert slots.count("abcd1234") == 1  # the refused connection never held a slot


def test_legacy_invalid_or_stream_disabled_key_is_answered_then_closed() -> None:
    """An unknown key gets ``Invalid User Key`` (4001); a key without streaming gets 4003."""
    h = Harness()
    assert h.send({"userKey": "nope", "symbol": "EURUSD"}) == [INVALID_KEY]
    assert h.session.close_with == (CloseCode.UNAUTHORIZED, "invalid key")
    assert h.send({"userKey": "good", "symbol": "EURUSD"}) == []  # closed: ignored
    h = Harness(keys={"k": record(stream=False)})
    h.send({"userKey": "k", "symbol": "EURUSD"})
    assert h.session.close_with is not None
    assert h.session.close_with[0] is CloseCode.FORBIDDEN


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        b"[" * 60_000,
        b'{"userKey": 5}',
        b'{"hello": 1}',
    ],
)
def test_legacy_bad_input_gets_a_text_answer_and_the_socket_stays_open(payload: bytes) -> None:
    """Malformed JSON, binary garbage or a wrong shape gets a usage line, never a crash."""
    h = Harness()
    out = h.send(payload)
    assert len(out) == 1 and b"userKey" in out[0] and not out[0].startswith(b"{")
    assert h.session.close_with is None


def test_too_many_invalid_messages_in_a_row_close_the_connection() -> None:
    """``max_errors`` invalid messages in a row close with 4400; a valid one resets the count."""
    h = Harness(limits=SessionLimits(max_errors=3))
    h.send(b"x")
    h.send(b"x")
    h.send({"userKey": "good", "symbol": "EURUSD"})
    h.send(b"x")
    h.send(b"x")
    assert h.session.close_with is None
    h.send(b"x")
    assert h.session.close_with is not None
    assert h.session.close_with[0] is CloseCode.PROTOCOL_ERROR


def test_oversized_message_closes_with_1009() -> None:
    """A message over ``max_message_bytes`` is answered and closes the connection (1009)."""
    h = Harness(limits=SessionLimits(max_message_bytes=100))
    h.send(b"{" + b" " * 200 + b"}")
    assert h.session.close_with == (CloseCode.TOO_BIG, "message too big")


def test_inbound_flood_is_dropped_then_closed() -> None:
    """Past the burst, messages are dropped with an answer, and a flood closes the connection."""
    h = Harness(limits=SessionLimits(message_burst=5, messages_per_second=1, max_errors=10))
    for _ in range(5):
        h.session.receive(b'{"userKey":"good","symbol":"EURUSD"}', now=0.0, position=0)
    assert h.session.close_with is None
    h.session.data_to_send()
    h.session.receive(b'{"userKey":"good","symbol":"EURUSD"}', now=0.0, position=0)
    assert h.session.data_to_send() == [b"too many messages: slow down"]
    for _ in range(9):
        h.session.receive(b"{}", now=0.0, position=0)
    assert h.session.close_with is not None
    assert h.session.close_with[0] is CloseCode.PROTOCOL_ERROR


# -- sans-I/O: V2 ----------------------------------------------------------------------------


def test_v2_login_ok_has_the_spec_fields() -> None:
    """``login`` answers ``login_ok`` with symbol_limit, cfds and trader_ladder, in that order."""
    h = Harness(limits=SessionLimits(max_symbols=54))
    out = h.send({"action": "login", "key": "good", "fmt": "JSON", "send_ladder": True})
    assert out == [b'{"type":"login_ok","symbol_limit":54,"cfds":false,"trader_ladder":false}']
    assert h.session.dialect is Dialect.V2 and h.session.fmt is TickFormat.JSON


@pytest.mark.parametrize(
    ("key", "reason", "code"),
    [
        ("nope", "invalid key", CloseCode.UNAUTHORIZED),
        ("off", "streaming not enabled for this key", CloseCode.FORBIDDEN),
    ],
)
def test_v2_login_reject_then_close(key: str, reason: str, code: CloseCode) -> None:
    """A bad key gets ``login_reject`` with a reason, then the connection closes."""
    h = Harness(keys={"off": record(stream=False)})
    assert h.send_json({"action": "login", "key": key}) == [
        {"type": "login_reject", "reason": reason}
    ]
    assert h.session.close_with == (code, reason)


def test_v2_login_over_the_limit_and_bad_fmt() -> None:
    """Over the limit: login_reject with TraderMade's text; an unknown fmt: reject, stay open."""
    slots = ConnectionCounter()
    slots.acquire("abcd1234", 2)
    slots.acquire("abcd1234", 2)
    h = Harness(slots=slots)
    assert h.send_json({"action": "login", "key": "good", "fmt": "xml"}) == [
        {"type": "login_reject", "reason": "unsupported fmt 'xml': JSON, CSV or SSV"}
    ]
    assert h.session.close_with is None
    assert h.send_json({"action": "login", "key": "good"}) == [
        {"type": "login_reject", "reason": "User Key Used to many times"}
    ]
    assert h.session.close_with is not None
    assert h.session.close_with[0] is CloseCode.TOO_MANY_CONNECTIONS


def test_v2_unknown_action_bad_json_and_subscribe_before_login_get_error_frames() -> None:
    """Each bad V2 request gets ``{"type":"error","reason":…}`` and the socket stays open."""
    h = Harness(default=Dialect.V2)
    assert h.send_json(b"{nope") == [{"type": "error", "reason": "invalid JSON"}]
    assert h.send_json({"action": "subscribe", "symbols": ["EURUSD"]}) == [
        {"type": "error", "reason": "not logged in: send a login first"}
    ]
    assert h.send_json({"action": "dance"}) == [
        {"type": "error", "reason": "unknown action 'dance': use login, subscribe, unsubscribe"}
    ]
    [error] = h.send_json({"action": "subscribe", "symbols": 5})
    assert error["type"] == "error" and error["reason"].startswith("invalid subscribe")
    assert h.session.close_with is None


def test_v2_sub_ack_sorts_every_symbol_into_one_list() -> None:
    """Accepted (as sent), denied with a reason, and invalid (unknown or not a QUOTE channel)."""
    h = v2_logged_in(keys={"good": record(symbols=("EUR*",))}, limits=SessionLimits(max_symbols=2))
    [ack] = h.send_json(
        {
            "action": "subscribe",
            "symbols": ["EURUSD:QUOTE", "usdeur", "EURGBP", "GBPUSD", "EURUSD:TRADE", "XXXYYY"],
        }
    )
    assert ack == {
        "type": "sub_ack",
        "accepted": ["EURUSD:QUOTE", "USDEUR"],
        "denied": ["EURGBP", "GBPUSD"],
        "denied_reasons": {"EURGBP": "symbol limit of 2 reached", "GBPUSD": "not entitled"},
        "invalid": ["EURUSD:TRADE", "XXXYYY"],
    }
    assert list(h.session.symbols) == ["EURUSD", "USDEUR"]


def test_v2_unsubscribe_removes_symbols_and_acks() -> None:
    """``unsubscribe`` drops the symbols (with or without ``:QUOTE``) and answers unsub_ack."""
    h = v2_logged_in()
    h.send({"action": "subscribe", "symbols": ["EURUSD", "GBPUSD"]})
    assert h.session.symbols_key == {"EURUSD", "GBPUSD"}  # cached: must follow the change
    assert h.send_json({"action": "unsubscribe", "symbols": ["EURUSD:QUOTE"]}) == [
        {"type": "unsub_ack"}
    ]
    assert list(h.session.symbols) == ["GBPUSD"] and h.session.symbols_key == {"GBPUSD"}
    h.send({"action": "subscribe", "symbols": ["USDJPY"]})
    assert h.session.symbols_key == {"GBPUSD", "USDJPY"}


def test_v2_send_last_sends_last_quote_after_the_ack_and_skips_older_ticks() -> None:
    """LAST_QUOTE frames follow sub_ack; a quote newer than the position sets a skip."""
    h = v2_logged_in(quotes={"EURUSD": quote("EURUSD", offset=150)})
    out = h.send_json(
        {"action": "subscribe", "symbols": ["EURUSD", "USDEUR", "GBPUSD"], "send_last": True},
        position=100,
    )
    assert [m.get("type", m.get("t")) for m in out] == ["sub_ack", "LAST_QUOTE", "LAST_QUOTE"]
    assert [m["s"] for m in out[1:]] == ["EURUSD", "USDEUR"]  # GBPUSD has no quote yet
    assert list(out[1]) == V2_KEYS and out[1]["b"] == "1.10000" and out[1]["a"] == "1.10020"
    assert h.session.skip == {"EURUSD": 150, "USDEUR": 150}
    h.session.delivered(149)
    assert h.session.skip == {"EURUSD": 150, "USDEUR": 150}
    h.session.delivered(150)
    assert h.session.skip == {}
    h2 = v2_logged_in(quotes={"EURUSD": quote("EURUSD", offset=90)})
    h2.send({"action": "subscribe", "symbols": ["EURUSD"], "send_last": True}, position=100)
    assert h2.session.skip == {}  # already behind the position: nothing to skip


@pytest.mark.parametrize(("fmt", "sep"), [("csv", ","), ("SSV", " ")])
def test_v2_csv_and_ssv_carry_the_json_fields_in_order(fmt: str, sep: str) -> None:
    """fmt CSV/SSV market frames are a,av,b,bv,s,t,ts; control frames stay JSON."""
    h = Harness(quotes={"EURUSD": quote("EURUSD")})
    h.send({"action": "login", "key": "good", "fmt": fmt})
    ack, last = h.send({"action": "subscribe", "symbols": ["EURUSD"], "send_last": True})
    assert json.loads(ack)["type"] == "sub_ack"
    assert last.decode().split(sep) == [
        "1.10020",
        "0",
        "1.10000",
        "0",
        "EURUSD",
        "LAST_QUOTE",
        v2_timestamp(T0),
    ]


# -- frames -----------------------------------------------------------------------------------


def test_legacy_payload_key_order_ts_string_and_mid() -> None:
    """Legacy ticks: symbol, ts (ms as a string), bid, ask, mid = (bid+ask)/2 at decimals+1."""
    eurusd = resolve_symbol(CATALOG, "EURUSD")
    assert eurusd is not None
    tick = json.loads(legacy_payload(eurusd, 1_614_076_641_917_123_456, 1.21469, 1.2147))
    assert list(tick) == LEGACY_KEYS
    assert tick == {
        "symbol": "EURUSD",
        "ts": "1614076641917",
        "bid": 1.21469,
        "ask": 1.2147,
        "mid": 1.214695,
    }


def test_inverse_prices_are_those_of_rates_derive_quote() -> None:
    """An inverse pair streams what tickwire.rates derives (1/ask, 1/bid), to 6 s.f."""
    usdjpy = quote("USDJPY", bid=149.987, ask=150.013)
    derived = derive_quote(CATALOG, {"USDJPY": usdjpy}.get, "JPY", "USD")
    symbol = resolve_symbol(CATALOG, "JPYUSD")
    assert symbol is not None and symbol.inverted
    bid, ask, mid = quote_prices(symbol, usdjpy.bid, usdjpy.ask)
    assert (bid, ask, mid) == (
        round_sig(derived.bid),
        round_sig(derived.ask),
        round_sig(derived.mid),
    )
    assert price_text(symbol, bid) == "0.00666609" and float(price_text(symbol, ask)) == ask
    assert resolve_symbol(CATALOG, "EURSEKX") is None and resolve_symbol(CATALOG, "GBPSEK") is None


def test_v2_timestamp_and_price_text() -> None:
    """V2 ts is YYYYMMDD-HH:MM:SS.mmm UTC; direct prices show the pair's decimals."""
    assert v2_timestamp(1_779_194_195_588_999_999) == "20260519-12:36:35.588"
    usdjpy = resolve_symbol(CATALOG, "USDJPY")
    assert usdjpy is not None
    assert price_text(usdjpy, 150.0) == "150.000" and price_text(usdjpy, 150.00049) == "150.00049"


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536])
def test_ws_text_frame_lengths(size: int) -> None:
    """Pre-framed text frames use the 7-bit, 16-bit and 64-bit length forms correctly."""
    frame = ws_text_frame(b"x" * size)
    assert frame[0] == 0x81
    n = frame[1]
    head = 2 + {126: 2, 127: 8}.get(n, 0)
    length = int.from_bytes(frame[2:head], "big") if n >= 126 else n
    assert length == size and len(frame) == head + size


def journaled(symbols: tuple[str, ...], sym: list[int], first_offset: int = 1) -> JournaledBatch:
    """A journaled batch with the given symbol indexes, 1 ms apart."""
    n = len(sym)
    bid = 1.1 + np.arange(n) / 1e4
    return JournaledBatch(
        1,
        first_offset,
        symbols,
        np.array(sym, dtype=np.uint16),
        np.arange(1, n + 1, dtype=np.uint64),
        T0 + np.arange(n, dtype=np.int64) * 1_000_000,
        bid,
        bid + 0.0002,
    )


def decode_frames(frames: Any) -> list[dict[str, Any]]:
    """Strip the 2-byte headers of small pre-framed frames and decode them."""
    return [json.loads(bytes(f)[2:]) for f in frames]


def test_frame_cache_encodes_each_tick_once_and_merges_in_offset_order() -> None:
    """Many connections share one encoding; each gets its symbols' frames in offset order."""
    batch = journaled(("EURUSD", "GBPUSD", "USDJPY"), [0, 1, 0, 2, 1, 0], first_offset=11)
    cache = FrameCache()
    wanted = {
        c: s
        for c in ("EURUSD", "GBPUSD", "USDEUR")
        if (s := resolve_symbol(CATALOG, c)) is not None
    }
    first = select_frames(cache, batch, wanted, TickFormat.LEGACY, {})
    for _ in range(50):
        assert list(select_frames(cache, batch, wanted, TickFormat.LEGACY, {})) == list(first)
    assert cache.encoded == 3 + 2 + 3
    ticks = decode_frames(first)
    assert [t["symbol"] for t in ticks] == [
        "EURUSD",
        "USDEUR",
        "GBPUSD",
        "EURUSD",
        "USDEUR",
        "GBPUSD",
        "EURUSD",
        "USDEUR",
    ]
    skipped = decode_frames(select_frames(cache, batch, wanted, TickFormat.LEGACY, {"EURUSD": 14}))
    assert [t["symbol"] for t in skipped].count("EURUSD") == 1  # offsets 11 and 14 left out


def test_joined_frames_are_made_once_per_symbol_set_and_shared() -> None:
    """Connections with the same symbols get the same bytes: the frames of the batch in offset
    order, kept from the second asker on; a quiet set gets nothing and pins nothing."""
    batch = journaled(("EURUSD", "GBPUSD", "USDJPY"), [0, 1, 0, 2, 1, 0], first_offset=11)
    cache = FrameCache()
    wanted = {c: s for c in ("EURUSD", "USDEUR") if (s := resolve_symbol(CATALOG, c)) is not None}
    key = frozenset(wanted)
    data, count = cache.joined(batch, key, wanted, TickFormat.LEGACY)
    assert data == b"".join(select_frames(cache, batch, wanted, TickFormat.LEGACY, {}))
    assert count == 6
    again, _ = cache.joined(batch, frozenset(("USDEUR", "EURUSD")), wanted, TickFormat.LEGACY)
    assert again == data  # the second asker: made again, and now kept
    held = cache.nbytes
    third, _ = cache.joined(batch, key, wanted, TickFormat.LEGACY)
    assert third is again and cache.nbytes == held
    chf = resolve_symbol(CATALOG, "USDCHF")
    assert chf is not None
    quiet = cache.joined(batch, frozenset(("USDCHF",)), {"USDCHF": chf}, TickFormat.LEGACY)
    assert quiet == (b"", 0) and cache.nbytes == held


def test_a_read_of_many_batches_is_merged_once_per_slice() -> None:
    """Consecutive batches with different symbol dictionaries merge into one batch with the
    same ticks in the same order; readers of the same slice share it."""
    parts = [
        journaled(("EURUSD", "GBPUSD"), [0, 1, 0], first_offset=1),
        journaled(("USDJPY", "EURUSD"), [1, 0], first_offset=4),
        journaled(("GBPUSD",), [0, 0], first_offset=6),
    ]
    cache = FrameCache()
    merged = cache.merged(parts)
    assert cache.merged(parts) is merged
    assert [(t.symbol, t.offset) for t in merged.ticks()] == [
        (t.symbol, t.offset) for p in parts for t in p.ticks()
    ]
    assert cache.merged(parts[:1]) is parts[0]
    with pytest.raises(ValueError, match="does not follow"):
        JournaledBatch.concat([parts[0], parts[2]])


def test_frame_cache_stays_within_its_byte_bound() -> None:
    """The cache drops its oldest batches to stay under max_bytes."""
    cache = FrameCache(max_bytes=2_000)
    eurusd = resolve_symbol(CATALOG, "EURUSD")
    assert eurusd is not None
    for i in range(100):
        batch = journaled(("EURUSD",), [0] * 5, first_offset=1 + 5 * i)
        select_frames(cache, batch, {"EURUSD": eurusd}, TickFormat.JSON, {})
        assert cache.nbytes <= 2_000
    assert 0 < len(cache) < 100


def test_frame_cache_keeps_no_batch_for_a_quiet_symbol() -> None:
    """A subscription to a symbol that does not tick pins nothing, and the count includes the
    batches an entry holds, not just its frames."""
    cache = FrameCache(max_bytes=100_000)
    gbpusd = resolve_symbol(CATALOG, "GBPUSD")
    eurusd = resolve_symbol(CATALOG, "EURUSD")
    assert gbpusd is not None and eurusd is not None
    for i in range(1_000):
        batch = journaled(("EURUSD",), [0] * 100, first_offset=1 + 100 * i)
        assert list(select_frames(cache, batch, {"GBPUSD": gbpusd}, TickFormat.JSON, {})) == []
    assert len(cache) == 0 and cache.nbytes == 0
    select_frames(cache, batch, {"EURUSD": eurusd}, TickFormat.JSON, {})
    assert len(cache) == 1 and cache.nbytes > sum(a.nbytes for a in (batch.ts, batch.bid))


def test_connection_counter_bounds_and_forgets() -> None:
    """The shared counter (re-exported): acquire stops at the limit, release frees."""
    counter = ConnectionCounter()
    assert counter.acquire("a", 2) and counter.acquire("a", 2) and not counter.acquire("a", 2)
    assert not counter.acquire("b", 0) and counter.total() == 2
    counter.release("a")
    counter.release("a")
    counter.release("a")
    assert counter.count("a") == 0 and counter.total() == 0


# -- real sockets -----------------------------------------------------------------------------


@dataclass
class Gateway:
    """A node, its keys, and a picows server routing to :func:`tradermade_listener`."""

    node: Node
    keys: FileKeyStore
    connections: ConnectionCounter
    port: int
    listeners: list[TraderMadeListener]

    def url(self, path: str = "/feedadv") -> str:
        """The ws:// URL of ``path`` on the server."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def key(self, name: str, **kwargs: Any) -> tuple[str, KeyRecord]:
        """A new streaming key."""
        kwargs.setdefault("plan", "pro")
        return self.keys.create(name, **kwargs)


SLOW_LIMITS = TraderMadeLimits(write_buffer_bytes=64 * 1024, close_timeout=0.5)
SHORT_LOGIN = TraderMadeLimits(login_timeout=0.3)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """A real node ticking at 500/s and a picows server on a free port."""
    data = Path(tmp_path_factory.mktemp("tmstream"))
    node = await Node.start(
        Settings(
            data_dir=data,
            backfill_days=0,
            weekend_closed=False,
            load_rate=500,
            sync=SyncPolicy.NONE,
        )
    )
    keys = FileKeyStore(data / "keys.json")
    connections = ConnectionCounter()
    listeners: list[TraderMadeListener] = []

    def factory(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
        limits = TraderMadeLimits()
        if b"slow" in request.path:
            limits = SLOW_LIMITS
        elif b"shortlogin" in request.path:
            limits = SHORT_LOGIN
        listener = tradermade_listener(
            request, node=node, keys=keys, connections=connections, limits=limits
        )
        if isinstance(listener, TraderMadeListener):
            listeners.append(listener)
        return listener

    # like the gateway's server: pings reach the listeners
    server = await ws_create_server(factory, "127.0.0.1", 0, enable_auto_pong=False)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Gateway(node, keys, connections, port, listeners)
    finally:
        server.close()
        await node.stop()


def within(seconds: float) -> float:
    """A timeout, scaled for slow machines."""
    return seconds * TIMEOUT_SCALE


async def recv_text(ws: ClientConnection) -> str:
    """The next message as text (within 5 scaled seconds)."""
    message = await asyncio.wait_for(ws.recv(), within(5))
    return message if isinstance(message, str) else message.decode()


async def recv_ticks(
    ws: ClientConnection, count: int, keep: Callable[[dict[str, Any]], bool] = lambda m: True
) -> list[dict[str, Any]]:
    """The next ``count`` JSON messages that ``keep`` accepts."""
    out: list[dict[str, Any]] = []
    while len(out) < count:
        message = json.loads(await recv_text(ws))
        if keep(message):
            out.append(message)
    return out


async def legacy_login(gw: Gateway, ws: ClientConnection, symbols: str, key: str) -> None:
    """Wait for ``Connected`` and send the legacy login."""
    assert await recv_text(ws) == "Connected"
    await ws.send(json.dumps({"userKey": key, "symbol": symbols}))


@module_loop
async def test_legacy_feed_end_to_end(gateway: Gateway) -> None:
    """Connected, login, then ticks: key order, ts as ms string, mid, only the asked symbols."""
    key, _ = gateway.key("legacy")
    async with connect(gateway.url()) as ws:
        await legacy_login(gateway, ws, "EURUSD,USDJPY", key)
        raw = [await recv_text(ws) for _ in range(20)]
    ticks = [json.loads(r, object_pairs_hook=lambda pairs: pairs) for r in raw]
    assert all([k for k, _ in t] == LEGACY_KEYS for t in ticks)
    now_ms = time.time() * 1000
    for text in raw:
        tick = json.loads(text)
        assert tick["symbol"] in ("EURUSD", "USDJPY")
        assert isinstance(tick["ts"], str) and len(tick["ts"]) == 13
        assert abs(int(tick["ts"]) - now_ms) < within(60_000)
        assert tick["mid"] == pytest.approx((tick["bid"] + tick["ask"]) / 2, abs=1e-9)
        assert tick["bid"] < tick["ask"]
    assert {json.loads(r)["symbol"] for r in raw} == {"EURUSD", "USDJPY"}


@module_loop
async def test_legacy_inverse_pair_mirrors_its_source(gateway: Gateway) -> None:
    """USDEUR ticks are 1/ask and 1/bid of the EURUSD tick with the same ts."""
    key, _ = gateway.key("inverse")
    async with connect(gateway.url()) as ws:
        await legacy_login(gateway, ws, "EURUSD,USDEUR", key)
        ticks = [json.loads(await recv_text(ws)) for _ in range(20)]
    pairs: dict[str, dict[str, dict[str, Any]]] = {}
    for tick in ticks:
        pairs.setdefault(tick["ts"], {})[tick["symbol"]] = tick
    matched = [p for p in pairs.values() if len(p) == 2]
    assert matched
    for pair in matched:
        direct, inverse = pair["EURUSD"], pair["USDEUR"]
        assert inverse["bid"] == round_sig(1 / direct["ask"])
        assert inverse["ask"] == round_sig(1 / direct["bid"])
        assert inverse["mid"] == pytest.approx((inverse["bid"] + inverse["ask"]) / 2, rel=1e-5)


@module_loop
async def test_legacy_over_limit_text_then_close(gateway: Gateway) -> None:
    """The key's second connection over a limit of 1 reads the exact text, then a 4008 close."""
    key, record_ = gateway.key("one-conn", plan="basic")
    async with connect(gateway.url()) as first:
        await legacy_login(gateway, first, "EURUSD", key)
        await recv_text(first)  # a tick: the first connection is counted
        async with connect(gateway.url()) as second:
            await legacy_login(gateway, second, "EURUSD", key)
            assert await recv_text(second) == "User Key Used to many times"
            with pytest.raises(ConnectionClosed) as closed:
                await recv_text(second)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
        assert gateway.connections.count(record_.id) == 1
        await recv_text(first)  # unaffected
    await wait_until(lambda: gateway.connections.count(record_.id) == 0)


@module_loop
async def test_legacy_bad_json_answers_and_a_later_login_works(gateway: Gateway) -> None:
    """Bad JSON and binary garbage get a text line; the same socket then logs in fine."""
    key, _ = gateway.key("badjson")
    async with connect(gateway.url()) as ws:
        assert await recv_text(ws) == "Connected"
        await ws.send("{not json")
        assert (await recv_text(ws)).startswith("invalid JSON. Invalid request")
        await ws.send(b"\x00\xff\x13garbage")
        assert (await recv_text(ws)).startswith("invalid JSON")
        await ws.send(json.dumps({"userKey": "tw_wrong" + "x" * 20, "symbol": "EURUSD"}))
        assert await recv_text(ws) == "Invalid User Key"
        with pytest.raises(ConnectionClosed) as closed:
            await recv_text(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    async with connect(gateway.url()) as ws:
        await legacy_login(gateway, ws, "EURUSD,NOTASYMBOL", key)
        assert await recv_text(ws) == "Symbols not available: NOTASYMBOL (unknown)"
        assert json.loads(await recv_text(ws))["symbol"] == "EURUSD"


@module_loop
async def test_v2_login_subscribe_send_last_and_unsubscribe(gateway: Gateway) -> None:
    """V2 on /feedAdv: login_ok, sub_ack, LAST_QUOTE before QUOTEs, unsubscribe stops ticks."""
    key, _ = gateway.key("v2")
    live = gateway.node.live
    await wait_until(lambda: None not in (live.quote("EURUSD"), live.quote("GBPUSD")))
    async with connect(gateway.url("/feedAdv")) as ws:
        assert await recv_text(ws) == "Connected"
        await ws.send(json.dumps({"action": "login", "key": key, "fmt": "JSON"}))
        login = json.loads(await recv_text(ws))
        assert login == {
            "type": "login_ok",
            "symbol_limit": 200,
            "cfds": False,
            "trader_ladder": False,
        }
        await ws.send(
            json.dumps(
                {"action": "subscribe", "symbols": ["EURUSD:QUOTE", "GBPUSD"], "send_last": True}
            )
        )
        ack = json.loads(await recv_text(ws))
        assert ack["type"] == "sub_ack" and ack["accepted"] == ["EURUSD:QUOTE", "GBPUSD"]
        frames = await recv_ticks(ws, 30)
        kinds = [f["t"] for f in frames]
        assert kinds[:2] == ["LAST_QUOTE", "LAST_QUOTE"] and set(kinds[2:]) == {"QUOTE"}
        for f in frames:
            assert list(f) == V2_KEYS and isinstance(f["b"], str) and isinstance(f["a"], str)
            assert f["s"] in ("EURUSD", "GBPUSD") and float(f["b"]) < float(f["a"])
        for symbol in ("EURUSD", "GBPUSD"):
            stamps = [f["ts"] for f in frames if f["s"] == symbol]
            assert stamps == sorted(stamps) and len(stamps) == len(set(stamps))
        await ws.send(json.dumps({"action": "unsubscribe", "symbols": ["EURUSD:QUOTE"]}))
        await recv_ticks(ws, 1, lambda m: m.get("type") == "unsub_ack")
        after = await recv_ticks(ws, 15)
        assert {f["s"] for f in after} == {"GBPUSD"}


@module_loop
async def test_v2_errors_keep_the_socket_open(gateway: Gateway) -> None:
    """Unknown action and bad JSON get V2 error frames; the connection keeps working."""
    key, _ = gateway.key("v2err")
    async with connect(gateway.url("/feedAdv")) as ws:
        assert await recv_text(ws) == "Connected"
        await ws.send("[[[")
        assert json.loads(await recv_text(ws)) == {"type": "error", "reason": "invalid JSON"}
        await ws.send(json.dumps({"action": "login", "key": key}))
        assert json.loads(await recv_text(ws))["type"] == "login_ok"
        await ws.send(json.dumps({"action": "teleport"}))
        error = json.loads(await recv_text(ws))
        assert error["type"] == "error" and "unknown action" in error["reason"]
        await ws.send(json.dumps({"action": "subscribe", "symbols": ["USDJPY"]}))
        assert json.loads(await recv_text(ws))["type"] == "sub_ack"
        assert (await recv_ticks(ws, 1))[0]["s"] == "USDJPY"


@module_loop
async def test_v2_on_the_lower_case_path_and_other_paths_404(gateway: Gateway) -> None:
    """/feedadv also speaks V2 when the client does; any other path is refused with 404."""
    key, _ = gateway.key("v2lower")
    async with connect(gateway.url("/feedadv?x=1")) as ws:
        assert await recv_text(ws) == "Connected"
        await ws.send(json.dumps({"action": "login", "key": key, "fmt": "SSV"}))
        assert json.loads(await recv_text(ws))["type"] == "login_ok"
        await ws.send(json.dumps({"action": "subscribe", "symbols": "EURUSD"}))
        assert json.loads(await recv_text(ws))["type"] == "sub_ack"
        fields = (await recv_text(ws)).split(" ")
        assert fields[4:6] == ["EURUSD", "QUOTE"] and len(fields) == 7
    with pytest.raises(InvalidStatus) as refused:
        async with connect(gateway.url("/elsewhere")):
            pass
    assert refused.value.response.status_code == 404


@module_loop
async def test_oversized_frame_and_login_timeout_close_with_codes(gateway: Gateway) -> None:
    """A 1 MB message closes with 1009; a socket that never logs in closes with 4001."""
    async with connect(gateway.url(), max_size=None) as ws:
        assert await recv_text(ws) == "Connected"
        await ws.send("x" * 1_000_000)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await recv_text(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with connect(gateway.url("/feedadv?shortlogin")) as ws:
        assert await recv_text(ws) == "Connected"
        with pytest.raises(ConnectionClosed) as closed:
            await recv_text(ws)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "no login within 0.3 s")


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds; fail after 20 (scaled) seconds."""
    deadline = time.monotonic() + within(20)
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def masked_text(payload: bytes) -> bytes:
    """A client text frame (masked), for the raw-socket client."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def raw_client(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client on a raw socket with a tiny receive buffer, after the handshake."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    nonce = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within(5))
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


@module_loop
async def test_a_client_that_never_reads_is_closed_and_others_are_unaffected(
    gateway: Gateway,
) -> None:
    """A non-reading client passes the buffer limit and is closed; a reader keeps its pace."""
    slow_key, slow_record = gateway.key("never-reads")
    fast_key, _ = gateway.key("reads")
    everything = ",".join([*CATALOG, *(c[3:] + c[:3] for c in CATALOG if len(c) == 6)])
    async with connect(gateway.url()) as fast:
        await legacy_login(gateway, fast, "EURUSD", fast_key)
        _reader, writer = await raw_client(gateway.port, "/feedadv?slow")
        slow = gateway.listeners[-1]
        await wait_until(lambda: slow.transport is not None)
        assert slow.transport is not None
        # a small, fixed kernel send buffer, so that the test does not wait for megabytes
        sock = slow.transport.underlying_transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        writer.write(masked_text(json.dumps({"userKey": slow_key, "symbol": everything}).encode()))
        await wait_until(lambda: gateway.connections.count(slow_record.id) == 1)
        started = time.monotonic()
        lags: list[float] = []
        while gateway.connections.count(slow_record.id) == 1:
            tick = json.loads(await recv_text(fast))
            lags.append(time.time() * 1000 - int(tick["ts"]))
            assert time.monotonic() - started < within(60), "the slow client was never closed"
        closed_after = time.monotonic() - started
        more = await recv_ticks(fast, 5)
        writer.close()
    assert slow.session.key == slow_record and slow.session.close_with is not None
    assert slow.frames_sent > 0 and slow.transport is not None
    assert slow.transport.close_handshake is not None
    sent = slow.transport.close_handshake.sent
    assert sent is not None and sent.code == WSCloseCode(4009)
    assert max(lags) < within(1_000), f"the reader lagged {max(lags):.0f} ms"
    assert [t["symbol"] for t in more] == ["EURUSD"] * 5
    print(f"non-reader closed after {closed_after:.1f} s; reader max lag {max(lags):.0f} ms")


@module_loop
async def test_ticks_are_encoded_once_for_many_connections(gateway: Gateway) -> None:
    """Ten clients on the same symbol cost one encoding per tick, and all get the same ticks."""
    key, _ = gateway.key("many", plan="unlimited")
    cache = frame_cache(gateway.node)
    clients = [await connect(gateway.url()).__aenter__() for _ in range(10)]
    try:
        for ws in clients:
            await legacy_login(gateway, ws, "AUDNZD", key)
        mine = gateway.listeners[-10:]
        encoded_before, sent_before = cache.encoded, sum(item.frames_sent for item in mine)
        got = [await recv_ticks(ws, 10) for ws in clients]
        first_ts = max(ticks[0]["ts"] for ticks in got)
        common = [[t for t in ticks if t["ts"] >= first_ts][:5] for ticks in got]
        assert all(c == common[0] for c in common) and len(common[0]) == 5
    finally:
        for ws in clients:
            await ws.close()
    encoded = cache.encoded - encoded_before
    sent = sum(item.frames_sent for item in mine) - sent_before
    assert sent >= 50 and encoded * 5 <= sent, (encoded, sent)


@module_loop
async def test_pings_are_answered_and_close_all_says_going_away(gateway: Gateway) -> None:
    """A client ping gets a pong; close_all (the gateway's shutdown) closes with 1001."""
    key, record_ = gateway.key("shutdown")
    async with connect(gateway.url("/feedAdv")) as ws:
        assert await recv_text(ws) == "Connected"
        await asyncio.wait_for(await ws.ping(), within(5))
        await ws.send(json.dumps({"action": "login", "key": key}))
        assert json.loads(await recv_text(ws))["type"] == "login_ok"
        assert close_all(gateway.node) == 1
        with pytest.raises(ConnectionClosed) as closed:
            await recv_text(ws)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "server shutting down")
    await wait_until(lambda: gateway.connections.count(record_.id) == 0)
    assert close_all(gateway.node) == 0


@module_loop
async def test_a_close_without_a_code_is_answered_with_1000(gateway: Gateway) -> None:
    """/feedadv answers a CLOSE without a status code with CLOSE 1000 (never code 0)."""
    reader, writer = await raw_client(gateway.port, "/feedadv")
    mask = os.urandom(4)
    writer.write(bytes((0x88, 0x80)) + mask)  # CLOSE, no payload
    data = b""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(4096), within(5)):
            data += chunk
    writer.close()
    close_at = data.rfind(b"\x88\x02")
    assert close_at >= 0, data
    assert data[close_at + 2 : close_at + 4] == (1000).to_bytes(2, "big")


@module_loop
async def test_a_client_that_closes_then_stops_reading_is_aborted(gateway: Gateway) -> None:
    """A client that sends CLOSE with unsent ticks still queued and never reads again cannot
    hold its socket nor its slot in the key's connection count: it is aborted after the close
    timeout (0.5 s here), although the graceful disconnect could never drain."""
    key, record = gateway.key("closes-then-hangs")
    _reader, writer = await raw_client(gateway.port, "/feedadv?slow")
    listener = gateway.listeners[-1]
    await wait_until(lambda: listener.transport is not None)
    transport = listener.transport
    assert transport is not None
    sock = transport.underlying_transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    everything = ",".join(CATALOG)
    writer.write(masked_text(json.dumps({"userKey": key, "symbol": everything}).encode()))
    await wait_until(lambda: transport.underlying_transport.get_write_buffer_size() > 0)
    writer.write(bytes((0x88, 0x80)) + os.urandom(4))  # CLOSE, then never read
    await wait_until(lambda: transport.is_disconnected)
    assert gateway.connections.count(record.id) == 0
    writer.close()
