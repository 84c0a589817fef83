"""The sans-I/O native protocol core: messages in, messages and actions out, no event loop."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pytest

import tickwire.protocol as protocol
from tickwire.access.keys import Entitlements, KeyLimits, KeyRecord
from tickwire.errors import ConfigError
from tickwire.model import Bar, JournaledBatch, Position, PriceSide, Quote
from tickwire.protocol import (
    CODECS,
    Authenticate,
    BarState,
    Channel,
    Close,
    CloseCode,
    Encoding,
    Flow,
    Interval,
    NativeSession,
    Piece,
    QuoteConflator,
    ResumeStatus,
    SendPing,
    SessionLimits,
    SessionState,
    StreamState,
    Subscribe,
    Unsubscribe,
    WireTick,
    admit,
    decode_client_message,
    decode_server_message,
    encode_bar_json,
    encode_bar_msgpack,
    encode_quotes_json,
    encode_quotes_msgpack,
    encode_ticks_json,
    encode_ticks_msgpack,
    frame_quotes_json,
    frame_quotes_msgpack,
    frame_ticks_json,
    frame_ticks_msgpack,
    wire_ticks,
)
from tickwire.protocol import encoding as encoding_module
from tickwire.protocol import messages as m
from tickwire.protocol import session as session_module

T0 = 1_767_000_000_000_000_000
STATE = StreamState(epoch=7, offset=500, first_offset=100, time=T0)


def record(
    *, symbols: tuple[str, ...] = ("*",), stream: bool = True, max_connections: int = 2
) -> KeyRecord:
    """A key record as the key store would return it."""
    return KeyRecord(
        id="abcd1234",
        name="test",
        plan="pro",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        entitlements=Entitlements(symbols=symbols, stream=stream),
        limits=KeyLimits(rate=10, burst=10, monthly_quota=None, max_connections=max_connections),
    )


def drain(session: NativeSession) -> list[dict[str, Any]]:
    """Decode every queued outgoing message of a JSON session."""
    out = []
    for item in session.outgoing():
        assert item.binary is (session.encoding is Encoding.MSGPACK)
        if item.binary:
            out.append(msgspec.msgpack.decode(item.data))
        else:
            out.append(json.loads(item.data))
    return out


def send(
    session: NativeSession,
    message: Any,
    *,
    now: float = 1.0,
    stream: StreamState = STATE,
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Feed one message (an object is JSON-encoded) and return (messages out, actions)."""
    data = message if isinstance(message, str | bytes) else json.dumps(message)
    session.receive_message(data, binary=False, now=now, stream=stream)
    return drain(session), session.actions()


def opened(
    *,
    limits: SessionLimits | None = None,
    key: KeyRecord | None = None,
    encoding: Encoding = Encoding.JSON,
    now: float = 0.0,
) -> NativeSession:
    """A session authenticated by a header key, its welcome drained."""
    session = NativeSession(now=now, limits=limits, encoding=encoding, session_id="s1")
    session.authenticate(key or record(), open_connections=0, now=now, stream=STATE)
    session.outgoing()
    assert session.actions() == []
    return session


def batch(
    n: int, *, symbols: tuple[str, ...] = ("EURUSD", "GBPUSD", "USDJPY"), first: int = 101
) -> JournaledBatch:
    """``n`` journaled ticks with awkward floats, over ``symbols``."""
    rng = np.random.default_rng(n)
    bid = np.round(0.5 + rng.random(n) * 150, int(rng.integers(2, 6)))
    bid[: min(n, 3)] = [1e-7, 123456.789012345, 0.1 + 0.2][: min(n, 3)]
    return JournaledBatch(
        epoch=7,
        first_offset=first,
        symbols=symbols,
        sym=rng.integers(0, len(symbols), n).astype(np.uint16),
        seq=np.arange(1, n + 1, dtype=np.uint64),
        ts=T0 + np.arange(n, dtype=np.int64) * 1_000_003,
        bid=bid,
        ask=bid + rng.random(n) / 1000,
    )


# -- public surface -----------------------------------------------------------------------


def test_protocol_exports_exactly_its_public_api() -> None:
    """protocol.__all__ is sorted, every name resolves, and each module's __all__ resolves."""
    assert protocol.__all__ == sorted(protocol.__all__, key=lambda n: (not n.isupper(), n))
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None
    for module in (m, encoding_module, session_module):
        for name in module.__all__:
            assert hasattr(module, name), name


def test_limits_defaults_match_constants_and_compare_by_value() -> None:
    """SessionLimits uses the DEFAULT_* constants, compares by value and is keyword-only."""
    limits = SessionLimits()
    assert limits.max_subscriptions == session_module.DEFAULT_MAX_SUBSCRIPTIONS
    assert limits.send_buffer_bytes == session_module.DEFAULT_SEND_BUFFER_BYTES
    assert SessionLimits(burst=5) == SessionLimits(burst=5) != limits
    assert "burst=5" in repr(SessionLimits(burst=5))
    with pytest.raises(TypeError):
        SessionLimits(5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_subscriptions": 0},
        {"max_message_bytes": 10},
        {"messages_per_second": 0},
        {"burst": 0},
        {"flood_tolerance": -1},
        {"max_bad_messages": 0},
        {"max_quote_rate": 0.01},
        {"idle_timeout": 5.0, "heartbeat_interval": 5.0},
        {"login_timeout": 0},
        {"heartbeat_interval": 0},
        {"send_buffer_bytes": 10},
        {"lag_warning_fraction": 1.0},
        {"connection_retry_after": 0},
    ],
)
def test_limits_out_of_range_raise_config_error(kwargs: dict[str, Any]) -> None:
    """Every limit is range-checked and names itself in the ConfigError."""
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        SessionLimits(**kwargs)


# -- authentication -----------------------------------------------------------------------


def test_header_key_gets_welcome_with_budget() -> None:
    """A key from the header or query is checked at once: welcome with limits and budget."""
    session = NativeSession(now=0.0, session_id="s1")
    session.authenticate(record(max_connections=3), open_connections=1, now=0.0, stream=STATE)
    [welcome] = drain(session)
    assert welcome["type"] == "welcome" and "id" not in welcome
    assert welcome["session"] == "s1" and welcome["protocol"] == m.PROTOCOL_VERSION
    assert welcome["key"] == "abcd1234" and welcome["encoding"] == "json"
    assert welcome["encodings"] == ["json", "msgpack"]
    assert welcome["channels"] == ["ticks", "quotes", "bars"]
    assert welcome["intervals"] == ["1s", "1m"]
    assert (welcome["epoch"], welcome["offset"]) == (7, 500)
    assert welcome["heartbeat"] == 5.0
    assert welcome["limits"]["max_subscriptions"] == 200
    assert welcome["budget"] == {
        "messages_left": 40,
        "subscriptions_left": 200,
        "connections_left": 1,
    }
    assert session.state is SessionState.OPEN and session.key is not None
    assert session.actions() == []


def test_login_message_asks_the_shell_to_check_the_key() -> None:
    """A login message yields an Authenticate action; the welcome then answers its id."""
    session = NativeSession(now=0.0)
    out, actions = send(session, {"action": "login", "key": "tw_secret", "id": 1})
    assert out == [] and actions == [Authenticate("tw_secret", 1)]
    assert session.state is SessionState.AUTHENTICATING
    session.authenticate(record(), open_connections=0, now=1.5, stream=STATE)
    [welcome] = drain(session)
    assert welcome["type"] == "welcome" and welcome["id"] == 1


def test_invalid_key_answers_the_login_and_closes_4001() -> None:
    """An unknown key gets an unauthorized error for the login id, then close 4001."""
    session = NativeSession(now=0.0)
    send(session, {"action": "login", "key": "nope", "id": "a"})
    session.authenticate(None, open_connections=0, now=1.0, stream=STATE)
    [error] = drain(session)
    assert error == {
        "type": "error",
        "code": "unauthorized",
        "message": "missing, invalid or revoked API key",
        "id": "a",
    }
    assert session.actions() == [Close(4001, "missing, invalid or revoked API key")]
    assert session.closed


