"""The native stream protocol's messages, as msgspec Structs, and their codecs.

Every message is one WebSocket message holding one JSON object (text frame) or one MessagePack
map (binary frame). Client messages are tagged by ``action``, server messages by ``type``; both
unions are decoded by one module-level typed decoder per encoding and dispatched with ``match``.
``docs/protocol.md`` is the reference; this module is its schema.

Guarantees:

* decoding tolerates unknown fields (newer clients talk to older servers) but never wrong types:
  :func:`decode_client_message` returns the message or a :class:`DecodeProblem`, and never
  raises, whatever the bytes (malformed, deeply nested, invalid UTF-8, huge numbers);
* a request ``id`` is an integer in ``±(2**53 - 1)`` (safe in JavaScript) or a string of at
  most 64 characters, so it can always be echoed back in either encoding;
* encoding a server message with :data:`JSON_ENCODER` or :data:`MSGPACK_ENCODER` puts ``type``
  first, then the fields in declaration order; fields whose value is None are left out.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Final

import msgspec

from ..model import PriceSide

__all__ = [
    "JSON_ENCODER",
    "MSGPACK_ENCODER",
    "PROTOCOL_VERSION",
    "Ack",
    "BarMessage",
    "BarState",
    "Budget",
    "Channel",
    "ClientMessage",
    "CloseCode",
    "DecodeProblem",
    "Encoding",
    "ErrorCode",
    "ErrorMessage",
    "Heartbeat",
    "Interval",
    "Lag",
    "LoginRequest",
    "PingRequest",
    "Pong",
    "Quotes",
    "RefusalReason",
    "RequestId",
    "Resume",
    "ResumeStatus",
    "ServerMessage",
    "Snapshot",
    "SubscribeRequest",
    "SubscriptionGroup",
    "Subscriptions",
    "SubscriptionsRequest",
    "SymbolResult",
    "SymbolStatus",
    "Ticks",
    "UnsubscribeRequest",
    "Welcome",
    "WelcomeLimits",
    "WireBar",
    "WireTick",
    "decode_client_message",
    "decode_server_message",
]

PROTOCOL_VERSION: Final = 1
"""Bumped on an incompatible change; additions (new fields, messages) keep the version."""

MAX_ID = 2**53 - 1
MAX_ID_CHARS = 64
MAX_KEY_CHARS = 256

RequestId = (
    Annotated[int, msgspec.Meta(ge=-MAX_ID, le=MAX_ID)]
    | Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
)
"""A client's request id, echoed in every answer to that request."""


# -- vocabulary ---------------------------------------------------------------------------


class Encoding(enum.StrEnum):
    """How server messages are encoded; chosen once per connection."""

    JSON = "json"
    MSGPACK = "msgpack"


class Channel(enum.StrEnum):
    """What a subscription delivers."""

    TICKS = "ticks"
    """Every tick, lossless and ordered; resumable."""
    QUOTES = "quotes"
    """The latest quote, conflated to the client's ``max_rate``."""
    BARS = "bars"
    """1-second or 1-minute OHLC bars: forming, closed, revised."""


class Interval(enum.StrEnum):
    """Bar intervals served live."""

    SECOND = "1s"
    MINUTE = "1m"


class BarState(enum.StrEnum):
    """Where a streamed bar is in its life."""

    FORMING = "forming"
    CLOSED = "closed"
    REVISED = "revised"


class SymbolStatus(enum.StrEnum):
    """Outcome of a subscribe or unsubscribe for one symbol."""

    ACCEPTED = "accepted"
    REFUSED = "refused"


class RefusalReason(enum.StrEnum):
    """Why a symbol was refused in an ``ack``."""

    UNKNOWN = "unknown"
    """Not in the catalogue (or not a valid symbol code)."""
    NOT_ENTITLED = "not_entitled"
    """The key's entitlements do not include it."""
    OVER_LIMIT = "over_limit"
    """The connection already has ``max_subscriptions`` subscriptions."""
    ALREADY_SUBSCRIBED = "already_subscribed"
    """Already subscribed (same channel, symbol, interval and side): nothing changed."""
    NOT_SUBSCRIBED = "not_subscribed"
    """Unsubscribe of something that was not subscribed."""


