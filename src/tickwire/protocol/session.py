"""The sans-I/O core of the native stream protocol: one :class:`NativeSession` per connection.

The session knows no socket, no event loop and no clock. The asyncio shell around it (which
also does the WebSocket framing) feeds it *inputs* and performs its *outputs*:

Inputs (every time-dependent one takes ``now``, monotonic seconds; the stream's position comes
as a :class:`StreamState`):

* :meth:`NativeSession.receive_message`: one complete client message (text or binary);
* :meth:`NativeSession.tick`: timers (login timeout, heartbeats, idle timeout); call it by
  :attr:`NativeSession.deadline`;
* :meth:`NativeSession.pong_received`: a WebSocket pong arrived;
* :meth:`NativeSession.authenticate`: the outcome of checking a key (from a header, the query,
  or an :class:`Authenticate` action);
* :meth:`NativeSession.snapshot`, :meth:`NativeSession.replay_finished`,
  :meth:`NativeSession.replay_failed`: what became of a :class:`Subscribe` action;
* :meth:`NativeSession.backlog`: how full the connection's send buffer is (slow consumers);
* :meth:`NativeSession.close`: the server closes the connection (shutdown).

Outputs, drained after **every** input, in this order:

1. :meth:`NativeSession.outgoing`: messages to write, as :class:`Outgoing` payloads;
2. :meth:`NativeSession.actions`: :class:`Authenticate`, :class:`Subscribe`,
   :class:`Unsubscribe`, :class:`SendPing` and :class:`Close`, to perform in order and in the
   same event-loop step (a :class:`Subscribe` must be registered with the fan-out before the
   fan-out's next flush, so that the positions the session announced hold).

Guarantees:

* no input raises on anything a client sends: bad input becomes an ``error`` message and, when
  it persists, a :class:`Close` action with a documented code;
* after a :class:`Close` action the session ignores every input and produces nothing more;
* everything is bounded: subscriptions (``max_subscriptions``), the messages held while a login
  is checked (:data:`MAX_PENDING_LOGIN`), the output of one input (one request's answer),
  and the inbound rate (a token bucket of ``burst`` refilled at ``messages_per_second``);
* the session never reads the clock or does I/O; given the same inputs it gives the same
  outputs.
"""

from __future__ import annotations

import enum
import logging
import math
import secrets
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Final

import msgspec

from ..access.keys import KeyRecord, entitled
from ..catalog import CATALOG
from ..errors import ConfigError
from ..model import Bar, BarUnit, Position, PriceSide, Quote
from ..timeframes import Resolution
from .conflation import QuoteConflator
from .encoding import CODECS, Codec, wire_quote
from .messages import (
    PROTOCOL_VERSION,
    Ack,
    BarState,
    Budget,
    Channel,
    ClientMessage,
    CloseCode,
    DecodeProblem,
    Encoding,
    ErrorCode,
    ErrorMessage,
    Heartbeat,
    Interval,
    Lag,
    LoginRequest,
    PingRequest,
    Pong,
    RefusalReason,
    Resume,
    ResumeStatus,
    ServerMessage,
    Snapshot,
    SubscribeRequest,
    SubscriptionGroup,
    Subscriptions,
    SubscriptionsRequest,
    SymbolResult,
    SymbolStatus,
    UnsubscribeRequest,
    Welcome,
    WelcomeLimits,
    WireBar,
    decode_client_message,
)

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_CONNECTION_RETRY_AFTER",
    "DEFAULT_FLOOD_TOLERANCE",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_LAG_WARNING_FRACTION",
    "DEFAULT_LOGIN_TIMEOUT",
    "DEFAULT_MAX_BAD_MESSAGES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_QUOTE_RATE",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_MESSAGES_PER_SECOND",
    "DEFAULT_QUOTE_RATE",
    "DEFAULT_SEND_BUFFER_BYTES",
    "INTERVAL_RESOLUTIONS",
    "MAX_PENDING_LOGIN",
    "MAX_SYMBOL_CHARS",
    "MIN_QUOTE_RATE",
    "Action",
    "Authenticate",
    "Close",
    "Flow",
    "NativeSession",
    "Outgoing",
    "Refusal",
    "SendPing",
    "SessionLimits",
    "SessionState",
    "StreamState",
    "Subscribe",
    "Unsubscribe",
    "admit",
]

log = logging.getLogger("tickwire.protocol")

DEFAULT_MAX_SUBSCRIPTIONS: Final = 200
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024
DEFAULT_MESSAGES_PER_SECOND: Final = 20.0
DEFAULT_BURST: Final = 40
DEFAULT_FLOOD_TOLERANCE: Final = 10
DEFAULT_MAX_BAD_MESSAGES: Final = 10
DEFAULT_IDLE_TIMEOUT: Final = 60.0
DEFAULT_LOGIN_TIMEOUT: Final = 10.0
DEFAULT_HEARTBEAT_INTERVAL: Final = 5.0
DEFAULT_SEND_BUFFER_BYTES: Final = 2 * 1024 * 1024
DEFAULT_LAG_WARNING_FRACTION: Final = 0.5
DEFAULT_QUOTE_RATE: Final = 5.0
DEFAULT_MAX_QUOTE_RATE: Final = 50.0
DEFAULT_CONNECTION_RETRY_AFTER: Final = 10
MIN_QUOTE_RATE: Final = 0.1
"""Slowest quote rate a client may ask for (one update every 10 s)."""
MAX_PENDING_LOGIN: Final = 16
"""Messages held, in order, while a ``login`` is being checked; more are refused."""
MAX_SYMBOL_CHARS: Final = 32
MAX_CLOSE_REASON_BYTES: Final = 123  # RFC 6455: the close payload is at most 125 bytes