def test_revoked_key_is_unauthorized() -> None:
    """A revoked key is refused like an unknown one, even if the shell passes its record."""
    revoked = msgspec.structs.replace(record(), revoked=True)
    refusal = admit(revoked, open_connections=0, limits=SessionLimits())
    assert refusal is not None and refusal.code == CloseCode.UNAUTHORIZED
    assert refusal.http_status == 401 and refusal.retry_after is None


def test_key_without_stream_entitlement_closes_4003() -> None:
    """A key that may not use the stream is closed with 4003 (forbidden)."""
    session = NativeSession(now=0.0)
    session.authenticate(record(stream=False), open_connections=0, now=0.0, stream=STATE)
    [error] = drain(session)
    assert error["code"] == "forbidden"
    [close] = session.actions()
    assert close == Close(4003, "this API key may not use the stream")


def test_too_many_connections_closes_4008_with_retry_after() -> None:
    """Over the key's connections: 4008 whose reason says when to retry; admit() gives 429."""
    limits = SessionLimits(connection_retry_after=30)
    session = NativeSession(now=0.0, limits=limits)
    session.authenticate(record(max_connections=2), open_connections=2, now=0.0, stream=STATE)
    assert drain(session)[0]["code"] == "too_many_connections"
    [close] = session.actions()
    assert isinstance(close, Close) and close.code == 4008
    assert "2 allowed" in close.reason and close.reason.endswith("retry after 30 s")
    refusal = admit(record(max_connections=2), open_connections=2, limits=limits)
    assert refusal is not None and (refusal.http_status, refusal.retry_after) == (429, 30)
    assert admit(record(max_connections=2), open_connections=1, limits=limits) is None


def test_no_login_within_the_timeout_closes_4001() -> None:
    """Without a key, tick() closes with 4001 at the login deadline, not before."""
    session = NativeSession(now=10.0, limits=SessionLimits(login_timeout=5.0))
    assert session.deadline == 15.0
    session.tick(14.9, STATE)
    assert session.actions() == [] and drain(session) == []
    session.tick(15.0, STATE)
    assert session.actions() == [Close(4001, "no login within 5 s")]
    assert session.deadline == math.inf


def test_a_pending_login_also_times_out() -> None:
    """A login the shell never answers still ends at the login deadline."""
    session = NativeSession(now=0.0, limits=SessionLimits(login_timeout=2.0))
    send(session, {"action": "login", "key": "k"}, now=0.5)
    session.tick(2.0, STATE)
    assert session.actions() == [Close(4001, "no login within 2 s")]