class ResumeStatus(enum.StrEnum):
    """The answer to a subscribe with ``from``."""

    REPLAYING = "replaying"
    """Missed ticks follow, then ``live``."""
    LIVE = "live"
    """Every tick after ``position`` arrives live: no gap, no duplicate."""
    TOO_OLD = "too_old"
    """The ticks after ``from`` are no longer retained: fetch the gap over REST."""
    EPOCH_CHANGED = "epoch_changed"
    """``from`` belongs to another journal generation: fetch the gap over REST."""
    AHEAD = "ahead"
    """``from`` is beyond the stream's current position (forged, or from another server)."""


class ErrorCode(enum.StrEnum):
    """Stable machine-readable codes of ``error`` messages."""

    MALFORMED = "malformed"
    """Not valid JSON (text frame) or MessagePack (binary frame)."""
    INVALID_MESSAGE = "invalid_message"
    """Valid JSON/MessagePack, but not an object with a string ``action``."""
    UNKNOWN_ACTION = "unknown_action"
    INVALID_REQUEST = "invalid_request"
    """A known action with a missing field, a wrong type or a value out of range."""
    NOT_AUTHENTICATED = "not_authenticated"
    ALREADY_AUTHENTICATED = "already_authenticated"
    LOGIN_PENDING = "login_pending"
    """Too many messages sent while a login is being checked; this one was dropped."""
    RATE_LIMITED = "rate_limited"
    """Over the inbound message rate; the message was dropped."""
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    TOO_MANY_CONNECTIONS = "too_many_connections"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses (see ``docs/protocol.md``)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """The server is shutting down (sent by the shell)."""
    POLICY = 1008
    """Inbound message flood."""
    TOO_BIG = 1009
    """A message larger than ``max_message_bytes``."""
    INTERNAL_ERROR = 1011
    """An unexpected server error (sent by the shell)."""
    UNAUTHORIZED = 4001
    """No key, an invalid or revoked key, or no login within ``login_timeout``."""
    FORBIDDEN = 4003
    """The key may not use the stream."""
    TOO_MANY_CONNECTIONS = 4008
    """The key has all its connections open; the reason says when to retry."""
    SLOW_CONSUMER = 4009
    """The send buffer overflowed; the reason carries the resume position."""
    IDLE_TIMEOUT = 4010
    """No message or pong from the client within ``idle_timeout``."""
    PROTOCOL_ERROR = 4400
    """Too many invalid messages in a row."""


# -- client → server ----------------------------------------------------------------------


class LoginRequest(msgspec.Struct, frozen=True, tag_field="action", tag="login"):
    """Authenticate with an API key (when it was not given in a header or the query)."""

    key: Annotated[str, msgspec.Meta(max_length=MAX_KEY_CHARS)]
    id: RequestId | None = None


class SubscribeRequest(msgspec.Struct, frozen=True, tag_field="action", tag="subscribe"):
    """Subscribe to ``symbols`` on ``channel``; per-channel options are checked by the session."""

    channel: Channel
    symbols: list[str]
    id: RequestId | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    max_rate: float | None = None
    interval: Interval | None = None
    side: PriceSide | None = None
    snapshot: bool | None = None


class UnsubscribeRequest(msgspec.Struct, frozen=True, tag_field="action", tag="unsubscribe"):
    """Unsubscribe ``symbols`` (all of the channel's when absent) from ``channel``."""

    channel: Channel
    symbols: list[str] | None = None
    id: RequestId | None = None
    interval: Interval | None = None
    side: PriceSide | None = None


class SubscriptionsRequest(msgspec.Struct, frozen=True, tag_field="action", tag="subscriptions"):
    """List the connection's subscriptions."""

    id: RequestId | None = None


class PingRequest(msgspec.Struct, frozen=True, tag_field="action", tag="ping"):
    """Application-level ping; answered by ``pong`` with the current budget."""

    id: RequestId | None = None


ClientMessage = (
    LoginRequest | SubscribeRequest | UnsubscribeRequest | SubscriptionsRequest | PingRequest
)
CLIENT_ACTIONS: Final = frozenset({"login", "subscribe", "unsubscribe", "subscriptions", "ping"})


class _Envelope(msgspec.Struct):
    """The lenient view of a client message used to describe a decoding problem."""

    action: Any = None
    id: Any = None


class _ActionOnly(msgspec.Struct):
    """The most lenient view: just the action (when even ``id`` cannot be read)."""

    action: Any = None