INTERVAL_RESOLUTIONS: Final = {
    Interval.SECOND: Resolution(1, BarUnit.SECOND),
    Interval.MINUTE: Resolution(1, BarUnit.MINUTE),
}
"""The bar resolution of each streamed interval (the live state's resolutions)."""


# -- configuration and inputs -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionLimits:
    """Limits and timers of one connection; every field has a ``DEFAULT_*`` constant.

    Raises :class:`~tickwire.errors.ConfigError` for values out of range.
    """

    # limits
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS
    """Subscriptions per connection (one per channel, symbol and bar interval/side)."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest client message; a larger one closes the connection with 1009."""
    messages_per_second: float = DEFAULT_MESSAGES_PER_SECOND
    """Sustained inbound messages per second (token bucket refill rate)."""
    burst: int = DEFAULT_BURST
    """Inbound messages accepted at once after a quiet period (token bucket size)."""
    flood_tolerance: int = DEFAULT_FLOOD_TOLERANCE
    """Messages refused in a row for rate before the connection is closed with 1008."""
    max_bad_messages: int = DEFAULT_MAX_BAD_MESSAGES
    """Invalid messages in a row before the connection is closed with 4400."""
    max_quote_rate: float = DEFAULT_MAX_QUOTE_RATE
    """Highest ``max_rate`` a quotes subscription may ask for."""
    # timeouts
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """Seconds without a client message or pong before closing with 4010."""
    login_timeout: float = DEFAULT_LOGIN_TIMEOUT
    """Seconds from connection to accepted key before closing with 4001."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    """Seconds between heartbeats (and WebSocket pings to a silent client)."""
    # send buffer (enforced by the shell, policy in NativeSession.backlog)
    send_buffer_bytes: int = DEFAULT_SEND_BUFFER_BYTES
    """Bytes a connection may have waiting to be sent."""
    lag_warning_fraction: float = DEFAULT_LAG_WARNING_FRACTION
    """Fill ratio of the send buffer at which a lossless client gets a ``lag`` warning."""
    connection_retry_after: int = DEFAULT_CONNECTION_RETRY_AFTER
    """Seconds a client refused for too many connections is told to wait."""

    def __post_init__(self) -> None:
        checks = (
            ("max_subscriptions", 1 <= self.max_subscriptions <= 100_000),
            ("max_message_bytes", 256 <= self.max_message_bytes <= 16 * 1024 * 1024),
            ("messages_per_second", 0 < self.messages_per_second <= 100_000),
            ("burst", 1 <= self.burst <= 100_000),
            ("flood_tolerance", 0 <= self.flood_tolerance <= 100_000),
            ("max_bad_messages", 1 <= self.max_bad_messages <= 100_000),
            ("max_quote_rate", MIN_QUOTE_RATE <= self.max_quote_rate <= 10_000),
            ("idle_timeout", self.idle_timeout > self.heartbeat_interval),
            ("login_timeout", 0 < self.login_timeout <= 3_600),
            ("heartbeat_interval", 0 < self.heartbeat_interval <= 3_600),
            ("send_buffer_bytes", 1024 <= self.send_buffer_bytes <= 1 << 34),
            ("lag_warning_fraction", 0 < self.lag_warning_fraction < 1),
            ("connection_retry_after", 1 <= self.connection_retry_after <= 86_400),
        )
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"invalid stream limit {name}={getattr(self, name)!r}")


class StreamState(msgspec.Struct, frozen=True, kw_only=True):
    """Where the stream is, as the fan-out sees it when it calls the session.

    ``offset`` must be the last offset the fan-out has already handed to every live connection
    (so a heartbeat never announces ticks that are still to come on a live subscription), and
    ``first_offset`` the oldest offset that can still be replayed (ring or journal).
    """

    epoch: int
    offset: int
    first_offset: int
    time: int
    """Wall clock, UTC nanoseconds, when this state was taken (heartbeats carry it)."""

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)


# -- outputs ------------------------------------------------------------------------------


class Outgoing(msgspec.Struct, frozen=True, gc=False):
    """One message to write: ``data`` in a binary frame if ``binary``, else a text frame."""

    data: bytes
    binary: bool


class Authenticate(msgspec.Struct, frozen=True):
    """Check ``key`` (it came in a ``login`` message), then call ``authenticate()``."""

    key: str
    request_id: int | str | None = None


class Subscribe(msgspec.Struct, frozen=True, kw_only=True):
    """Register ``symbols`` on ``channel`` with the fan-out, at ``position``, atomically.

    * ``position`` is the stream position when the session accepted the request: live data
      for these symbols starts after it.
    * ``from_position`` (ticks only) asks for a replay of the ticks in ``(from_position,
      position]`` before going live; call :meth:`NativeSession.replay_finished` when done, or
      :meth:`NativeSession.replay_failed` if the ticks cannot be read any more.
    * ``snapshot`` asks for :meth:`NativeSession.snapshot` with the last quotes (ticks, quotes)
      or the forming bars (bars), right after registering and before any update.
    * quotes: ``max_rate``; bars: ``interval`` (see :attr:`resolution`) and ``side``.
    """

    channel: Channel
    symbols: tuple[str, ...]
    position: Position
    request_id: int | str | None = None
    snapshot: bool = False
    from_position: Position | None = None
    max_rate: float | None = None
    interval: Interval | None = None
    side: PriceSide | None = None

    @property
    def resolution(self) -> Resolution | None:
        """The bar resolution of ``interval`` (bars only)."""
        return None if self.interval is None else INTERVAL_RESOLUTIONS[self.interval]


class Unsubscribe(msgspec.Struct, frozen=True, kw_only=True):
    """Stop delivering ``symbols`` on ``channel`` (bars: for this ``interval`` and ``side``)."""

    channel: Channel
    symbols: tuple[str, ...]
    request_id: int | str | None = None
    interval: Interval | None = None
    side: PriceSide | None = None


class SendPing(msgspec.Struct, frozen=True):
    """Send a WebSocket ping frame; report the pong with :meth:`NativeSession.pong_received`."""

    payload: bytes = b""


class Close(msgspec.Struct, frozen=True):
    """Write everything queued before it, then close the WebSocket with ``code`` and ``reason``.

    ``reason`` is at most 123 UTF-8 bytes. After sending the close frame the shell should drop
    the connection if the peer does not answer within its close timeout.
    """

    code: int
    reason: str


Action = Authenticate | Subscribe | Unsubscribe | SendPing | Close


CONFLATED_OVERFLOW: Final = 4
"""A connection without ticks is closed once its send buffer holds this many times the limit."""


class Flow(enum.Enum):
    """What the fan-out may write to a connection, from :meth:`NativeSession.backlog`."""

    OPEN = "open"
    """Write everything due."""
    CONFLATE = "conflate"
    """Write lossless ticks; hold conflated updates (quotes, bars) back for a later flush."""
    STOP = "stop"
    """Write nothing more: the session is closed (a :class:`Close` may have been queued)."""


class SessionState(enum.Enum):
    """Where a session is in its life."""

    AWAITING_LOGIN = "awaiting_login"
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSED = "closed"


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """Why a key may not open a stream connection, for a close frame or an HTTP answer."""

    code: CloseCode
    http_status: int
    error: ErrorCode
    reason: str
    retry_after: int | None = None


def admit(
    record: KeyRecord | None, *, open_connections: int, limits: SessionLimits
) -> Refusal | None:
    """Whether ``record`` may open one more stream connection; None when it may.

    ``open_connections`` counts the key's other open stream connections. The shell can use
    this before the upgrade (answer ``http_status`` with ``Retry-After``) or let
    :meth:`NativeSession.authenticate` apply it (close with ``code``).
    """
    if record is None or record.revoked:
        return Refusal(
            code=CloseCode.UNAUTHORIZED,
            http_status=401,
            error=ErrorCode.UNAUTHORIZED,
            reason="missing, invalid or revoked API key",
        )
    if not record.entitlements.stream:
        return Refusal(
            code=CloseCode.FORBIDDEN,
            http_status=403,
            error=ErrorCode.FORBIDDEN,
            reason="this API key may not use the stream",
        )
    allowed = record.limits.max_connections
    if open_connections >= allowed:
        wait = limits.connection_retry_after
        return Refusal(
            code=CloseCode.TOO_MANY_CONNECTIONS,
            http_status=429,
            error=ErrorCode.TOO_MANY_CONNECTIONS,
            reason=f"too many connections for this key ({allowed} allowed); retry after {wait} s",
            retry_after=wait,
        )
    return None


# -- the session --------------------------------------------------------------------------

_SubKey = tuple[Channel, str, Interval | None, PriceSide | None]
_Group = tuple[Channel, float | None, Interval | None, PriceSide | None]


def _truncate(reason: str, limit: int = MAX_CLOSE_REASON_BYTES) -> str:
    raw = reason.encode("utf-8")
    if len(raw) <= limit:
        return reason
    return raw[:limit].decode("utf-8", "ignore")


class NativeSession:
    """The protocol state of one native stream connection (see the module docstring).

    ``catalog`` decides which symbols exist, ``entitled(record, symbol)`` which ones the key may
    use. ``encoding`` fixes how server messages are encoded; client messages may come in either
    encoding (JSON in text frames, MessagePack in binary frames).
    """

    def __init__(
        self,
        *,
        now: float,
        limits: SessionLimits | None = None,
        encoding: Encoding = Encoding.JSON,
        catalog: Collection[str] = CATALOG,
        entitled: Callable[[KeyRecord, str], bool] = entitled,
        session_id: str | None = None,
    ) -> None:
        self.id = session_id if session_id is not None else secrets.token_hex(6)
        self.limits = limits if limits is not None else SessionLimits()
        self.encoding = encoding
        self.codec: Codec = CODECS[encoding]
        self.state = SessionState.AWAITING_LOGIN
        self.key: KeyRecord | None = None
        self.quotes: QuoteConflator[bytes] = QuoteConflator()
        """Conflation of this connection's quotes subscriptions; the fan-out offers and asks."""
        self.log = logging.LoggerAdapter(log, {"session": self.id})
        self.debug = log.isEnabledFor(logging.DEBUG)

        self._catalog = catalog
        self._entitled = entitled
        self._now = now
        self._login_deadline = now + self.limits.login_timeout
        self._login_id: int | str | None = None
        self._deferred: list[ClientMessage] = []
        self._last_activity = now
        self._next_heartbeat = math.inf
        self._tokens = float(self.limits.burst)
        self._refilled = now
        self._flood_strikes = 0
        self._bad_in_a_row = 0
        self._lag_warned = False
        self._connections_left: int | None = None
        self._subs: dict[_SubKey, float | None] = {}
        self._symbols_cache: dict[Channel, frozenset[str]] = {}
        self._bars_cache: frozenset[tuple[str, Interval, PriceSide]] | None = None
        self._out: list[Outgoing] = []
        self._actions: list[Action] = []

    def __repr__(self) -> str:
        return f"<NativeSession {self.id} {self.state.value} subscriptions={len(self._subs)}>"

    # -- outputs ----------------------------------------------------------------------------

    def outgoing(self) -> list[Outgoing]:
        """Messages to write, oldest first; each call returns them once."""
        out, self._out = self._out, []
        return out

    def actions(self) -> list[Action]:
        """Actions to perform, in order, after writing :meth:`outgoing`; returned once."""
        actions, self._actions = self._actions, []
        return actions

    @property
    def pending(self) -> bool:
        """True if :meth:`outgoing` or :meth:`actions` has something to return."""
        return bool(self._out or self._actions)

    # -- state for the shell and the fan-out ------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def deadline(self) -> float:
        """The monotonic time by which :meth:`tick` should next be called (inf when closed)."""
        match self.state:
            case SessionState.AWAITING_LOGIN | SessionState.AUTHENTICATING:
                return self._login_deadline
            case SessionState.OPEN:
                return min(self._next_heartbeat, self._last_activity + self.limits.idle_timeout)
            case _:
                return math.inf

    @property
    def lossless(self) -> bool:
        """True if the connection has a ticks subscription (it is closed when it overflows)."""
        return bool(self.symbols(Channel.TICKS))

    def symbols(self, channel: Channel) -> frozenset[str]:
        """The symbols subscribed on ``channel`` (bars: under any interval and side)."""
        cached = self._symbols_cache.get(channel)
        if cached is None:
            cached = frozenset(key[1] for key in self._subs if key[0] is channel)
            self._symbols_cache[channel] = cached
        return cached

    def bar_subscriptions(self) -> frozenset[tuple[str, Interval, PriceSide]]:
        """The bars subscribed: ``(symbol, interval, side)`` (cached until they change)."""
        cached = self._bars_cache
        if cached is None:
            cached = self._bars_cache = frozenset(
                (symbol, interval, side)
                for channel, symbol, interval, side in self._subs
                if channel is Channel.BARS and interval is not None and side is not None
            )
        return cached

    def budget(self) -> Budget:
        """What the client may still use, as of the last input."""
        return Budget(
            messages_left=int(self._tokens),
            subscriptions_left=self.limits.max_subscriptions - len(self._subs),
            connections_left=self._connections_left,
        )

    # -- inputs -----------------------------------------------------------------------------

    def receive_message(
        self,
        data: bytes | bytearray | memoryview | str,
        *,
        binary: bool,
        now: float,
        stream: StreamState,
    ) -> None:
        """Handle one complete client message (a text frame, or a binary one if ``binary``).

        In order: the size (UTF-8 bytes) against ``max_message_bytes`` (over: close 1009,
        unread), the rate (over: ``rate_limited``, then close 1008), decoding (JSON for text,
        MessagePack for binary), then the request. Never raises on the message's content.
        """
        if self.state is SessionState.CLOSED:
            return
        self._advance(now)
        limit = self.limits.max_message_bytes
        if isinstance(data, str):
            size = len(data)  # characters: a lower bound of the UTF-8 size
            if size <= limit and not data.isascii():
                size = len(data.encode("utf-8"))
        else:
            size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > limit:
            self.close(
                CloseCode.TOO_BIG,
                f"message of {size} bytes is over the limit of {limit}",
            )
            return
        self._last_activity = now
        if not self._take_token(now):
            self._flood_strikes += 1
            if self._flood_strikes > self.limits.flood_tolerance:
                self.close(CloseCode.POLICY, "inbound message rate exceeded")
                return
            rate = self.limits.messages_per_second
            self._send(
                ErrorMessage(
                    code=ErrorCode.RATE_LIMITED,
                    message=f"over {rate:g} messages per second; message dropped",
                )
            )
            return
        self._flood_strikes = 0
        decoded = decode_client_message(data, binary=binary)
        if isinstance(decoded, DecodeProblem):
            self._bad(decoded.code, decoded.message, decoded.id)
            return
        if self.state is SessionState.AUTHENTICATING and not isinstance(decoded, LoginRequest):
            if len(self._deferred) >= MAX_PENDING_LOGIN:
                self._send(
                    ErrorMessage(
                        code=ErrorCode.LOGIN_PENDING,
                        message="too many messages while the login is checked; message dropped",
                        id=decoded.id,
                    )
                )
                return
            self._deferred.append(decoded)
            return
        self._dispatch(decoded, now, stream)

    def tick(self, now: float, stream: StreamState) -> None:
        """Run the timers: login timeout, idle timeout, heartbeats (and pings to a silent peer)."""
        if self.state is SessionState.CLOSED:
            return
        self._advance(now)
        if self.state is not SessionState.OPEN:
            if now >= self._login_deadline:
                self.close(
                    CloseCode.UNAUTHORIZED, f"no login within {self.limits.login_timeout:g} s"
                )
            return
        silent = now - self._last_activity
        if silent >= self.limits.idle_timeout:
            self.close(
                CloseCode.IDLE_TIMEOUT,
                f"no message or pong for {self.limits.idle_timeout:g} s",
            )
            return
        if now >= self._next_heartbeat:
            self._send(Heartbeat(epoch=stream.epoch, offset=stream.offset, time=stream.time))
            if silent >= self.limits.heartbeat_interval:
                self._actions.append(SendPing())
            self._next_heartbeat = now + self.limits.heartbeat_interval

    def pong_received(self, now: float) -> None:
        """A WebSocket pong (or any control frame from the client) arrived: it is alive."""
        if self.state is SessionState.CLOSED:
            return
        self._advance(now)
        self._last_activity = max(self._last_activity, now)

    def authenticate(
        self,
        record: KeyRecord | None,
        *,
        open_connections: int,
        now: float,
        stream: StreamState,
    ) -> None:
        """Accept or refuse the key (``None``: missing, unknown or revoked), via :func:`admit`.

        Accepted: ``welcome`` is queued, then the messages held during the login are handled.
        Refused: ``error`` and a :class:`Close` (4001, 4003 or 4008) are queued. The shell
        counts the connection against the key only when accepted, and must count it before
        its next await so that concurrent logins cannot both take the last connection.
        Ignored when the session is not waiting for a key (closed meanwhile, or already open).
        """
        if self.state not in (SessionState.AWAITING_LOGIN, SessionState.AUTHENTICATING):
            return
        self._advance(now)
        refusal = admit(record, open_connections=open_connections, limits=self.limits)
        if refusal is not None:
            self._deferred.clear()
            self._send(ErrorMessage(code=refusal.error, message=refusal.reason, id=self._login_id))
            self.close(refusal.code, refusal.reason)
            return
        assert record is not None  # admit() refuses None
        self.key = record
        self._connections_left = record.limits.max_connections - open_connections - 1
        self.state = SessionState.OPEN
        self._last_activity = max(self._last_activity, now)
        self._next_heartbeat = now + self.limits.heartbeat_interval
        self._send(self._welcome(record, stream))
        deferred, self._deferred = self._deferred, []
        for message in deferred:
            if self.state is SessionState.CLOSED:
                break
            self._dispatch(message, now, stream)

    def snapshot(
        self, action: Subscribe, *, quotes: Iterable[Quote] = (), bars: Iterable[Bar] = ()
    ) -> None:
        """Queue the snapshot for a :class:`Subscribe` whose ``snapshot`` is set.

        ``quotes``: the last quote of each symbol that has one (ticks and quotes channels);
        ``bars``: the forming bar of each symbol that has one, at the action's interval and
        side (bars channel). Call it right after registering, before any update is written.
        """
        if self.state is SessionState.CLOSED:
            return
        if action.channel is Channel.BARS:
            assert action.interval is not None and action.side is not None
            wire_bars = [
                WireBar(
                    bar.symbol,
                    action.interval,
                    action.side,
                    bar.start,
                    bar.open,
                    bar.high,
                    bar.low,
                    bar.close,
                    bar.ticks,
                    BarState.CLOSED if bar.complete else BarState.FORMING,
                )
                for bar in bars
            ]
            self._send(Snapshot(channel=action.channel, bars=wire_bars, id=action.request_id))
            return
        wire = [wire_quote(quote) for quote in quotes]
        if action.channel is Channel.QUOTES:
            for tick in wire:
                self.quotes.sent(tick.s, now=self._now)
        self._send(Snapshot(channel=action.channel, quotes=wire, id=action.request_id))

    def replay_finished(self, action: Subscribe) -> None:
        """The replay of ``action`` is written; live ticks follow: queue ``resume`` ``live``."""
        if self.state is SessionState.CLOSED or action.from_position is None:
            return
        self._send(
            Resume(
                status=ResumeStatus.LIVE,
                symbols=list(action.symbols),
                from_=str(action.from_position),
                position=str(action.position),
                id=action.request_id,
            )
        )

    def replay_failed(
        self, action: Subscribe, *, status: ResumeStatus, stream: StreamState
    ) -> None:
        """The ticks to replay for ``action`` could not be read (evicted meanwhile, new epoch).

        ``status`` is ``too_old`` or ``epoch_changed``; the subscription stays live after
        ``action.position``, and the client is told to fetch the gap over REST.
        """
        if status not in (ResumeStatus.TOO_OLD, ResumeStatus.EPOCH_CHANGED):
            raise ValueError(f"replay_failed needs too_old or epoch_changed, not {status}")
        if self.state is SessionState.CLOSED or action.from_position is None:
            return
        self._send(self._resume_gap(action, status, action.from_position, stream))

    def backlog(self, buffered: int, *, position: Position | None) -> Flow:
        """Apply the slow-consumer policy to ``buffered`` bytes waiting in the send buffer.

        Call it before writing a flush to the connection; ``position`` is the position of the
        last tick frame already written to it (None before the first). With ``limit`` =
        ``send_buffer_bytes`` and ``warn`` = ``lag_warning_fraction × limit``:

        * ``buffered > limit``: a lossless connection (one with a ticks subscription) gets a
          ``lag`` warning if it had none, then :class:`Close` 4009 whose reason carries
          ``position``: STOP. Any other connection: CONFLATE (it just gets fewer updates),
          until ``buffered > CONFLATED_OVERFLOW × limit`` (it has stopped reading even the
          held-back updates): :class:`Close` 4009, STOP.
        * ``buffered ≥ warn``: a lossless connection gets one ``lag`` warning per episode (the
          next once the buffer fell below ``warn / 2``): CONFLATE.
        * otherwise: OPEN.

        So a connection's buffer never holds more than the limit plus one flush.
        """
        if self.state is SessionState.CLOSED:
            return Flow.STOP
        limits = self.limits
        warn = limits.send_buffer_bytes * limits.lag_warning_fraction
        if buffered < warn / 2:  # the common case
            self._lag_warned = False
            return Flow.OPEN
        limit = limits.send_buffer_bytes
        lossless = self.lossless
        if buffered > limit:
            if not lossless:
                if buffered <= CONFLATED_OVERFLOW * limit:
                    return Flow.CONFLATE
                self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
                return Flow.STOP
            if not self._lag_warned:
                self._lag(buffered, position)
            where = f", resume from {position}" if position is not None else ""
            self.close(CloseCode.SLOW_CONSUMER, f"slow consumer{where}")
            return Flow.STOP
        if buffered >= warn:
            if lossless and not self._lag_warned:
                self._lag(buffered, position)
            return Flow.CONFLATE
        return Flow.OPEN

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Queue :class:`Close` and stop: later inputs are ignored. Idempotent."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self._deferred.clear()
        if self.debug:
            self.log.debug("closing with %d: %s", code, reason)
        self._actions.append(Close(int(code), _truncate(reason)))

    # -- internals --------------------------------------------------------------------------

    def _changed(self, channel: Channel) -> None:
        """Subscriptions on ``channel`` changed: drop what was derived from them."""
        self._symbols_cache.pop(channel, None)
        if channel is Channel.BARS:
            self._bars_cache = None

    def _advance(self, now: float) -> None:
        if now > self._now:
            self._now = now

    def _send(self, message: ServerMessage) -> None:
        self._out.append(Outgoing(self.codec.encode(message), self.codec.binary))

    def _take_token(self, now: float) -> bool:
        limits = self.limits
        elapsed = now - self._refilled
        if elapsed > 0:
            self._tokens = min(
                float(limits.burst), self._tokens + elapsed * limits.messages_per_second
            )
            self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _bad(self, code: ErrorCode, message: str, request_id: int | str | None) -> None:
        """Answer an invalid message; close with 4400 after too many in a row."""
        self._send(ErrorMessage(code=code, message=message, id=request_id))
        self._bad_in_a_row += 1
        if self._bad_in_a_row >= self.limits.max_bad_messages:
            self.close(CloseCode.PROTOCOL_ERROR, f"{self._bad_in_a_row} invalid messages in a row")

    def _lag(self, buffered: int, position: Position | None) -> None:
        self._lag_warned = True
        self._send(
            Lag(
                buffered=buffered,
                limit=self.limits.send_buffer_bytes,
                position=None if position is None else str(position),
            )
        )

    def _dispatch(self, message: ClientMessage, now: float, stream: StreamState) -> None:
        match message:
            case LoginRequest():
                self._login(message)
            case PingRequest():
                self._bad_in_a_row = 0
                self._send(Pong(time=stream.time, budget=self.budget(), id=message.id))
            case _ if self.state is not SessionState.OPEN:
                self._bad(
                    ErrorCode.NOT_AUTHENTICATED,
                    "send a login message with your API key first",
                    message.id,
                )
            case SubscribeRequest():
                self._subscribe(message, now, stream)
            case UnsubscribeRequest():
                self._unsubscribe(message)
            case SubscriptionsRequest():  # pragma: no branch - the union is exhausted
                self._bad_in_a_row = 0
                self._send(
                    Subscriptions(subscriptions=self._groups(), budget=self.budget(), id=message.id)
                )

    def _login(self, message: LoginRequest) -> None:
        if self.state is not SessionState.AWAITING_LOGIN:
            self._bad(
                ErrorCode.ALREADY_AUTHENTICATED,
                "this connection has a key already (or is checking one)",
                message.id,
            )
            return
        self._bad_in_a_row = 0
        self.state = SessionState.AUTHENTICATING
        self._login_id = message.id
        self._actions.append(Authenticate(message.key, message.id))

    def _welcome(self, record: KeyRecord, stream: StreamState) -> Welcome:
        limits = self.limits
        return Welcome(
            session=self.id,
            protocol=PROTOCOL_VERSION,
            key=record.id,
            encoding=self.encoding,
            encodings=list(Encoding),
            channels=list(Channel),
            intervals=list(Interval),
            epoch=stream.epoch,
            offset=stream.offset,
            heartbeat=limits.heartbeat_interval,
            limits=WelcomeLimits(
                max_subscriptions=limits.max_subscriptions,
                max_message_bytes=limits.max_message_bytes,
                messages_per_second=limits.messages_per_second,
                burst=limits.burst,
                max_quote_rate=limits.max_quote_rate,
                send_buffer_bytes=limits.send_buffer_bytes,
                idle_timeout=limits.idle_timeout,
            ),
            budget=self.budget(),
            id=self._login_id,
        )

    def _normalise(self, symbols: list[str]) -> list[str] | str:
        """Upper-cased, stripped, de-duplicated symbols in request order, or a problem."""
        if not symbols:
            return "`symbols` must not be empty"
        if len(symbols) > self.limits.max_subscriptions:
            return f"at most {self.limits.max_subscriptions} symbols per request"
        out: dict[str, None] = {}
        for raw in symbols:
            if len(raw) > MAX_SYMBOL_CHARS:
                return f"a symbol code has at most {MAX_SYMBOL_CHARS} characters"
            out[raw.strip().upper()] = None
        return list(out)

    def _subscribe(self, request: SubscribeRequest, now: float, stream: StreamState) -> None:
        channel = request.channel
        problem: str | None = None
        max_rate: float | None = None
        interval: Interval | None = None
        side: PriceSide | None = None
        from_position: Position | None = None
        if request.from_ is not None and channel is not Channel.TICKS:
            problem = "`from` applies to the ticks channel only"
        elif request.max_rate is not None and channel is not Channel.QUOTES:
            problem = "`max_rate` applies to the quotes channel only"
        elif (request.interval is not None or request.side is not None) and (
            channel is not Channel.BARS
        ):
            problem = "`interval` and `side` apply to the bars channel only"
        elif channel is Channel.QUOTES:
            max_rate = DEFAULT_QUOTE_RATE if request.max_rate is None else request.max_rate
            if not MIN_QUOTE_RATE <= max_rate <= self.limits.max_quote_rate:
                problem = (
                    f"`max_rate` must be between {MIN_QUOTE_RATE:g} and "
                    f"{self.limits.max_quote_rate:g} updates per second"
                )
        elif channel is Channel.BARS:
            interval = request.interval
            side = PriceSide.MID if request.side is None else request.side
            if interval is None:
                problem = "the bars channel needs `interval`: " + ", ".join(Interval)
        elif request.from_ is not None:
            try:
                from_position = Position.parse(request.from_)
            except ValueError:
                problem = "`from` must be EPOCH:OFFSET, two non-negative integers"
            else:
                if max(from_position.epoch, from_position.offset) >= 2**63:
                    problem = "`from` is out of range"
        symbols = self._normalise(request.symbols)
        if problem is None and isinstance(symbols, str):
            problem = symbols
        if problem is not None or isinstance(symbols, str):
            self._bad(ErrorCode.INVALID_REQUEST, problem or "", request.id)
            return
        self._bad_in_a_row = 0

        assert self.key is not None
        results: list[SymbolResult] = []
        accepted: list[str] = []
        for symbol in symbols:
            key: _SubKey = (channel, symbol, interval, side)
            reason: RefusalReason | None = None
            if symbol not in self._catalog:
                reason = RefusalReason.UNKNOWN
            elif not self._entitled(self.key, symbol):
                reason = RefusalReason.NOT_ENTITLED
            elif key in self._subs:
                reason = RefusalReason.ALREADY_SUBSCRIBED
            elif len(self._subs) >= self.limits.max_subscriptions:
                reason = RefusalReason.OVER_LIMIT
            if reason is not None:
                results.append(SymbolResult(symbol, SymbolStatus.REFUSED, reason))
                continue
            self._subs[key] = max_rate
            accepted.append(symbol)
            results.append(SymbolResult(symbol, SymbolStatus.ACCEPTED))
            if max_rate is not None:
                self.quotes.add(symbol, max_rate, now=now)
        if accepted:
            self._changed(channel)
        self._send(
            Ack(
                action="subscribe",
                channel=channel,
                results=results,
                subscriptions_left=self.limits.max_subscriptions - len(self._subs),
                id=request.id,
                interval=interval,
                side=side,
                max_rate=max_rate,
            )
        )
        if not accepted:
            return
        snapshot = request.snapshot is not False
        action = Subscribe(
            channel=channel,
            symbols=tuple(accepted),
            position=stream.position,
            request_id=request.id,
            snapshot=snapshot and from_position is None,
            max_rate=max_rate,
            interval=interval,
            side=side,
        )
        if from_position is not None:
            action = self._resume(action, from_position, stream)
        self._actions.append(action)

    def _resume(self, action: Subscribe, start: Position, stream: StreamState) -> Subscribe:
        """Answer a subscribe with ``from``; the action replays only when it can."""
        if start.epoch != stream.epoch:
            self._send(self._resume_gap(action, ResumeStatus.EPOCH_CHANGED, start, stream))
            return action
        if start.offset > stream.offset:
            self._send(self._resume_gap(action, ResumeStatus.AHEAD, start, stream))
            return action
        if start.offset == stream.offset:
            status = ResumeStatus.LIVE
        elif start.offset + 1 < stream.first_offset:
            self._send(self._resume_gap(action, ResumeStatus.TOO_OLD, start, stream))
            return action
        else:
            status = ResumeStatus.REPLAYING
            action = msgspec.structs.replace(action, from_position=start)
        self._send(
            Resume(
                status=status,
                symbols=list(action.symbols),
                from_=str(start),
                position=str(action.position),
                id=action.request_id,
            )
        )
        return action

    def _resume_gap(
        self, action: Subscribe, status: ResumeStatus, start: Position, stream: StreamState
    ) -> Resume:
        """A ``resume`` telling the client to fill ``(start, action.position]`` over REST."""
        live = action.position
        oldest: str | None = None
        match status:
            case ResumeStatus.TOO_OLD:
                oldest = f"{stream.epoch}:{max(stream.first_offset - 1, 0)}"
                why = f"the ticks after {start} are no longer kept (oldest position {oldest})"
            case ResumeStatus.EPOCH_CHANGED:
                why = f"{start} is from epoch {start.epoch}, the stream is at epoch {live.epoch}"
            case _:
                why = f"{start} is ahead of the stream ({live})"
        return Resume(
            status=status,
            symbols=list(action.symbols),
            from_=str(start),
            position=str(live),
            id=action.request_id,
            oldest=oldest,
            message=(
                f"{why}: fetch the missing ticks over REST (GET /v1/ticks/{{symbol}} from the "
                f"time of your last tick); live ticks continue after {live}"
            ),
        )

    def _unsubscribe(self, request: UnsubscribeRequest) -> None:
        channel = request.channel
        if (request.interval is not None or request.side is not None) and (
            channel is not Channel.BARS
        ):
            self._bad(
                ErrorCode.INVALID_REQUEST,
                "`interval` and `side` apply to the bars channel only",
                request.id,
            )
            return
        if request.symbols is None:
            symbols = list(dict.fromkeys(key[1] for key in self._subs if key[0] is channel))
        else:
            normalised = self._normalise(request.symbols)
            if isinstance(normalised, str):
                self._bad(ErrorCode.INVALID_REQUEST, normalised, request.id)
                return
            symbols = normalised
        self._bad_in_a_row = 0
        results: list[SymbolResult] = []
        removed: dict[tuple[Interval | None, PriceSide | None], list[str]] = {}
        for symbol in symbols:
            keys = self._matching(channel, symbol, request.interval, request.side)
            if not keys:
                results.append(
                    SymbolResult(symbol, SymbolStatus.REFUSED, RefusalReason.NOT_SUBSCRIBED)
                )
                continue
            for key in keys:
                del self._subs[key]
                removed.setdefault((key[2], key[3]), []).append(symbol)
            if channel is Channel.QUOTES:
                self.quotes.discard(symbol)
            results.append(SymbolResult(symbol, SymbolStatus.ACCEPTED))
        if removed:
            self._changed(channel)
        self._send(
            Ack(
                action="unsubscribe",
                channel=channel,
                results=results,
                subscriptions_left=self.limits.max_subscriptions - len(self._subs),
                id=request.id,
                interval=request.interval,
                side=request.side,
            )
        )
        for (interval, side), group in removed.items():
            self._actions.append(
                Unsubscribe(
                    channel=channel,
                    symbols=tuple(group),
                    request_id=request.id,
                    interval=interval,
                    side=side,
                )
            )

    def _matching(
        self, channel: Channel, symbol: str, interval: Interval | None, side: PriceSide | None
    ) -> list[_SubKey]:
        """The subscription keys of ``symbol`` on ``channel`` matching the filters (O(1))."""
        if channel is not Channel.BARS:
            key: _SubKey = (channel, symbol, None, None)
            return [key] if key in self._subs else []
        intervals = list(Interval) if interval is None else [interval]
        sides = list(PriceSide) if side is None else [side]
        return [
            key for i in intervals for p in sides if (key := (channel, symbol, i, p)) in self._subs
        ]

    def _groups(self) -> list[SubscriptionGroup]:
        groups: dict[_Group, list[str]] = {}
        for (channel, symbol, interval, side), max_rate in self._subs.items():
            groups.setdefault((channel, max_rate, interval, side), []).append(symbol)
        return [
            SubscriptionGroup(
                channel=channel, symbols=symbols, max_rate=max_rate, interval=interval, side=side
            )
            for (channel, max_rate, interval, side), symbols in groups.items()
        ]