def test_messages_sent_during_login_are_held_then_handled_in_order() -> None:
    """Requests pipelined after login wait for the key check, then run in order."""
    session = NativeSession(now=0.0)
    send(session, {"action": "login", "key": "k", "id": 1})
    assert send(session, {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD"]}) == (
        [],
        [],
    )
    send(session, {"action": "subscriptions", "id": 3})
    session.authenticate(record(), open_connections=0, now=1.0, stream=STATE)
    types = [msg["type"] for msg in drain(session)]
    assert types == ["welcome", "ack", "subscriptions"]
    [action] = session.actions()
    assert isinstance(action, Subscribe) and action.symbols == ("EURUSD",)


def test_too_many_messages_during_login_are_dropped_with_an_error() -> None:
    """At most MAX_PENDING_LOGIN messages are held; more get login_pending and are dropped."""
    session = NativeSession(now=0.0)
    send(session, {"action": "login", "key": "k"})
    for i in range(session_module.MAX_PENDING_LOGIN):
        assert send(session, {"action": "ping", "id": i}) == ([], [])
    out, _ = send(session, {"action": "ping", "id": 99})
    assert out == [
        {
            "type": "error",
            "code": "login_pending",
            "message": "too many messages while the login is checked; message dropped",
            "id": 99,
        }
    ]


def test_held_messages_are_dropped_when_the_login_fails() -> None:
    """A refused login discards what was held: only the error and the close come out."""
    session = NativeSession(now=0.0)
    send(session, {"action": "login", "key": "k"})
    send(session, {"action": "ping", "id": 2})
    session.authenticate(None, open_connections=0, now=1.0, stream=STATE)
    assert [msg["type"] for msg in drain(session)] == ["error"]
    assert [type(a) for a in session.actions()] == [Close]


def test_held_messages_stop_at_a_close() -> None:
    """If a held message closes the session, the rest are not handled."""
    session = NativeSession(now=0.0, limits=SessionLimits(max_bad_messages=1))
    send(session, {"action": "login", "key": "k"})
    send(session, {"action": "subscribe", "channel": "ticks", "symbols": []})
    send(session, {"action": "ping", "id": 2})
    session.authenticate(record(), open_connections=0, now=1.0, stream=STATE)
    assert [msg["type"] for msg in drain(session)] == ["welcome", "error"]
    assert session.actions() == [Close(4400, "1 invalid messages in a row")]


def test_a_second_login_is_refused() -> None:
    """Logging in on an authenticated connection is an already_authenticated error."""
    session = opened()
    out, actions = send(session, {"action": "login", "key": "k", "id": 4})
    assert out[0]["code"] == "already_authenticated" and out[0]["id"] == 4
    assert actions == []


def test_requests_before_login_are_refused() -> None:
    """Subscribing before any login is a not_authenticated error."""
    session = NativeSession(now=0.0)
    out, actions = send(
        session, {"action": "subscribe", "id": 2, "channel": "ticks", "symbols": ["EURUSD"]}
    )
    assert out[0]["code"] == "not_authenticated" and out[0]["id"] == 2 and actions == []


def test_ping_is_answered_before_login() -> None:
    """A ping needs no key; the pong's budget has no connection count yet."""
    session = NativeSession(now=0.0)
    [pong], _ = send(session, {"action": "ping", "id": 5})
    assert pong == {
        "type": "pong",
        "time": T0,
        "budget": {"messages_left": 39, "subscriptions_left": 200},
        "id": 5,
    }


def test_authenticate_is_ignored_unless_a_key_is_awaited() -> None:
    """authenticate() on an open or closed session changes nothing."""
    session = opened()
    session.authenticate(None, open_connections=0, now=1.0, stream=STATE)
    assert session.state is SessionState.OPEN and drain(session) == []
    session.close()
    session.actions()
    session.authenticate(record(), open_connections=0, now=1.0, stream=STATE)
    assert session.closed and drain(session) == [] and session.actions() == []


# -- subscribe ----------------------------------------------------------------------------


def test_subscribe_acks_each_symbol_and_asks_the_fan_out_to_register() -> None:
    """Accepted symbols are normalised and de-duplicated; unknown/not entitled are refused."""
    session = opened(key=record(symbols=("EUR*",)))
    out, actions = send(
        session,
        {
            "action": "subscribe",
            "id": 2,
            "channel": "ticks",
            "symbols": [" eurusd", "EURUSD", "GBPUSD", "FOOBAR", "EURJPY"],
            "future_field": {"ignored": True},
        },
    )
    assert out == [
        {
            "type": "ack",
            "action": "subscribe",
            "channel": "ticks",
            "results": [
                {"symbol": "EURUSD", "status": "accepted"},
                {"symbol": "GBPUSD", "status": "refused", "reason": "not_entitled"},
                {"symbol": "FOOBAR", "status": "refused", "reason": "unknown"},
                {"symbol": "EURJPY", "status": "accepted"},
            ],
            "subscriptions_left": 198,
            "id": 2,
        }
    ]
    assert actions == [
        Subscribe(
            channel=Channel.TICKS,
            symbols=("EURUSD", "EURJPY"),
            position=Position(7, 500),
            request_id=2,
            snapshot=True,
        )
    ]
    assert session.symbols(Channel.TICKS) == {"EURUSD", "EURJPY"} and session.lossless


def test_subscribe_uses_the_entitlement_callback() -> None:
    """The session asks its entitled(record, symbol) callback for every known symbol."""
    asked: list[str] = []

    def only_gbp(rec: KeyRecord, symbol: str) -> bool:
        asked.append(symbol)
        return symbol.startswith("GBP")

    session = NativeSession(now=0.0, entitled=only_gbp, catalog={"EURUSD", "GBPUSD"})
    session.authenticate(record(), open_connections=0, now=0.0, stream=STATE)
    drain(session)
    out, _ = send(
        session, {"action": "subscribe", "channel": "quotes", "symbols": ["EURUSD", "GBPUSD", "X"]}
    )
    assert [r.get("reason") for r in out[0]["results"]] == ["not_entitled", None, "unknown"]
    assert asked == ["EURUSD", "GBPUSD"]


def test_subscriptions_over_the_limit_are_refused() -> None:
    """Past max_subscriptions each further symbol is refused over_limit; the rest accepted."""
    session = opened(limits=SessionLimits(max_subscriptions=3))
    out, _ = send(
        session,
        {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD", "GBPUSD"]},
    )
    assert out[0]["subscriptions_left"] == 1
    out, [action] = send(
        session,
        {"action": "subscribe", "channel": "quotes", "symbols": ["EURUSD", "USDJPY"]},
    )
    assert [(r["symbol"], r.get("reason")) for r in out[0]["results"]] == [
        ("EURUSD", None),
        ("USDJPY", "over_limit"),
    ]
    assert out[0]["subscriptions_left"] == 0 and action.symbols == ("EURUSD",)


def test_subscribing_twice_changes_nothing() -> None:
    """A symbol already subscribed on the channel is refused already_subscribed, no action."""
    session = opened()
    send(session, {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD"]})
    out, actions = send(session, {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD"]})
    assert out[0]["results"] == [
        {"symbol": "EURUSD", "status": "refused", "reason": "already_subscribed"}
    ]
    assert actions == []


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        ({"channel": "quotes", "from": "7:1"}, "`from` applies to the ticks channel only"),
        ({"channel": "ticks", "max_rate": 2}, "`max_rate` applies to the quotes channel only"),
        ({"channel": "quotes", "interval": "1m"}, "`interval` and `side` apply to the bars"),
        ({"channel": "ticks", "side": "bid"}, "`interval` and `side` apply to the bars"),
        ({"channel": "bars"}, "the bars channel needs `interval`: 1s, 1m"),
        ({"channel": "quotes", "max_rate": 0.01}, "`max_rate` must be between 0.1 and 50"),
        ({"channel": "quotes", "max_rate": 51}, "`max_rate` must be between 0.1 and 50"),
        ({"channel": "ticks", "from": "7"}, "`from` must be EPOCH:OFFSET"),
        ({"channel": "ticks", "from": "7:-1"}, "`from` must be EPOCH:OFFSET"),
        ({"channel": "ticks", "from": "a:b"}, "`from` must be EPOCH:OFFSET"),
        ({"channel": "ticks", "from": f"7:{2**63}"}, "`from` is out of range"),
        ({"channel": "ticks", "symbols": []}, "`symbols` must not be empty"),
        ({"channel": "ticks", "symbols": ["X" * 33]}, "at most 32 characters"),
        ({"channel": "ticks", "symbols": ["EURUSD"] * 201}, "at most 200 symbols per request"),
        ({"channel": "news"}, "Invalid enum value 'news' - at `$.channel`"),
        ({"channel": "ticks", "symbols": "EURUSD"}, "Expected `array`, got `str`"),
        ({"channel": "ticks", "snapshot": "yes"}, "Expected `bool | null`, got `str`"),
        ({"channel": "bars", "interval": "5m"}, "Invalid enum value '5m'"),
    ],
)
def test_invalid_subscribe_options_are_request_errors(
    request_: dict[str, Any], fragment: str
) -> None:
    """Options that do not fit the channel, or are out of range, give invalid_request."""
    session = opened()
    message = {"action": "subscribe", "id": 9, "symbols": ["EURUSD"], **request_}
    out, actions = send(session, message)
    assert len(out) == 1 and actions == []
    assert out[0]["code"] == "invalid_request" and out[0]["id"] == 9
    assert fragment in out[0]["message"]


def test_quotes_subscription_defaults_and_conflation() -> None:
    """Quotes default to 5 updates/s and register the symbols with the session's conflator."""
    session = opened()
    out, [action] = send(
        session, {"action": "subscribe", "channel": "quotes", "symbols": ["EURUSD"]}
    )
    assert out[0]["max_rate"] == 5.0 and action.max_rate == 5.0 and action.snapshot
    assert "EURUSD" in session.quotes and not session.lossless
    out, [action] = send(
        session,
        {"action": "subscribe", "channel": "quotes", "symbols": ["GBPUSD"], "max_rate": 0.5},
    )
    assert action.max_rate == 0.5 and len(session.quotes) == 2


def test_bars_subscription_carries_interval_and_side() -> None:
    """Bars need an interval; the side defaults to mid; the action knows its resolution."""
    session = opened()
    out, [action] = send(
        session,
        {"action": "subscribe", "channel": "bars", "symbols": ["EURUSD"], "interval": "1s"},
    )
    assert (out[0]["interval"], out[0]["side"]) == ("1s", "mid")
    assert action.interval is Interval.SECOND and action.side is PriceSide.MID
    assert action.resolution == session_module.INTERVAL_RESOLUTIONS[Interval.SECOND]
    # cached, and the cache follows the next subscription
    assert session.bar_subscriptions() == {("EURUSD", Interval.SECOND, PriceSide.MID)}
    _, [other] = send(
        session,
        {
            "action": "subscribe",
            "channel": "bars",
            "symbols": ["EURUSD"],
            "interval": "1m",
            "side": "bid",
            "snapshot": False,
        },
    )
    assert other.resolution is not None and str(other.resolution) == "1minute"
    assert not other.snapshot
    assert session.bar_subscriptions() == {
        ("EURUSD", Interval.SECOND, PriceSide.MID),
        ("EURUSD", Interval.MINUTE, PriceSide.BID),
    }
    assert session.symbols(Channel.BARS) == {"EURUSD"}
    assert Subscribe(channel=Channel.TICKS, symbols=(), position=Position(0, 0)).resolution is None


# -- unsubscribe and listing --------------------------------------------------------------


def test_unsubscribe_acks_each_symbol_and_asks_the_fan_out_to_stop() -> None:
    """Subscribed symbols are removed (accepted); others are refused not_subscribed."""
    session = opened()
    send(session, {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD", "GBPUSD"]})
    out, actions = send(
        session,
        {"action": "unsubscribe", "id": 3, "channel": "ticks", "symbols": ["eurusd", "USDJPY"]},
    )
    assert out == [
        {
            "type": "ack",
            "action": "unsubscribe",
            "channel": "ticks",
            "results": [
                {"symbol": "EURUSD", "status": "accepted"},
                {"symbol": "USDJPY", "status": "refused", "reason": "not_subscribed"},
            ],
            "subscriptions_left": 199,
            "id": 3,
        }
    ]
    assert actions == [Unsubscribe(channel=Channel.TICKS, symbols=("EURUSD",), request_id=3)]
    assert session.symbols(Channel.TICKS) == {"GBPUSD"}


def test_unsubscribe_without_symbols_removes_the_whole_channel() -> None:
    """Leaving out symbols unsubscribes every symbol of that channel, and nothing else."""
    session = opened()
    send(session, {"action": "subscribe", "channel": "quotes", "symbols": ["EURUSD", "GBPUSD"]})
    send(session, {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD"]})
    out, [action] = send(session, {"action": "unsubscribe", "channel": "quotes"})
    assert [r["symbol"] for r in out[0]["results"]] == ["EURUSD", "GBPUSD"]
    assert action.symbols == ("EURUSD", "GBPUSD") and len(session.quotes) == 0
    assert session.symbols(Channel.TICKS) == {"EURUSD"}
    out, actions = send(session, {"action": "unsubscribe", "channel": "bars"})
    assert out[0]["results"] == [] and actions == []


def test_unsubscribe_bars_filters_by_interval_and_side() -> None:
    """Bars unsubscribe matches interval and side when given, and any of them when not."""
    session = opened()
    for interval in ("1s", "1m"):
        for side in ("bid", "mid"):
            send(
                session,
                {
                    "action": "subscribe",
                    "channel": "bars",
                    "symbols": ["EURUSD", "GBPUSD"],
                    "interval": interval,
                    "side": side,
                },
            )
    assert len(session.bar_subscriptions()) == 8  # cached: the unsubscribes below must renew it
    out, actions = send(
        session,
        {"action": "unsubscribe", "channel": "bars", "symbols": ["EURUSD"], "interval": "1s"},
    )
    assert out[0]["interval"] == "1s" and "side" not in out[0]
    assert actions == [
        Unsubscribe(channel=Channel.BARS, symbols=("EURUSD",), interval=Interval.SECOND, side=side)
        for side in (PriceSide.BID, PriceSide.MID)
    ]
    _, actions = send(
        session,
        {"action": "unsubscribe", "channel": "bars", "symbols": ["GBPUSD"], "side": "bid"},
    )
    assert [(a.interval, a.side) for a in actions] == [
        (Interval.SECOND, PriceSide.BID),
        (Interval.MINUTE, PriceSide.BID),
    ]
    assert session.bar_subscriptions() == {
        ("EURUSD", Interval.MINUTE, PriceSide.BID),
        ("EURUSD", Interval.MINUTE, PriceSide.MID),
        ("GBPUSD", Interval.SECOND, PriceSide.MID),
        ("GBPUSD", Interval.MINUTE, PriceSide.MID),
    }


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        ({"channel": "ticks", "interval": "1s"}, "apply to the bars channel only"),
        ({"channel": "ticks", "symbols": []}, "`symbols` must not be empty"),
        ({"channel": "ticks", "symbols": [1]}, "Expected `str`, got `int`"),
    ],
)
def test_invalid_unsubscribe_options_are_request_errors(
    request_: dict[str, Any], fragment: str
) -> None:
    """Unsubscribe options are checked like subscribe's."""
    session = opened()
    out, actions = send(session, {"action": "unsubscribe", "id": "u", **request_})
    assert out[0]["code"] == "invalid_request" and fragment in out[0]["message"]
    assert out[0]["id"] == "u" and actions == []


def test_subscriptions_lists_groups_with_their_options() -> None:
    """The list groups symbols by channel and options, in subscription order, with budget."""
    session = opened()
    send(session, {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD", "GBPUSD"]})
    send(
        session,
        {"action": "subscribe", "channel": "quotes", "symbols": ["USDJPY"], "max_rate": 2},
    )
    send(
        session,
        {"action": "subscribe", "channel": "bars", "symbols": ["EURUSD"], "interval": "1m"},
    )
    [listing], actions = send(session, {"action": "subscriptions", "id": 4})
    assert listing == {
        "type": "subscriptions",
        "subscriptions": [
            {"channel": "ticks", "symbols": ["EURUSD", "GBPUSD"]},
            {"channel": "quotes", "symbols": ["USDJPY"], "max_rate": 2.0},
            {"channel": "bars", "symbols": ["EURUSD"], "interval": "1m", "side": "mid"},
        ],
        "budget": {"messages_left": 36, "subscriptions_left": 196, "connections_left": 1},
        "id": 4,
    }
    assert actions == []


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "binary", "code", "fragment"),
    [
        ('{"action": "ping"', False, "malformed", "not valid JSON"),
        (b"\xff\x00garbage", False, "malformed", "not valid JSON"),
        (b'{"action":"ping","id":"\xff"}', False, "malformed", "utf-8"),
        (
            '{"action": "ping", "x": ' + "[" * 10_000 + "]" * 10_000 + "}",
            False,
            "malformed",
            "nested too deeply",
        ),
        (b"\xc1\xc1\xc1", True, "malformed", "not valid MessagePack"),
        (b"\xd9\x10ab", True, "malformed", "truncated"),
        ("[1, 2]", False, "invalid_message", "a message must be an object"),
        ('"login"', False, "invalid_message", "a message must be an object"),
        (b"\x93\x01\x02\x03", True, "invalid_message", "a message must be an object"),
        ('{"id": 1}', False, "invalid_message", "string field `action`"),
        ('{"action": 5, "id": 1}', False, "invalid_message", "string field `action`"),
        ('{"action": "fly", "id": 1}', False, "unknown_action", "unknown action 'fly'"),
        ('{"action": "' + "x" * 40 + '"}', False, "unknown_action", "x" * 32 + "…"),
        ('{"action": "login", "key": 5}', False, "invalid_request", "Expected `str`, got `int`"),
        ('{"action": "ping", "id": true}', False, "invalid_request", "got `bool`"),
        ('{"action": "ping", "id": 1e400}', False, "invalid_request", "Number out of range"),
        ('{"action": "ping", "id": 9007199254740992}', False, "invalid_request", "<="),
    ],
)
def test_undecodable_messages_get_a_protocol_error(
    data: str | bytes, binary: bool, code: str, fragment: str
) -> None:
    """Malformed JSON, binary garbage, non-objects, unknown actions, wrong types: an error."""
    session = opened()
    session.receive_message(data, binary=binary, now=1.0, stream=STATE)
    [error] = drain(session)
    assert error["type"] == "error" and error["code"] == code
    assert fragment in error["message"]
    assert session.actions() == [] and not session.closed


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"action": "fly", "id": 7}', 7),
        ('{"action": "fly", "id": "req-1"}', "req-1"),
        ('{"action": "fly", "id": "' + "x" * 65 + '"}', None),
        ('{"action": "fly", "id": 9007199254740992}', None),
        ('{"action": "fly", "id": false}', None),
        ('{"action": "fly", "id": [1]}', None),
    ],
)
def test_errors_echo_the_request_id_when_it_is_valid(data: str, expected: object) -> None:
    """An error names the request id when the message had a usable one."""
    problem = decode_client_message(data, binary=False)
    assert isinstance(problem, m.DecodeProblem) and problem.id == expected


def test_msgpack_text_is_accepted_as_bytes() -> None:
    """A str given as a binary message is read as its UTF-8 bytes (a shell slip, not a crash)."""
    problem = decode_client_message("\x93\x01", binary=True)
    assert isinstance(problem, m.DecodeProblem) and problem.code == "invalid_message"
    assert isinstance(decode_client_message("\x81", binary=True), m.DecodeProblem)


def test_too_many_invalid_messages_in_a_row_close_4400() -> None:
    """max_bad_messages invalid messages in a row close with 4400; a valid one resets."""
    session = opened(limits=SessionLimits(max_bad_messages=3))
    send(session, "nope")
    send(session, "nope")
    send(session, {"action": "ping"})
    send(session, "nope")
    out, actions = send(session, "nope")
    assert actions == []
    out, actions = send(session, {"action": "fly"})
    assert out[0]["code"] == "unknown_action"
    assert actions == [Close(4400, "3 invalid messages in a row")]
    assert send(session, {"action": "ping"}) == ([], [])


def test_oversized_message_closes_1009() -> None:
    """A message over max_message_bytes (in UTF-8 bytes) closes with 1009, unread."""
    session = opened(limits=SessionLimits(max_message_bytes=1024))
    session.receive_message(b"x" * 1024, binary=True, now=1.0, stream=STATE)
    assert session.actions() == [] and drain(session)[0]["type"] == "error"  # at the limit
    session.receive_message("é" * 600, binary=False, now=1.0, stream=STATE)
    assert session.actions() == [Close(1009, "message of 1200 bytes is over the limit of 1024")]
    assert drain(session) == []


def test_oversized_text_is_measured_without_encoding_when_obvious() -> None:
    """A str longer than the limit in characters is refused as is."""
    session = opened(limits=SessionLimits(max_message_bytes=1024))
    session.receive_message("x" * 2000, binary=False, now=1.0, stream=STATE)
    assert session.actions() == [Close(1009, "message of 2000 bytes is over the limit of 1024")]


def test_memoryview_input_is_accepted() -> None:
    """The shell may pass a memoryview of the payload."""
    session = opened()
    session.receive_message(
        memoryview(b'{"action":"ping","id":1}'), binary=False, now=1.0, stream=STATE
    )
    assert drain(session)[0]["type"] == "pong"


def test_flood_gets_errors_then_close_1008() -> None:
    """Over the rate: rate_limited errors for flood_tolerance messages, then close 1008."""
    limits = SessionLimits(messages_per_second=10, burst=5, flood_tolerance=3)
    session = opened(limits=limits)
    for _ in range(5):
        out, _ = send(session, {"action": "ping"}, now=1.0)
        assert out[0]["type"] == "pong"
    for _ in range(3):
        out, actions = send(session, {"action": "ping"}, now=1.0)
        assert out == [
            {
                "type": "error",
                "code": "rate_limited",
                "message": "over 10 messages per second; message dropped",
            }
        ]
        assert actions == []
    out, actions = send(session, {"action": "ping"}, now=1.0)
    assert out == [] and actions == [Close(1008, "inbound message rate exceeded")]


def test_the_rate_limit_recovers_after_a_pause() -> None:
    """The bucket refills at messages_per_second; an accepted message resets the strikes."""
    limits = SessionLimits(messages_per_second=10, burst=2, flood_tolerance=1)
    session = opened(limits=limits, now=1.0)
    send(session, {"action": "ping"}, now=1.0)
    send(session, {"action": "ping"}, now=1.0)
    assert send(session, {"action": "ping"}, now=1.0)[0][0]["code"] == "rate_limited"
    assert send(session, {"action": "ping"}, now=1.1)[0][0]["type"] == "pong"
    assert send(session, {"action": "ping"}, now=1.1)[0][0]["code"] == "rate_limited"
    assert not session.closed
    assert session.budget().messages_left == 0


# -- timers -------------------------------------------------------------------------------


def test_heartbeats_carry_the_stream_position_at_the_interval() -> None:
    """tick() queues a heartbeat every heartbeat_interval, with the stream's epoch/offset/time."""
    session = opened(limits=SessionLimits(heartbeat_interval=5.0, idle_timeout=60.0))
    assert session.deadline == 5.0
    session.tick(4.9, STATE)
    assert drain(session) == []
    later = StreamState(epoch=7, offset=900, first_offset=100, time=T0 + 5)
    session.tick(5.0, later)
    assert drain(session) == [{"type": "heartbeat", "epoch": 7, "offset": 900, "time": T0 + 5}]
    assert session.actions() == [SendPing()]  # the client has been silent for 5 s
    assert session.deadline == 10.0
    send(session, {"action": "ping"}, now=9.0)
    session.tick(10.0, later)
    assert [m["type"] for m in drain(session)] == ["heartbeat"]
    assert session.actions() == []  # it spoke 1 s ago: no ping needed
    session.tick(23.0, later)  # late timer: one heartbeat, then back on schedule
    assert len(drain(session)) == 1 and session.deadline == 28.0


def test_silence_closes_4010_and_pongs_keep_a_reader_alive() -> None:
    """No message or pong for idle_timeout closes 4010; a pong defers it."""
    session = opened(limits=SessionLimits(heartbeat_interval=5.0, idle_timeout=12.0))
    session.tick(10.0, STATE)
    drain(session)
    session.actions()
    session.pong_received(10.5)
    assert session.deadline == 15.0
    session.tick(22.4, STATE)
    assert not session.closed and session.actions() == [SendPing()]
    drain(session)
    session.tick(22.5, STATE)
    assert session.actions() == [Close(4010, "no message or pong for 12 s")]
    assert drain(session) == []


def test_a_closed_session_ignores_every_input() -> None:
    """After a close, inputs produce nothing and backlog says STOP."""
    session = opened()
    session.close(CloseCode.GOING_AWAY, "server shutting down")
    assert session.actions() == [Close(1001, "server shutting down")]
    session.close()
    send(session, {"action": "ping"})
    session.tick(100.0, STATE)
    session.pong_received(100.0)
    action = Subscribe(
        channel=Channel.TICKS,
        symbols=("EURUSD",),
        position=Position(7, 500),
        from_position=Position(7, 400),
    )
    session.snapshot(action, quotes=[])
    session.replay_finished(action)
    session.replay_failed(action, status=ResumeStatus.TOO_OLD, stream=STATE)
    assert session.backlog(10**9, position=None) is Flow.STOP
    assert drain(session) == [] and session.actions() == []
    assert "closed" in repr(session)


def test_closing_is_logged_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    """With debug logging on (checked once per session), a close is logged with its code."""
    with caplog.at_level(logging.DEBUG, logger="tickwire.protocol"):
        session = opened()
        session.close(4010, "idle")
    assert session.debug and "closing with 4010: idle" in caplog.text


def test_close_reason_fits_a_close_frame() -> None:
    """A close reason is cut to 123 UTF-8 bytes without splitting a character."""
    session = opened()
    session.close(1000, "é" * 100)
    [close] = session.actions()
    assert isinstance(close, Close) and len(close.reason.encode()) <= 123
    assert close.reason == "é" * 61


# -- resume -------------------------------------------------------------------------------


def subscribe_from(
    session: NativeSession, position: str, stream: StreamState = STATE
) -> tuple[list[dict[str, Any]], Subscribe]:
    """Subscribe EURUSD ticks from ``position``; return the messages and the action."""
    out, [action] = send(
        session,
        {
            "action": "subscribe",
            "id": 8,
            "channel": "ticks",
            "symbols": ["EURUSD"],
            "from": position,
        },
        stream=stream,
    )
    assert out[0]["type"] == "ack"
    return out[1:], action


def test_resume_within_retention_replays_then_goes_live() -> None:
    """A position still retained: resume replaying (from, to], no snapshot, then live."""
    session = opened()
    out, action = subscribe_from(session, "7:300")
    assert out == [
        {
            "type": "resume",
            "status": "replaying",
            "symbols": ["EURUSD"],
            "from": "7:300",
            "position": "7:500",
            "id": 8,
        }
    ]
    assert action.from_position == Position(7, 300) and action.position == Position(7, 500)
    assert not action.snapshot
    session.replay_finished(action)
    assert drain(session) == [
        {
            "type": "resume",
            "status": "live",
            "symbols": ["EURUSD"],
            "from": "7:300",
            "position": "7:500",
            "id": 8,
        }
    ]


def test_resume_at_the_oldest_retained_position_replays() -> None:
    """from = first_offset - 1 is the oldest position that can still be resumed."""
    _, action = subscribe_from(opened(), "7:99")
    assert action.from_position == Position(7, 99)


def test_resume_at_the_current_position_is_live_at_once() -> None:
    """Nothing missed: resume live immediately, and the action asks for no replay."""
    session = opened()
    out, action = subscribe_from(session, "7:500")
    assert out[0]["status"] == "live" and out[0]["position"] == "7:500"
    assert action.from_position is None
    session.replay_finished(action)
    assert drain(session) == []


def test_resume_from_a_position_too_old_says_so() -> None:
    """Evicted ticks: resume too_old with the oldest position and REST advice; live at once."""
    session = opened()
    out, action = subscribe_from(session, "7:50")
    [resume] = out
    assert resume["status"] == "too_old" and resume["oldest"] == "7:99"
    assert resume["from"] == "7:50" and resume["position"] == "7:500"
    assert "GET /v1/ticks/{symbol}" in resume["message"]
    assert "live ticks continue after 7:500" in resume["message"]
    assert action.from_position is None and session.symbols(Channel.TICKS) == {"EURUSD"}


def test_resume_from_another_epoch_says_so() -> None:
    """A position from another journal generation: resume epoch_changed, no replay."""
    out, action = subscribe_from(opened(), "6:400")
    assert out[0]["status"] == "epoch_changed" and "oldest" not in out[0]
    assert "from epoch 6, the stream is at epoch 7" in out[0]["message"]
    assert action.from_position is None


def test_resume_from_a_forged_position_ahead_says_so() -> None:
    """An offset beyond the stream (forged, or another server's): resume ahead, no replay."""
    out, action = subscribe_from(opened(), "7:501")
    assert (
        out[0]["status"] == "ahead"
        and "7:501 is ahead of the stream (7:500)" in (out[0]["message"])
    )
    assert action.from_position is None


def test_replay_failure_is_reported_with_rest_advice() -> None:
    """If the replay cannot be read any more, the shell reports it and the client is told."""
    session = opened()
    _, action = subscribe_from(session, "7:300")
    moved = StreamState(epoch=7, offset=800, first_offset=400, time=T0)
    session.replay_failed(action, status=ResumeStatus.TOO_OLD, stream=moved)
    [resume] = drain(session)
    assert resume["status"] == "too_old" and resume["oldest"] == "7:399"
    assert resume["position"] == "7:500"
    session.replay_failed(action, status=ResumeStatus.EPOCH_CHANGED, stream=moved)
    assert drain(session)[0]["status"] == "epoch_changed"
    with pytest.raises(ValueError, match="too_old or epoch_changed"):
        session.replay_failed(action, status=ResumeStatus.LIVE, stream=moved)
    live = msgspec.structs.replace(action, from_position=None)
    session.replay_failed(live, status=ResumeStatus.TOO_OLD, stream=moved)
    assert drain(session) == []


def test_resume_on_an_empty_journal() -> None:
    """With nothing journaled yet (offset 0), E:0 is live and the oldest position is E:0."""
    empty = StreamState(epoch=3, offset=0, first_offset=1, time=T0)
    out, action = subscribe_from(opened(), "3:0", stream=empty)
    assert out[0]["status"] == "live" and action.from_position is None


# -- snapshots ----------------------------------------------------------------------------


def test_quotes_snapshot_is_sent_and_counts_as_the_first_update() -> None:
    """The snapshot lists the last quotes; the conflator waits a full interval after it."""
    session = opened()
    _, [action] = send(
        session,
        {"action": "subscribe", "id": 2, "channel": "quotes", "symbols": ["EURUSD"], "max_rate": 1},
        now=3.0,
    )
    drain(session)
    quote = Quote("EURUSD", T0, 1.1, 1.1002, 7, 499, 42)
    session.snapshot(action, quotes=[quote])
    assert drain(session) == [
        {
            "type": "snapshot",
            "channel": "quotes",
            "quotes": [{"s": "EURUSD", "b": 1.1, "a": 1.1002, "t": T0, "e": 7, "o": 499, "q": 42}],
            "id": 2,
        }
    ]
    session.quotes.offer("EURUSD", b"q")
    assert session.quotes.due(3.5) == [] and session.quotes.due(4.0) == [b"q"]


def test_bars_snapshot_lists_forming_bars() -> None:
    """A bars snapshot carries the forming (or just closed) bars at the action's interval."""
    session = opened()
    _, [action] = send(
        session,
        {"action": "subscribe", "channel": "bars", "symbols": ["EURUSD"], "interval": "1m"},
    )
    forming = Bar("EURUSD", T0, 1.1, 1.2, 1.0, 1.15, 12, complete=False)
    closed = Bar("GBPUSD", T0, 1.3, 1.3, 1.3, 1.3, 1)
    session.snapshot(action, bars=[forming, closed])
    [snapshot] = drain(session)
    assert snapshot["channel"] == "bars" and "quotes" not in snapshot
    assert snapshot["bars"] == [
        {
            "s": "EURUSD",
            "i": "1m",
            "p": "mid",
            "t": T0,
            "o": 1.1,
            "h": 1.2,
            "l": 1.0,
            "c": 1.15,
            "n": 12,
            "state": "forming",
        },
        {
            "s": "GBPUSD",
            "i": "1m",
            "p": "mid",
            "t": T0,
            "o": 1.3,
            "h": 1.3,
            "l": 1.3,
            "c": 1.3,
            "n": 1,
            "state": "closed",
        },
    ]


def test_ticks_snapshot_is_a_quote_list() -> None:
    """The ticks channel's snapshot is the last quote, positioned, before live ticks."""
    session = opened()
    _, [action] = send(session, {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD"]})
    session.snapshot(action, quotes=[Quote("EURUSD", T0, 1.1, 1.2, 7, 500, 3)])
    [snapshot] = drain(session)
    assert snapshot["channel"] == "ticks" and snapshot["quotes"][0]["o"] == 500


# -- slow consumers -----------------------------------------------------------------------


def test_lossless_client_gets_a_lag_warning_then_4009_with_its_position() -> None:
    """A ticks client: OPEN, then one lag warning and CONFLATE, then close 4009 with position."""
    limits = SessionLimits(send_buffer_bytes=10_000, lag_warning_fraction=0.5)
    session = opened(limits=limits)
    send(session, {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD"]})
    here = Position(7, 1234)
    assert session.backlog(4_999, position=here) is Flow.OPEN
    assert session.backlog(5_000, position=here) is Flow.CONFLATE
    assert drain(session) == [
        {"type": "lag", "buffered": 5_000, "limit": 10_000, "position": "7:1234"}
    ]
    assert session.backlog(9_000, position=here) is Flow.CONFLATE
    assert drain(session) == []  # one warning per episode
    assert session.backlog(3_000, position=here) is Flow.OPEN  # not yet below warn / 2
    assert session.backlog(8_000, position=here) is Flow.CONFLATE and drain(session) == []
    assert session.backlog(2_000, position=here) is Flow.OPEN  # below warn / 2: re-armed
    assert session.backlog(6_000, position=None) is Flow.CONFLATE
    assert drain(session) == [{"type": "lag", "buffered": 6_000, "limit": 10_000}]
    assert session.backlog(10_001, position=here) is Flow.STOP
    assert drain(session) == []
    assert session.actions() == [Close(4009, "slow consumer, resume from 7:1234")]


def test_overflow_without_a_prior_warning_still_warns_first() -> None:
    """A buffer that jumps past the limit gets the lag warning and then the close."""
    session = opened(limits=SessionLimits(send_buffer_bytes=10_000))
    send(session, {"action": "subscribe", "channel": "ticks", "symbols": ["EURUSD"]})
    assert session.backlog(50_000, position=None) is Flow.STOP
    assert [m["type"] for m in drain(session)] == ["lag"]
    assert session.actions() == [Close(4009, "slow consumer")]


def test_conflated_client_just_gets_fewer_updates() -> None:
    """Without ticks subscriptions a full buffer means CONFLATE, without a warning; only a
    client that stops reading altogether (4× the limit) is closed, so memory stays bounded."""
    session = opened(limits=SessionLimits(send_buffer_bytes=10_000))
    send(session, {"action": "subscribe", "channel": "quotes", "symbols": ["EURUSD"]})
    assert session.backlog(6_000, position=None) is Flow.CONFLATE
    assert session.backlog(40_000, position=None) is Flow.CONFLATE
    assert drain(session) == [] and session.actions() == [] and not session.closed
    assert session.backlog(40_001, position=None) is Flow.STOP
    assert drain(session) == [] and session.actions() == [Close(4009, "slow consumer")]


# -- conflation ---------------------------------------------------------------------------


def test_conflator_respects_max_rate_and_sends_the_latest_value() -> None:
    """At 2/s, offers every 0.1 s come out at most every 0.5 s, always the newest value."""
    conflator: QuoteConflator[int] = QuoteConflator()
    conflator.add("EURUSD", 2.0, now=0.0)
    emitted: list[tuple[float, int]] = []
    for step in range(21):
        now = step / 10
        conflator.offer("EURUSD", step)
        emitted += [(now, value) for value in conflator.due(now)]
    assert emitted == [(0.0, 0), (0.5, 5), (1.0, 10), (1.5, 15), (2.0, 20)]
    assert conflator.next_due() is None and conflator.pending == 0


def test_conflator_keeps_a_quiet_symbols_last_value_until_due() -> None:
    """A value offered between emissions is held, reported by next_due, and sent when due."""
    conflator: QuoteConflator[str] = QuoteConflator()
    conflator.add("EURUSD", 1.0, now=0.0)
    conflator.add("GBPUSD", 4.0, now=0.0)
    assert conflator.offer_many({"EURUSD": "e1", "GBPUSD": "g1", "USDJPY": "j1"}) == 2
    assert conflator.due(0.0) == ["e1", "g1"]
    conflator.offer_many({"EURUSD": "e2"})
    conflator.offer("GBPUSD", "g2")
    assert conflator.next_due() == 0.25 and conflator.pending == 2
    assert conflator.due(0.3) == ["g2"]
    assert conflator.next_due() == 1.0 and conflator.due(1.0) == ["e2"]
    assert conflator.due(5.0) == []


def test_conflator_bookkeeping() -> None:
    """offer ignores unsubscribed symbols; discard drops pending; sent() delays; bad rate raises."""
    conflator: QuoteConflator[str] = QuoteConflator()
    assert not conflator.offer("EURUSD", "x")
    conflator.add("EURUSD", 10.0, now=0.0)
    conflator.add("GBPUSD", 10.0, now=0.0)
    conflator.add("USDJPY", 10.0, now=0.0)
    assert list(conflator) == ["EURUSD", "GBPUSD", "USDJPY"]
    assert conflator.offer_many({"EURUSD": "a", "AUDUSD": "b"}) == 1  # iterate the offers
    assert conflator.offer_many({s: "c" for s in ("EURUSD", "GBPUSD", "X", "Y")}) == 2
    conflator.discard("EURUSD")
    conflator.discard("EURUSD")
    conflator.discard("GBPUSD")
    conflator.add("GBPUSD", 10.0, now=0.0)
    assert conflator.pending == 0 and "EURUSD" not in conflator
    conflator.add("GBPUSD", 4.0, now=0.0)  # new rate, same schedule
    conflator.offer("GBPUSD", "g")
    conflator.sent("GBPUSD", now=1.0)
    conflator.sent("EURUSD", now=1.0)  # not subscribed: nothing
    assert conflator.pending == 0
    conflator.offer("GBPUSD", "g2")
    assert conflator.due(1.125) == [] and conflator.due(1.25) == ["g2"]
    conflator.offer("GBPUSD", "g3")
    assert conflator.due(1.4) == [] and conflator.due(1.5 - 1e-7) == ["g3"]  # 1 µs of slack
    assert conflator.next_due() is None
    assert repr(conflator) == "<QuoteConflator symbols=2 pending=0>"
    with pytest.raises(ValueError, match="positive"):
        conflator.add("X", 0.0, now=0.0)


# -- encodings ----------------------------------------------------------------------------


def test_msgpack_session_round_trips_every_control_message() -> None:
    """A MessagePack session answers in binary frames that decode to the typed messages."""
    session = NativeSession(now=0.0, encoding=Encoding.MSGPACK, session_id="mp")
    login = msgspec.msgpack.encode({"action": "login", "key": "k", "id": 1})
    session.receive_message(login, binary=True, now=0.0, stream=STATE)
    assert session.actions() == [Authenticate("k", 1)]
    session.authenticate(record(), open_connections=0, now=0.0, stream=STATE)
    request = {"action": "subscribe", "id": 2, "channel": "ticks", "symbols": ["EURUSD"]}
    session.receive_message(msgspec.msgpack.encode(request), binary=True, now=0.1, stream=STATE)
    session.receive_message('{"action":"ping","id":3}', binary=False, now=0.2, stream=STATE)
    session.receive_message(b"\xc1", binary=True, now=0.3, stream=STATE)
    session.tick(5.0, STATE)
    out = session.outgoing()
    assert all(item.binary for item in out)
    decoded = [decode_server_message(item.data, binary=True) for item in out]
    assert [type(msg).__name__ for msg in decoded] == [
        "Welcome",
        "Ack",
        "Pong",
        "ErrorMessage",
        "Heartbeat",
    ]
    welcome = decoded[0]
    assert isinstance(welcome, m.Welcome) and welcome.encoding is Encoding.MSGPACK
    assert welcome.id == 1 and welcome.budget.connections_left == 1


def test_server_messages_decode_back_from_json() -> None:
    """decode_server_message reads what the session writes (for clients and the SDK)."""
    session = opened()
    request = '{"action":"subscribe","channel":"ticks","symbols":["EURUSD"]}'
    session.receive_message(request, binary=False, now=1.0, stream=STATE)
    session.receive_message('{"action":"ping"}', binary=False, now=1.0, stream=STATE)
    out = session.outgoing()
    assert isinstance(decode_server_message(out[0].data, binary=False), m.Ack)
    assert isinstance(decode_server_message(out[1].data.decode(), binary=False), m.Pong)


def exact(pieces: Mapping[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    """Parse JSON tick pieces back with the standard library."""
    return {name: json.loads(b"[" + piece + b"]") for name, piece in pieces.items()}


def expected_ticks(batches: Iterable[JournaledBatch]) -> dict[str, list[dict[str, Any]]]:
    """The ticks of ``batches`` grouped by symbol, as the wire objects should read back."""
    out: dict[str, list[dict[str, Any]]] = {}
    for b in batches:
        for tick in b.ticks():
            out.setdefault(tick.symbol, []).append(
                {
                    "s": tick.symbol,
                    "b": tick.bid,
                    "a": tick.ask,
                    "t": tick.ts,
                    "e": tick.epoch,
                    "o": tick.offset,
                    "q": tick.seq,
                }
            )
    return out


@pytest.mark.parametrize("n", [1, 7, 100, 511, 512, 3000])
def test_json_tick_pieces_read_back_exactly(n: int) -> None:
    """Every float and int reads back exactly with json.loads, per symbol in offset order."""
    b = batch(n)
    pieces = encode_ticks_json(b)
    parsed = exact(pieces)
    assert parsed == expected_ticks([b])
    for ticks in parsed.values():
        offsets = [t["o"] for t in ticks]
        assert offsets == sorted(offsets)
    bids = [t["b"] for ticks in parsed.values() for t in ticks]
    assert {v.hex() for v in bids} == {float(v).hex() for v in b.bid.tolist()}


@pytest.mark.parametrize("n", [5, 700])
def test_json_frame_equals_encoding_the_whole_batch(n: int) -> None:
    """Splicing pieces gives byte-for-byte the Ticks message encoded directly."""
    b = batch(n)
    pieces = encode_ticks_json(b)
    direct = m.JSON_ENCODER.encode(
        m.Ticks(ticks=[t for ticks in wire_ticks(b).values() for t in ticks])
    )
    assert frame_ticks_json(list(pieces.values())) == direct
    subset = [pieces["GBPUSD"], pieces["EURUSD"]]
    assert json.loads(frame_ticks_json(subset)) == {
        "type": "ticks",
        "ticks": expected_ticks([b])["GBPUSD"] + expected_ticks([b])["EURUSD"],
    }
    assert frame_ticks_json([]) == b'{"type":"ticks","ticks":[]}'


@pytest.mark.parametrize("n", [5, 15, 16, 700])
def test_msgpack_frame_equals_encoding_the_whole_batch(n: int) -> None:
    """MessagePack pieces are concatenated maps; frames equal the Ticks message encoded directly."""
    b = batch(n, symbols=("EURUSD",)) if n in (15, 16) else batch(n)
    pieces = encode_ticks_msgpack(b)
    for name, piece in pieces.items():
        array = encoding_module._msgpack_array_header(piece.ticks) + piece
        assert [WireTick(**t) for t in msgspec.msgpack.decode(array)] == wire_ticks(b)[name]
    direct = m.MSGPACK_ENCODER.encode(
        m.Ticks(ticks=[t for ticks in wire_ticks(b).values() for t in ticks])
    )
    assert frame_ticks_msgpack(list(pieces.values())) == direct
    assert frame_ticks_msgpack(tuple(pieces.values())) == direct
    decoded = decode_server_message(frame_ticks_msgpack(list(pieces.values())), binary=True)
    assert isinstance(decoded, m.Ticks) and len(decoded.ticks) == n


def test_msgpack_framing_handles_every_array_header() -> None:
    """Pieces of 16-bit and 32-bit array sizes encode and splice into the right total."""
    b = batch(70_000, symbols=("EURUSD",))
    [piece] = encode_ticks_msgpack(b).values()
    assert piece.ticks == 70_000
    frame = frame_ticks_msgpack([piece, Piece.of(b"\x01" * 300, 300)])
    decoded = msgspec.msgpack.decode(frame)
    assert len(decoded["ticks"]) == 70_300 and decoded["ticks"][-1] == 1
    assert decoded["ticks"][0]["o"] == 101 and decoded["ticks"][69_999]["o"] == 70_100


def test_pieces_know_their_tick_count() -> None:
    """Every piece is bytes with the number of ticks it holds, for framing and for metrics."""
    b = batch(50)
    for codec in CODECS.values():
        pieces = codec.encode_ticks(b)
        assert sum(p.ticks for p in pieces.values()) == 50
    piece = Piece.of(memoryview(b"{}"), 1)
    assert isinstance(piece, bytes) and repr(piece) == "Piece(b'{}', ticks=1)"


def test_several_batches_merge_per_symbol() -> None:
    """Two batches of one flush give one piece per symbol, in offset order; empty adds nothing."""
    first = batch(40, first=101)
    second = batch(30, first=141, symbols=("USDJPY", "AUDUSD"))
    empty = batch(0, first=171)
    pieces = encode_ticks_json([first, empty, second])
    assert exact(pieces) == expected_ticks([first, second])
    usdjpy = [t["o"] for t in exact(pieces)["USDJPY"]]
    assert usdjpy == sorted(usdjpy) and usdjpy[-1] > 140
    assert list(pieces) == ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD"]


def test_quote_pieces_are_the_latest_tick_per_symbol() -> None:
    """encode_quotes_* gives each symbol's last tick; frames equal the Quotes message."""
    first = batch(50)
    second = batch(10, first=151, symbols=("GBPUSD",))
    latest = {name: ticks[-1] for name, ticks in wire_ticks([first, second]).items()}
    pieces = encode_quotes_json([first, batch(0), second])
    assert {k: WireTick(**json.loads(v)) for k, v in pieces.items()} == latest
    assert list(pieces)[-1] == "GBPUSD"
    quotes = [latest[name] for name in pieces]
    assert frame_quotes_json(list(pieces.values())) == m.JSON_ENCODER.encode(
        m.Quotes(quotes=quotes)
    )
    for n in (5, 600):  # a batch naming a symbol without ticks in it
        sparse = dataclasses.replace(batch(n), symbols=("EURUSD", "GBPUSD", "USDJPY", "NEVER"))
        assert "NEVER" not in encode_quotes_json(sparse) and "NEVER" not in wire_ticks(sparse)
    many = [pieces["EURUSD"]] * 300  # a large frame takes the glue-the-ends path
    assert json.loads(frame_quotes_json(many)) == {
        "type": "quotes",
        "quotes": [msgspec.to_builtins(latest["EURUSD"])] * 300,
    }
    mp = encode_quotes_msgpack(first)
    assert frame_quotes_msgpack(list(mp.values())) == m.MSGPACK_ENCODER.encode(
        m.Quotes(quotes=[ticks[-1] for ticks in wire_ticks(first).values()])
    )


def test_bar_messages_encode_once_per_encoding() -> None:
    """encode_bar_* equals the BarMessage Struct in each encoding, and decodes back."""
    bar = Bar("EURUSD", T0, 1.1, 1.2, 1.05, 1.15, 33, complete=False)
    js = encode_bar_json(bar, Interval.MINUTE, PriceSide.BID, BarState.REVISED)
    assert json.loads(js) == {
        "type": "bar",
        "s": "EURUSD",
        "i": "1m",
        "p": "bid",
        "t": T0,
        "o": 1.1,
        "h": 1.2,
        "l": 1.05,
        "c": 1.15,
        "n": 33,
        "state": "revised",
    }
    mp = encode_bar_msgpack(bar, Interval.SECOND, PriceSide.MID, BarState.CLOSED)
    decoded = decode_server_message(mp, binary=True)
    assert isinstance(decoded, m.BarMessage) and decoded.state is BarState.CLOSED


def test_codecs_name_their_frame_type() -> None:
    """Each codec encodes with its own encoding and says which frame type carries it."""
    assert CODECS[Encoding.JSON].binary is False and CODECS[Encoding.MSGPACK].binary is True
    b = batch(20)
    for codec in CODECS.values():
        pieces = codec.encode_ticks(b)
        frame = codec.frame_ticks(list(pieces.values()))
        decoded = decode_server_message(frame, binary=codec.binary)
        assert isinstance(decoded, m.Ticks) and len(decoded.ticks) == 20
        quotes = codec.frame_quotes(list(codec.encode_quotes(b).values()))
        assert isinstance(decode_server_message(quotes, binary=codec.binary), m.Quotes)
        heartbeat = codec.encode(m.Heartbeat(epoch=1, offset=2, time=3))
        assert isinstance(decode_server_message(heartbeat, binary=codec.binary), m.Heartbeat)


def test_stream_state_position() -> None:
    """StreamState names its position as a Position."""
    assert STATE.position == Position(7, 500) and str(STATE.position) == "7:500"


@pytest.mark.parametrize("n", [50, 5_000])  # both grouping paths (small loop, sorted columns)
def test_encoding_only_some_symbols_gives_their_pieces_exactly(n: int) -> None:
    """A replay encodes only the client's symbols: the same bytes as those symbols' pieces of
    the full encoding, offsets included; symbols a batch lacks give nothing."""
    b = batch(n, first=1_001)
    for codec in CODECS.values():
        full = codec.encode_ticks(b)
        some = codec.encode_ticks([b, b.since(b.last_offset)], frozenset({"GBPUSD", "NZDUSD"}))
        assert some == {"GBPUSD": full["GBPUSD"]}
        assert some["GBPUSD"].ticks == full["GBPUSD"].ticks
        assert codec.encode_ticks(b, frozenset({"NZDUSD"})) == {}
        assert codec.encode_ticks(b, frozenset(b.symbols)) == full