class DecodeProblem(msgspec.Struct, frozen=True):
    """Why a client message could not be decoded, with its ``id`` when that much was readable."""

    code: ErrorCode
    message: str
    id: int | str | None = None


_json_client: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_msgpack_client: msgspec.msgpack.Decoder[ClientMessage] = msgspec.msgpack.Decoder(ClientMessage)
_json_envelopes = (msgspec.json.Decoder(_Envelope), msgspec.json.Decoder(_ActionOnly))
_msgpack_envelopes = (msgspec.msgpack.Decoder(_Envelope), msgspec.msgpack.Decoder(_ActionOnly))


def decode_client_message(
    data: bytes | bytearray | memoryview | str, *, binary: bool
) -> ClientMessage | DecodeProblem:
    """Decode one client message: JSON for text frames, MessagePack for binary frames.

    Never raises: undecodable input gives a :class:`DecodeProblem` whose ``code`` is
    ``malformed`` (not JSON/MessagePack), ``invalid_message`` (no string ``action``),
    ``unknown_action``, or ``invalid_request`` (wrong field types or values).
    """
    try:
        if binary:
            raw = data.encode("utf-8") if isinstance(data, str) else data
            return _msgpack_client.decode(raw)
        return _json_client.decode(data)
    except msgspec.ValidationError as exc:
        return _describe(data, binary, str(exc))
    except RecursionError:
        return DecodeProblem(ErrorCode.MALFORMED, "message is nested too deeply")
    except ValueError as exc:  # msgspec.DecodeError, and UnicodeDecodeError for bad UTF-8
        kind = "MessagePack" if binary else "JSON"
        return DecodeProblem(ErrorCode.MALFORMED, f"not valid {kind}: {exc}")


def _describe(
    data: bytes | bytearray | memoryview | str, binary: bool, detail: str
) -> DecodeProblem:
    """Classify a message that parsed but did not validate, recovering its id if possible."""
    envelope = _envelope(data, binary)
    if envelope is None:
        return DecodeProblem(ErrorCode.INVALID_MESSAGE, f"a message must be an object: {detail}")
    request_id = _valid_id(envelope.id) if isinstance(envelope, _Envelope) else None
    action = envelope.action
    if not isinstance(action, str):
        return DecodeProblem(
            ErrorCode.INVALID_MESSAGE, "a message needs a string field `action`", request_id
        )
    if action not in CLIENT_ACTIONS:
        shown = action if len(action) <= 32 else action[:32] + "…"
        return DecodeProblem(
            ErrorCode.UNKNOWN_ACTION,
            f"unknown action {shown!r}; actions: {', '.join(sorted(CLIENT_ACTIONS))}",
            request_id,
        )
    return DecodeProblem(ErrorCode.INVALID_REQUEST, detail, request_id)


def _envelope(
    data: bytes | bytearray | memoryview | str, binary: bool
) -> _Envelope | _ActionOnly | None:
    """The action and id of a message, the action alone, or None if it is not an object."""
    for lenient in (0, 1):
        try:
            if binary:
                raw = data.encode("utf-8") if isinstance(data, str) else data
                return _msgpack_envelopes[lenient].decode(raw)
            return _json_envelopes[lenient].decode(data)
        except (ValueError, RecursionError):  # the id is unreadable, or not an object at all
            continue
    return None


def _valid_id(value: object) -> int | str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and -MAX_ID <= value <= MAX_ID:
        return value
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        return value
    return None


# -- server → client ----------------------------------------------------------------------


class WireTick(msgspec.Struct, gc=False):
    """One tick (or quote) on the wire: symbol, bid, ask, ts (ns), epoch, offset, seq."""

    s: str
    b: float
    a: float
    t: int
    e: int
    o: int
    q: int


class WireBar(msgspec.Struct, gc=False):
    """One bar on the wire: symbol, interval, price side, start (ns), OHLC, tick count, state."""

    s: str
    i: Interval
    p: PriceSide
    t: int
    o: float
    h: float
    l: float  # noqa: E741 - the wire name
    c: float
    n: int
    state: BarState


