"""The native tick stream: a sans-I/O core and an asyncio shell that reconnects and resumes.

:class:`StreamCore` has no sockets and no clock: it builds the ``subscribe`` message, takes
decoded server messages and returns the ticks to deliver, after dropping replayed duplicates
(by offset) and checking each symbol's ``seq``. :class:`AsyncTickStream` moves messages, runs
the stall timer, and reconnects with :class:`~tickwire.client.Backoff` delays.

Delivery guarantee: ticks are delivered in offset order. The shell reads the next WebSocket
message only once every tick of the previous one was delivered, so the position it resumes
from (``from`` on every reconnect) is always the last position delivered to the caller: the
caller sees no gap and no duplicate across reconnects and server restarts.

Buffers are bounded: at most ``max_queue`` frames wait in the WebSocket library, and one
frame's ticks (or one REST gap fill, at most ``max_fill_ticks``) wait for the caller. A caller
that stops reading is eventually closed by the server (4009, or 4010 after 60 s of silence);
the stream then reconnects and resumes where the caller is.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Final, Literal

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from ..protocol.messages import (
    Ack,
    ErrorMessage,
    Heartbeat,
    Quotes,
    Resume,
    Ticks,
    Welcome,
    WireTick,
    decode_server_message,
)
from ._config import DEFAULT_BACKOFF, Backoff
from ._errors import (
    AuthenticationError,
    PositionTooOldError,
    SeqGapError,
    StallError,
    StreamError,
    SubscriptionError,
    TransportError,
)
from ._models import Position, Tick

__all__ = [
    "DEFAULT_STALL_FACTOR",
    "FATAL_ERRORS",
    "AsyncTickStream",
    "Channel",
    "GapFiller",
    "SeqGap",
    "StreamCore",
    "StreamState",
    "process_exception",
]

Channel = Literal["ticks", "quotes"]

DEFAULT_STALL_FACTOR: Final = 3.0
"""A stall is declared after this many heartbeat intervals without any message."""
DEFAULT_MAX_QUEUE: Final = 64
"""Frames the WebSocket library may hold before it stops reading the socket."""
DEFAULT_MAX_FILL_TICKS: Final = 1_000_000
"""The largest REST gap fill; a bigger gap raises PositionTooOldError."""
MAX_MESSAGE_BYTES: Final = 16 * 2**20

_AUTH_CLOSE_CODES: Final = {4001: 401, 4003: 403}
_FATAL_CLOSE_CODES: Final = {1009, 4400}  # our own requests were wrong: retrying cannot help
_UNFILLABLE: Final = "ahead"


class StreamState(enum.StrEnum):
    """Where the stream is."""

    CONNECTING = "connecting"
    """Opening a connection, or waiting for the subscription to be acknowledged."""
    REPLAYING = "replaying"
    """Catching up: the server replays the ticks missed since the resume position."""
    LIVE = "live"
    """Receiving live ticks."""
    BACKOFF = "backoff"
    """Waiting before the next reconnect attempt."""
    CLOSED = "closed"
    """Closed by the caller, or ended by an error."""


class SeqGap(msgspec.Struct, frozen=True):
    """A jump in a symbol's seq: ``expected`` was due, ``got`` arrived (same epoch)."""

    symbol: str
    epoch: int
    expected: int
    got: int


FATAL_ERRORS: Final[tuple[type[BaseException], ...]] = (
    AuthenticationError,
    SubscriptionError,
    PositionTooOldError,
    SeqGapError,
)
"""Errors that end a stream: retrying cannot fix them."""


def process_exception(exc: BaseException) -> BaseException | None:
    """Decide what an error does: None to reconnect, or the exception that ends the stream.

    Fatal: everything in :data:`FATAL_ERRORS`, any :class:`StreamError` that is not a
    :class:`StallError`, and unexpected errors (bugs). Retried: transport failures and stalls.
    """
    if isinstance(exc, FATAL_ERRORS):
        return exc
    if isinstance(exc, StallError | TransportError):
        return None
    return exc


