"""The sans-I/O core of the TraderMade streams: one :class:`TraderMadeSession` per connection.

The session knows no socket, no event loop and no clock. The asyncio shell
(:mod:`.tradermade_stream`) calls it and acts on what it leaves behind:

Inputs:

* :meth:`TraderMadeSession.start`: the WebSocket is open;
* :meth:`TraderMadeSession.receive`: one complete client message, with ``now`` (monotonic
  seconds, for the inbound rate limit) and ``position`` (the last bus offset whose ticks the
  connection has been given, or will start after);
* :meth:`TraderMadeSession.delivered`: the shell has written the ticks up to an offset;
* :meth:`TraderMadeSession.finish`: the connection is gone (releases its connection slot).

Outputs, read after every input:

* :meth:`TraderMadeSession.data_to_send`: text payloads to send, in order;
* :attr:`TraderMadeSession.close_with`: ``(code, reason)`` once the connection must close;
* :attr:`TraderMadeSession.symbols`, :attr:`TraderMadeSession.fmt` and
  :attr:`TraderMadeSession.skip`: what the shell streams (see
  :func:`~.tradermade_frames.select_frames`).

Dialects. The first JSON object a client sends decides: one with ``action`` speaks V2
(``login``, ``subscribe``, ``unsubscribe``), one with ``userKey`` speaks the legacy feed. Both
are served on every path; the path only picks how a message that decides nothing is answered
(``default``). See ``docs/tradermade-streams.md`` for every reply.

Guarantees:

* nothing a client sends makes an input raise; bad input gets an answer in the client's dialect
  (legacy: a plain-text line; V2: an ``error`` frame) and, when it persists, a close;
* a key holds a connection slot only between a successful login and :meth:`finish`, and never
  two slots;
* after :attr:`close_with` is set the session ignores every input;
* everything is bounded: subscriptions (``max_symbols``), message size
  (``max_message_bytes``), the inbound rate (a token bucket of ``message_burst`` refilled at
  ``messages_per_second``), consecutive invalid messages (``max_errors``), and the output of
  one input (one answer, plus one ``LAST_QUOTE`` per accepted symbol).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec

from ..access.keys import KeyRecord, entitled
from ..catalog import Catalog
from ..model import Kind, Quote
from .tradermade_frames import (
    MAX_CODE_CHARS,
    ErrorFrame,
    LoginOk,
    LoginReject,
    StreamSymbol,
    SubAck,
    TickFormat,
    UnsubAck,
    encode_control,
    resolve_symbol,
    v2_payload,
)

__all__ = [
    "CONNECTED",
    "INVALID_KEY",
    "TOO_MANY_CONNECTIONS",
    "CloseCode",
    "ConnectionSlots",
    "Dialect",
    "SessionLimits",
    "TraderMadeSession",
]

log = logging.getLogger("tickwire.gateway.tradermade")

CONNECTED: Final = b"Connected"
"""The plain-text greeting TraderMade sends when a socket opens."""
TOO_MANY_CONNECTIONS: Final = b"User Key Used to many times"
"""TraderMade's exact reply (sic) when a key has all its connections open."""
INVALID_KEY: Final = b"Invalid User Key"
"""Legacy reply to an unknown or revoked key (TraderMade's own is undocumented)."""
STREAM_DISABLED: Final = b"Streaming not enabled for this User Key"
LEGACY_USAGE: Final = 'Invalid request: send {"userKey":"<key>","symbol":"EURUSD,GBPUSD"}'
MAX_NOTICE_SYMBOLS: Final = 20