class _Server(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Base of server messages: ``type`` first, None-valued optional fields left out."""


class Budget(msgspec.Struct, omit_defaults=True):
    """What the client may still use: connections (when the key was checked), messages, subs."""

    messages_left: int
    subscriptions_left: int
    connections_left: int | None = None


class WelcomeLimits(msgspec.Struct):
    """The connection's limits, as ``welcome`` announces them."""

    max_subscriptions: int
    max_message_bytes: int
    messages_per_second: float
    burst: int
    max_quote_rate: float
    send_buffer_bytes: int
    idle_timeout: float


class Welcome(_Server, tag="welcome"):
    """Sent once the key is accepted; answers the ``login`` request when there was one."""

    session: str
    protocol: int
    key: str
    encoding: Encoding
    encodings: list[Encoding]
    channels: list[Channel]
    intervals: list[Interval]
    epoch: int
    offset: int
    heartbeat: float
    limits: WelcomeLimits
    budget: Budget
    id: int | str | None = None


class SymbolResult(msgspec.Struct, omit_defaults=True):
    """One symbol's outcome in an ``ack``."""

    symbol: str
    status: SymbolStatus
    reason: RefusalReason | None = None


class Ack(_Server, tag="ack"):
    """The per-symbol answer to ``subscribe`` or ``unsubscribe``."""

    action: str
    channel: Channel
    results: list[SymbolResult]
    subscriptions_left: int
    id: int | str | None = None
    interval: Interval | None = None
    side: PriceSide | None = None
    max_rate: float | None = None


class SubscriptionGroup(msgspec.Struct, omit_defaults=True):
    """Symbols subscribed on one channel with the same options."""

    channel: Channel
    symbols: list[str]
    max_rate: float | None = None
    interval: Interval | None = None
    side: PriceSide | None = None


class Subscriptions(_Server, tag="subscriptions"):
    """The answer to ``subscriptions``: every current subscription, grouped by options."""

    subscriptions: list[SubscriptionGroup]
    budget: Budget
    id: int | str | None = None


class Snapshot(_Server, tag="snapshot"):
    """The state at subscription time: last quotes (ticks, quotes) or forming bars (bars)."""

    channel: Channel
    quotes: list[WireTick] | None = None
    bars: list[WireBar] | None = None
    id: int | str | None = None


class Ticks(_Server, tag="ticks"):
    """A batch of ticks, grouped by symbol; see ``docs/protocol.md`` for the ordering rules."""

    ticks: list[WireTick]


class Quotes(_Server, tag="quotes"):
    """Conflated latest quotes, at most one per symbol."""

    quotes: list[WireTick]


class BarMessage(WireBar, tag_field="type", tag="bar"):
    """One bar update: forming, closed or revised."""


class Heartbeat(_Server, tag="heartbeat"):
    """Sent every ``heartbeat`` seconds: the stream's latest position and wall time (ns)."""

    epoch: int
    offset: int
    time: int


class Resume(_Server, tag="resume"):
    """Progress of a subscription with ``from``; positions are ``EPOCH:OFFSET``."""

    status: ResumeStatus
    symbols: list[str]
    from_: str = msgspec.field(name="from")
    position: str
    id: int | str | None = None
    oldest: str | None = None
    message: str | None = None


class Lag(_Server, tag="lag"):
    """Warning: the send buffer is filling; a lossless connection will be closed if it fills."""

    buffered: int
    limit: int
    position: str | None = None


class ErrorMessage(_Server, tag="error"):
    """A request (or an undecodable message) was refused; ``code`` is stable, ``message`` human."""

    code: ErrorCode
    message: str
    id: int | str | None = None


class Pong(_Server, tag="pong"):
    """The answer to ``ping``."""

    time: int
    budget: Budget
    id: int | str | None = None


ServerMessage = (
    Welcome
    | Ack
    | Subscriptions
    | Snapshot
    | Ticks
    | Quotes
    | BarMessage
    | Heartbeat
    | Resume
    | Lag
    | ErrorMessage
    | Pong
)

JSON_ENCODER: Final = msgspec.json.Encoder()
MSGPACK_ENCODER: Final = msgspec.msgpack.Encoder()
_json_server: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
_msgpack_server: msgspec.msgpack.Decoder[ServerMessage] = msgspec.msgpack.Decoder(ServerMessage)


def decode_server_message(data: bytes | str, *, binary: bool) -> ServerMessage:
    """Decode one server message (for clients and tests); raises ``msgspec.DecodeError``."""
    if binary:
        return _msgpack_server.decode(data.encode("utf-8") if isinstance(data, str) else data)
    return _json_server.decode(data)