def _translate(exc: BaseException) -> BaseException:
    """A websockets/OS error as an SDK error (the cause is chained by the caller)."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            code = "unauthorized" if status == 401 else "forbidden"
            return AuthenticationError(
                f"the stream refused the key (HTTP {status})", status=status, code=code
            )
        return TransportError(f"the stream upgrade was answered with HTTP {status}")
    if isinstance(exc, ConnectionClosed):
        close = exc.rcvd
        if close is not None and close.code in _AUTH_CLOSE_CODES:
            status = _AUTH_CLOSE_CODES[close.code]
            return AuthenticationError(
                close.reason or "the key was refused",
                status=status,
                code="unauthorized" if status == 401 else "forbidden",
            )
        if close is not None and close.code in _FATAL_CLOSE_CODES:
            return StreamError(f"the server closed the stream: {close.code} {close.reason}")
        return TransportError(f"the stream connection closed: {exc}")
    if isinstance(exc, InvalidURI):
        return StreamError(f"invalid stream URL: {exc}")
    if isinstance(exc, OSError | WebSocketException | EOFError | msgspec.DecodeError):
        return TransportError(f"the stream connection failed: {exc!r}")
    if isinstance(exc, TimeoutError) and not isinstance(exc, StallError):
        return TransportError("the stream connection timed out")
    return exc


def _tick(wire: WireTick) -> Tick:
    return Tick(wire.s, wire.t, wire.b, wire.a, wire.e, wire.o, wire.q)


class StreamCore:
    """The stream's protocol logic, without I/O: subscribe, dedupe, check seqs, track position.

    ``position`` is the last position delivered (the shell calls :meth:`delivered`); it is the
    ``from`` of the next subscription. Before the first tick it is the welcome position of the
    first connection, so even ticks that went by while subscribing are not missed.
    """

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        channel: Channel = "ticks",
        position: Position | None = None,
        on_gap: Callable[[SeqGap], object] | None = None,
    ) -> None:
        self.symbols = tuple(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
        if not self.symbols:
            raise ValueError("stream() needs at least one symbol")
        if channel not in ("ticks", "quotes"):
            raise ValueError(f"channel must be 'ticks' or 'quotes', not {channel!r}")
        if channel == "quotes" and position is not None:
            raise ValueError("only the ticks channel is resumable: from_ needs channel='ticks'")
        self.channel: Channel = channel
        self.position = position
        self.state = StreamState.CONNECTING
        self.heartbeat = 5.0
        self.on_gap = on_gap
        self.last_ts: int | None = None
        self.last_ticks: dict[str, Tick] = {}
        """The last tick delivered per symbol (where a REST gap fill starts)."""
        self._received: Position | None = position
        self._seqs: dict[str, tuple[int, int]] = {}
        self._request_id = 0
        self._subscribe_id = 0

    # -- outgoing ---------------------------------------------------------------------------

    def subscribe(self, welcome: Welcome) -> bytes:
        """The ``subscribe`` message for a fresh connection that sent ``welcome``."""
        self.heartbeat = welcome.heartbeat
        self._request_id += 1
        self._subscribe_id = self._request_id
        request: dict[str, Any] = {
            "action": "subscribe",
            "id": self._request_id,
            "channel": self.channel,
            "symbols": list(self.symbols),
        }
        if self.channel == "ticks":
            if self.position is None:
                self.position = self._received = Position(welcome.epoch, welcome.offset)
            request["from"] = str(self.position)
            self._received = self.position
        else:
            request["snapshot"] = False
        self.state = StreamState.CONNECTING
        return msgspec.json.encode(request)

    # -- incoming ---------------------------------------------------------------------------

    def receive(self, message: object) -> list[Tick]:
        """The ticks to deliver for one decoded server message, in offset order.

        Raises :class:`PositionTooOldError` on ``resume`` too_old / epoch_changed / ahead,
        :class:`SubscriptionError` on a refused symbol or request, :class:`SeqGapError` on a
        gap when no ``on_gap`` callback was given.
        """
        match message:
            case Ticks(ticks=wire):
                ticks = self.accept([_tick(w) for w in sorted(wire, key=_offset)])
                if self.state is StreamState.CONNECTING:
                    self.state = StreamState.LIVE
                return ticks
            case Quotes(quotes=wire):
                self.state = StreamState.LIVE
                return [_tick(w) for w in wire]
            case Heartbeat(epoch=epoch, offset=offset):
                # Every tick of a live subscription up to `offset` precedes the heartbeat, and
                # the shell reads a message only when the earlier ones are delivered.
                current = self.position
                if (
                    self.channel == "ticks"
                    and self.state is StreamState.LIVE
                    and current is not None
                    and current.epoch == epoch
                    and offset > current.offset
                ):
                    self.position = self._received = Position(epoch, offset)
                return []
            case Resume():
                return self._resume(message)
            case Ack(results=results, action="subscribe"):
                refused = {r.symbol: str(r.reason) for r in results if r.status != "accepted"}
                if refused:
                    shown = ", ".join(f"{s} ({r})" for s, r in refused.items())
                    raise SubscriptionError(f"symbols refused: {shown}", refused=refused)
                if self.channel == "quotes":
                    self.state = StreamState.LIVE
                return []
            case ErrorMessage(code=code, message=text, id=request_id):
                if request_id == self._subscribe_id:
                    raise SubscriptionError(f"subscribe refused: {code}: {text}")
                return []  # e.g. rate_limited for a request that was not ours to retry
            case _:
                return []  # lag warnings, pongs, and message types added later

    def accept(self, ticks: Iterable[Tick]) -> list[Tick]:
        """Drop ticks at or before the received position; check each symbol's seq."""
        out: list[Tick] = []
        for tick in ticks:
            received = self._received
            if received is not None and tick.epoch == received.epoch:
                if tick.offset <= received.offset:
                    continue  # a replayed duplicate
            last = self._seqs.get(tick.symbol)
            if last is not None and last[0] == tick.epoch:
                if tick.seq <= last[1]:
                    continue
                if tick.seq != last[1] + 1:
                    gap = SeqGap(tick.symbol, tick.epoch, last[1] + 1, tick.seq)
                    if self.on_gap is None:
                        raise SeqGapError(
                            gap.symbol, epoch=gap.epoch, expected=gap.expected, got=gap.got
                        )
                    self.on_gap(gap)
            self._seqs[tick.symbol] = (tick.epoch, tick.seq)
            if received is None or tick.epoch != received.epoch or tick.offset > received.offset:
                self._received = tick.position
            out.append(tick)
        return out

    def delivered(self, tick: Tick) -> None:
        """Record that ``tick`` reached the caller."""
        if self.channel == "ticks":
            self.position = tick.position
        self.last_ts = tick.ts
        self.last_ticks[tick.symbol] = tick

    def resumed_at(self, position: Position) -> None:
        """After a REST gap fill was delivered: the live stream continues after ``position``."""
        self.position = self._received = position
        self.state = StreamState.LIVE

    def _resume(self, message: Resume) -> list[Tick]:
        if message.id is not None and message.id != self._subscribe_id:
            return []
        if message.status == "replaying":
            self.state = StreamState.REPLAYING
        elif message.status == "live":
            self.state = StreamState.LIVE
        else:
            raise PositionTooOldError(
                message.message or f"cannot resume from {message.from_}: {message.status}",
                reason=str(message.status),
                position=message.position,
                oldest=message.oldest,
                symbols=tuple(message.symbols),
            )
        return []