class CloseCode(enum.IntEnum):
    """Close codes of the TraderMade streams: the same numbers as the native protocol's."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """The server is shutting down."""
    TOO_BIG = 1009
    """A message larger than ``max_message_bytes``."""
    INTERNAL_ERROR = 1011
    UNAUTHORIZED = 4001
    """An unknown or revoked key, or no login within ``login_timeout``."""
    FORBIDDEN = 4003
    """The key may not use the stream."""
    TOO_MANY_CONNECTIONS = 4008
    """The key has all its connections open."""
    SLOW_CONSUMER = 4009
    """The client read too slowly: its send buffer passed ``write_buffer_bytes``."""
    PROTOCOL_ERROR = 4400
    """Too many invalid messages in a row."""


class Dialect(enum.Enum):
    """Which TraderMade protocol a connection speaks."""

    LEGACY = "legacy"
    V2 = "v2"


class ConnectionSlots(Protocol):
    """Counts open connections per key (the shell's ``ConnectionCounter``)."""

    def acquire(self, key_id: str, limit: int) -> bool:
        """Take a slot for ``key_id`` if fewer than ``limit`` are taken; True if taken."""

    def release(self, key_id: str) -> None:
        """Give one slot of ``key_id`` back."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionLimits:
    """Per-connection bounds of the protocol core (defaults in ``docs/tradermade-streams.md``)."""

    max_symbols: int = 200
    """Subscriptions one connection may hold (V2 ``symbol_limit``)."""
    max_message_bytes: int = 64 * 1024
    """Largest client message; a larger one closes the connection (1009)."""
    messages_per_second: float = 20.0
    """Sustained inbound messages per second."""
    message_burst: int = 50
    """Inbound messages allowed at once after a quiet period."""
    max_errors: int = 20
    """Invalid messages in a row before the connection is closed (4400)."""

    def __post_init__(self) -> None:
        if self.max_symbols < 1 or self.max_message_bytes < 64 or self.max_errors < 1:
            raise ValueError(f"invalid session limits: {self!r}")
        if not (self.messages_per_second > 0 and self.message_burst >= 1):
            raise ValueError(f"invalid inbound rate: {self!r}")


# -- client messages --------------------------------------------------------------------------


class _LegacyLogin(msgspec.Struct):
    key: str = msgspec.field(name="userKey")
    symbol: str | list[str] = ""


class _Login(msgspec.Struct, tag_field="action", tag="login"):
    key: str
    fmt: str = "JSON"
    send_ladder: bool = False


class _Subscribe(msgspec.Struct, tag_field="action", tag="subscribe"):
    symbols: str | list[str]
    send_last: bool = False


class _Unsubscribe(msgspec.Struct, tag_field="action", tag="unsubscribe"):
    symbols: str | list[str]


_V2Request = _Login | _Subscribe | _Unsubscribe
_ACTIONS: Final = ("login", "subscribe", "unsubscribe")
_FORMATS: Final = {f.value: f for f in (TickFormat.JSON, TickFormat.CSV, TickFormat.SSV)}


def _shown(text: str) -> str:
    return text if len(text) <= MAX_CODE_CHARS * 2 else text[: MAX_CODE_CHARS * 2] + "…"


def _symbol_list(value: str | list[str]) -> list[str]:
    """Upper-cased, stripped, non-empty items of a comma list or a list, first occurrence kept."""
    items = value.split(",") if isinstance(value, str) else value
    seen: dict[str, None] = {}
    for item in items:
        text = item.strip().upper()
        if text:
            seen.setdefault(text, None)
    return list(seen)


class TraderMadeSession:
    """One TraderMade stream connection's protocol state (see the module docstring).

    ``verify`` checks a key (in memory, e.g. :meth:`KeyStore.verify`); ``quote`` is the live
    state's last quote of a catalogue symbol, for ``send_last``.
    """

    def __init__(
        self,
        *,
        catalog: Catalog,
        verify: Callable[[str], KeyRecord | None],
        slots: ConnectionSlots,
        quote: Callable[[str], Quote | None],
        default: Dialect = Dialect.LEGACY,
        limits: SessionLimits | None = None,
    ) -> None:
        self.catalog = catalog
        self.limits = limits or SessionLimits()
        self.default = default
        self.dialect: Dialect | None = None
        self.key: KeyRecord | None = None
        self.fmt = TickFormat.LEGACY
        self._symbols: dict[str, StreamSymbol] = {}
        self.skip: dict[str, int] = {}
        """Per code, an offset already sent as ``LAST_QUOTE``: later ticks only."""
        self._symbols_key: frozenset[str] | None = None
        self.close_with: tuple[CloseCode, str] | None = None
        self._verify = verify
        self._slots = slots
        self._quote = quote
        self._held: str | None = None
        self._out: list[bytes] = []
        self._errors = 0
        self._tokens = float(self.limits.message_burst)
        self._refilled: float | None = None
        self._cfds = any(s.kind is Kind.CFD for s in catalog.values())

    # -- inputs ---------------------------------------------------------------------------------

    def start(self) -> None:
        """The socket is open: greet with ``Connected`` (plain text), as TraderMade does."""
        self._out.append(CONNECTED)

    @property
    def logged_in(self) -> bool:
        """A key has been accepted (and holds a connection slot)."""
        return self.key is not None

    def receive(self, payload: bytes, *, now: float, position: int) -> None:
        """Handle one complete client message (text or binary)."""
        if self.close_with is not None:
            return
        if len(payload) > self.limits.max_message_bytes:
            self._error(f"message larger than {self.limits.max_message_bytes} bytes")
            self._close(CloseCode.TOO_BIG, "message too big")
            return
        if not self._take_token(now):
            self._error("too many messages: slow down")
            self._invalid()
            return
        try:
            message = msgspec.json.decode(payload)
        except (msgspec.DecodeError, RecursionError):  # RecursionError: nested too deep
            self._reject("invalid JSON")
            return
        if not isinstance(message, dict):
            self._reject("a message must be a JSON object")
            return
        if self.dialect is None:
            if "action" in message:
                self.dialect = Dialect.V2
                self.fmt = TickFormat.JSON
            elif "userKey" in message:
                self.dialect = Dialect.LEGACY
        if self.dialect is Dialect.V2:
            self._v2(message, position)
        elif self.dialect is Dialect.LEGACY:
            self._legacy(message)
        else:
            self._reject("unknown message: send a login first")

    @property
    def symbols(self) -> Mapping[str, StreamSymbol]:
        """Subscribed codes, in subscription order (read-only: it changes only by messages)."""
        return self._symbols

    def _replace_symbols(self, symbols: dict[str, StreamSymbol]) -> None:
        """The one way the subscriptions change: what is derived from them is dropped too."""
        self._symbols = symbols
        self._symbols_key = None

    @property
    def symbols_key(self) -> frozenset[str]:
        """The subscribed codes as a set (cached until the subscriptions change): connections
        with equal keys and the same format get the same tick bytes."""
        key = self._symbols_key
        if key is None:
            key = self._symbols_key = frozenset(self._symbols)
        return key

    def delivered(self, offset: int) -> None:
        """The ticks up to ``offset`` are written: forget the skips they have passed."""
        if self.skip:
            self.skip = {code: floor for code, floor in self.skip.items() if floor > offset}

    def finish(self) -> None:
        """The connection is gone: give its slot back. Idempotent."""
        if self._held is not None:
            self._slots.release(self._held)
            self._held = None
        if self.close_with is None:
            self.close_with = (CloseCode.NORMAL, "")

    # -- outputs --------------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Text payloads to send, in order (the list is handed over)."""
        out, self._out = self._out, []
        return out

    # -- helpers --------------------------------------------------------------------------------

    def _take_token(self, now: float) -> bool:
        limits = self.limits
        if self._refilled is not None:
            elapsed = max(0.0, now - self._refilled)
            self._tokens = min(
                float(limits.message_burst), self._tokens + elapsed * limits.messages_per_second
            )
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _close(self, code: CloseCode, reason: str) -> None:
        if self.close_with is None:
            self.close_with = (code, reason)

    def _error(self, reason: str) -> None:
        if (self.dialect or self.default) is Dialect.V2:
            self._out.append(encode_control(ErrorFrame(reason)))
        else:
            self._out.append(reason.encode())

    def _invalid(self) -> None:
        self._errors += 1
        if self._errors >= self.limits.max_errors:
            self._close(CloseCode.PROTOCOL_ERROR, "too many invalid messages")

    def _reject(self, reason: str) -> None:
        """An invalid message: answer it, and count it."""
        if (self.dialect or self.default) is Dialect.LEGACY:
            reason = f"{reason}. {LEGACY_USAGE}"
        self._error(reason)
        self._invalid()

    def _admit(self, key: str) -> tuple[KeyRecord | None, str, CloseCode]:
        """Verify ``key`` and take a connection slot: the record, or None and why not."""
        record = self._verify(key)
        if record is None:
            return None, "invalid key", CloseCode.UNAUTHORIZED
        if not record.entitlements.stream:
            return None, "streaming not enabled for this key", CloseCode.FORBIDDEN
        if self._held != record.id:
            if not self._slots.acquire(record.id, record.limits.max_connections):
                return None, TOO_MANY_CONNECTIONS.decode(), CloseCode.TOO_MANY_CONNECTIONS
            if self._held is not None:
                self._slots.release(self._held)
            self._held = record.id
        return record, "", CloseCode.NORMAL

    def _resolve(self, record: KeyRecord, code: str) -> tuple[StreamSymbol | None, str | None]:
        """``(symbol, None)``, or ``(None, reason)`` with reason None for an unknown code."""
        symbol = resolve_symbol(self.catalog, code)
        if symbol is None:
            return None, None
        if not entitled(record, symbol.source):
            return None, "not entitled"
        return symbol, None

    # -- legacy -------------------------------------------------------------------------------

    def _legacy(self, message: dict[str, Any]) -> None:
        try:
            login = msgspec.convert(message, _LegacyLogin)
        except msgspec.ValidationError as exc:
            self._reject(f"invalid login: {exc}")
            return
        record, why, code = self._admit(login.key)
        if record is None:
            if code is CloseCode.TOO_MANY_CONNECTIONS:
                self._out.append(TOO_MANY_CONNECTIONS)
            elif code is CloseCode.FORBIDDEN:
                self._out.append(STREAM_DISABLED)
            else:
                self._out.append(INVALID_KEY)
            self._close(code, why)
            return
        self.key = record
        self._errors = 0
        codes = _symbol_list(login.symbol)
        if not codes:
            self._error('no symbol given: send a comma list such as "symbol":"EURUSD,GBPUSD"')
            self._replace_symbols({})
            self._invalid()
            return
        accepted: dict[str, StreamSymbol] = {}
        problems: list[str] = []
        for text in codes:
            symbol, reason = self._resolve(record, text)
            if symbol is None:
                problems.append(f"{_shown(text)} ({reason or 'unknown'})")
            elif len(accepted) >= self.limits.max_symbols:
                problems.append(f"{text} (over the limit of {self.limits.max_symbols})")
            else:
                accepted[text] = symbol
        self._replace_symbols(accepted)  # a new login replaces the list, as a reconnect would
        self.skip = {}
        if problems:
            shown = ", ".join(problems[:MAX_NOTICE_SYMBOLS])
            more = len(problems) - MAX_NOTICE_SYMBOLS
            self._error(
                f"Symbols not available: {shown}" + (f" and {more} more" if more > 0 else "")
            )

    # -- V2 -------------------------------------------------------------------------------------

    def _v2(self, message: dict[str, Any], position: int) -> None:
        action = message.get("action")
        if action not in _ACTIONS:
            self._reject(
                f"unknown action {_shown(str(action))!r}: use login, subscribe, unsubscribe"
            )
            return
        try:
            request = msgspec.convert(message, _V2Request)
        except msgspec.ValidationError as exc:
            self._reject(f"invalid {action}: {exc}")
            return
        match request:
            case _Login():
                self._v2_login(request)
            case _Subscribe():
                self._v2_subscribe(request, position)
            case _Unsubscribe():
                self._v2_unsubscribe(request)

    def _v2_login(self, login: _Login) -> None:
        if self.key is not None:
            self._reject("already logged in")
            return
        fmt = _FORMATS.get(login.fmt.strip().upper())
        if fmt is None:
            self._out.append(
                encode_control(
                    LoginReject(f"unsupported fmt {_shown(login.fmt)!r}: JSON, CSV or SSV")
                )
            )
            self._invalid()
            return
        record, why, code = self._admit(login.key)
        if record is None:
            self._out.append(encode_control(LoginReject(why)))
            self._close(code, why)
            return
        self.key, self.fmt, self._errors = record, fmt, 0
        self._out.append(
            encode_control(LoginOk(self.limits.max_symbols, self._cfds, trader_ladder=False))
        )

    def _v2_codes(self, value: str | list[str]) -> list[tuple[str, str | None]]:
        """``(label, code)`` per requested symbol; code None when the channel is not QUOTE."""
        out: list[tuple[str, str | None]] = []
        for label in _symbol_list(value):
            code, _, channel = label.partition(":")
            out.append((label, code.strip() if channel.strip() in ("", "QUOTE") else None))
        return out

    def _v2_subscribe(self, request: _Subscribe, position: int) -> None:
        record = self.key
        if record is None:
            self._reject("not logged in: send a login first")
            return
        self._errors = 0
        accepted: list[str] = []
        denied: list[str] = []
        reasons: dict[str, str] = {}
        invalid: list[str] = []
        last: list[StreamSymbol] = []
        for label, code in self._v2_codes(request.symbols):
            symbol, reason = (None, None) if code is None else self._resolve(record, code)
            if symbol is None:
                if reason is None:
                    invalid.append(_shown(label))
                else:
                    denied.append(label)
                    reasons[label] = reason
                continue
            symbols = self._symbols
            if symbol.code not in symbols and len(symbols) >= self.limits.max_symbols:
                denied.append(label)
                reasons[label] = f"symbol limit of {self.limits.max_symbols} reached"
                continue
            if symbol.code not in symbols:
                self._replace_symbols({**symbols, symbol.code: symbol})
            accepted.append(label)
            if request.send_last and symbol not in last:
                last.append(symbol)
        self._out.append(encode_control(SubAck(accepted, denied, reasons, invalid)))
        for symbol in last:
            self._last_quote(symbol, position)

    def _last_quote(self, symbol: StreamSymbol, position: int) -> None:
        """Send the live state's last quote of ``symbol`` as ``LAST_QUOTE``, if there is one.

        Prices are made as for ticks (an inverse as :func:`tickwire.rates.derive_quote` makes
        it). Ticks up to that quote's offset are then skipped, so no QUOTE older than (or equal
        to) the LAST_QUOTE follows it.
        """
        source = self._quote(symbol.source)
        if source is None or (symbol.inverted and (source.bid <= 0 or source.ask <= 0)):
            return
        bid, ask = source.bid, source.ask
        self._out.append(v2_payload(symbol, source.ts, bid, ask, self.fmt, "LAST_QUOTE"))
        if source.offset > position:
            self.skip[symbol.code] = max(self.skip.get(symbol.code, 0), source.offset)

    def _v2_unsubscribe(self, request: _Unsubscribe) -> None:
        if self.key is None:
            self._reject("not logged in: send a login first")
            return
        self._errors = 0
        for _, code in self._v2_codes(request.symbols):
            if code is not None:
                if code in self._symbols:
                    self._replace_symbols({c: s for c, s in self._symbols.items() if c != code})
                self.skip.pop(code, None)
        self._out.append(encode_control(UnsubAck()))