def _offset(wire: WireTick) -> int:
    return wire.o


GapFiller = Callable[[str, Tick, Position, int], Awaitable[list[Tick] | None]]
"""Fetches one symbol's ticks after the given last tick, up to a position (the REST fill):
at most the given number of ticks, or None when the gap holds more than that."""


class AsyncTickStream:
    """An async iterator of :class:`Tick`, over a connection that heals itself.

    Use it with ``async with`` (or call :meth:`aclose`). See the module docstring for the
    delivery guarantee and the buffer policy.
    """

    fatal_errors: tuple[type[BaseException], ...] = FATAL_ERRORS

    def __init__(
        self,
        url: str,
        symbols: Iterable[str],
        *,
        key: str | None = None,
        channel: Channel = "ticks",
        from_: str | Position | None = None,
        fill_gaps: bool = False,
        gap_filler: GapFiller | None = None,
        on_gap: Callable[[SeqGap], object] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        open_timeout: float = 10.0,
        stall_timeout: float | None = None,
        stall_factor: float = DEFAULT_STALL_FACTOR,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_fill_ticks: int = DEFAULT_MAX_FILL_TICKS,
        process_exception: Callable[[BaseException], BaseException | None] = process_exception,
        rng: random.Random | None = None,
    ) -> None:
        position = None if from_ is None else Position.parse(from_)
        self._core = StreamCore(symbols, channel=channel, position=position, on_gap=on_gap)
        if fill_gaps and gap_filler is None:
            raise ValueError("fill_gaps=True needs a gap_filler (use AsyncClient.stream)")
        self._url = url.rstrip("/") + "/v1/stream"
        self._headers = {"X-API-Key": key} if key else {}
        self._fill_gaps = fill_gaps
        self._gap_filler = gap_filler
        self._backoff = backoff
        self._rng = rng
        self._delays: Iterator[float] = backoff.delays(rng)
        self._attempts = 0
        self._open_timeout = open_timeout
        self._stall_timeout = stall_timeout
        self._stall_factor = stall_factor
        self._max_queue = max_queue
        self._max_fill_ticks = max_fill_ticks
        self._process_exception = process_exception
        self._ws: ClientConnection | None = None
        self._pending: deque[Tick | Position] = deque()
        self._closed = False
        self.reconnects = 0
        """How many times the stream reconnected."""
        self.gaps_filled = 0
        """How many ticks came from REST gap fills."""

    # -- what callers look at ---------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """The subscribed symbols, upper-case."""
        return self._core.symbols

    @property
    def state(self) -> StreamState:
        """connecting, replaying, live, backoff or closed."""
        return StreamState.CLOSED if self._closed else self._core.state

    @property
    def position(self) -> Position | None:
        """The last position delivered: pass it as ``from_`` to continue in a later stream."""
        return self._core.position

    @property
    def lag(self) -> float | None:
        """Seconds between now and the last delivered tick's time (None before the first)."""
        last = self._core.last_ts
        return None if last is None else (time.time_ns() - last) / 1e9

    @property
    def stall_timeout(self) -> float:
        """Seconds without any message after which the connection is dropped and reopened."""
        if self._stall_timeout is not None:
            return self._stall_timeout
        return self._stall_factor * self._core.heartbeat

    # -- iteration --------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Tick]:
        return self

    async def __anext__(self) -> Tick:
        while True:
            if self._pending:
                item = self._pending.popleft()
                if isinstance(item, Position):
                    self._core.resumed_at(item)  # an empty fill
                    continue
                self._core.delivered(item)
                while self._pending:  # a marker right after the fill's last tick
                    marker = self._pending[0]
                    if not isinstance(marker, Position):
                        break
                    self._pending.popleft()
                    self._core.resumed_at(marker)
                return item
            if self._closed:
                raise StopAsyncIteration
            try:
                ws = self._ws if self._ws is not None else await self._open()
                try:
                    raw = await asyncio.wait_for(ws.recv(), self.stall_timeout)
                except TimeoutError:
                    raise StallError(
                        f"no message for {self.stall_timeout:g} s (heartbeats stopped)"
                    ) from None
                message = decode_server_message(raw, binary=isinstance(raw, bytes))
                try:
                    ticks = self._core.receive(message)
                except PositionTooOldError as exc:
                    if not self._fill_gaps or exc.reason == _UNFILLABLE:
                        raise
                    await self._fill(exc)
                    continue
                if ticks:
                    self._pending.extend(ticks)
                    self._attempts = 0
                    self._delays = self._backoff.delays(self._rng)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is classified, then retried or raised
                await self._recover(exc)

    async def _open(self) -> ClientConnection:
        self._core.state = StreamState.CONNECTING
        ws = await connect(
            self._url,
            additional_headers=self._headers,
            open_timeout=self._open_timeout,
            max_size=MAX_MESSAGE_BYTES,
            max_queue=self._max_queue,
            close_timeout=2.0,
            user_agent_header="tickwire-client",
        )
        self._ws = ws
        raw = await asyncio.wait_for(ws.recv(), self._open_timeout)
        welcome = decode_server_message(raw, binary=isinstance(raw, bytes))
        if isinstance(welcome, ErrorMessage):
            raise AuthenticationError(welcome.message, status=401, code=str(welcome.code))
        if not isinstance(welcome, Welcome):
            raise TransportError(f"expected welcome, got {type(welcome).__name__}")
        await ws.send(self._core.subscribe(welcome).decode())
        return ws

    async def _recover(self, exc: Exception) -> None:
        """Drop the connection; reconnect after a backoff delay, or end the stream."""
        await self._drop()
        error = _translate(exc)
        fatal = self._process_exception(error)
        if fatal is None and self._backoff.max_attempts is not None:
            if self._attempts >= self._backoff.max_attempts:
                fatal = error
        if fatal is not None:
            self._closed = True
            self._core.state = StreamState.CLOSED
            if fatal is exc:
                raise exc
            raise fatal from exc
        self._attempts += 1
        self.reconnects += 1
        self._core.state = StreamState.BACKOFF
        await asyncio.sleep(next(self._delays))

    async def _fill(self, exc: PositionTooOldError) -> None:
        """Fetch each symbol's ticks after its last delivered tick up to the live position."""
        assert self._gap_filler is not None
        until = Position.parse(exc.position)
        fill: list[Tick] = []
        for symbol in exc.symbols or self._core.symbols:
            last = self._core.last_ticks.get(symbol)
            if last is None:
                raise PositionTooOldError(
                    f"{exc} (no tick of {symbol} was delivered yet, so the gap cannot be "
                    "located in time: fetch it over REST)",
                    reason=exc.reason,
                    position=exc.position,
                    oldest=exc.oldest,
                    symbols=exc.symbols,
                ) from exc
            got = await self._gap_filler(symbol, last, until, self._max_fill_ticks - len(fill))
            if got is None or len(fill) + len(got) > self._max_fill_ticks:
                raise PositionTooOldError(
                    f"{exc} (the gap is over {self._max_fill_ticks} ticks)",
                    reason=exc.reason,
                    position=exc.position,
                    oldest=exc.oldest,
                    symbols=exc.symbols,
                ) from exc
            fill.extend(got)
        fill.sort(key=lambda t: (t.ts, t.epoch, t.offset))
        self._core.state = StreamState.REPLAYING
        self._pending.extend(self._core.accept(fill))
        self._pending.append(until)
        self.gaps_filled += len(fill)

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await ws.close()
            except Exception:  # the connection is being thrown away anyway
                pass

    async def aclose(self) -> None:
        """Close the connection; iteration then stops."""
        self._closed = True
        self._pending.clear()
        self._core.state = StreamState.CLOSED
        await self._drop()

    async def __aenter__(self) -> AsyncTickStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
