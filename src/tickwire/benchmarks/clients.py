"""The measuring clients: one asyncio protocol per way of receiving ticks, bytes counted exactly.

Every client talks to the server over its own TCP connection with a hand-written protocol
(:mod:`.wire`), so :attr:`Counters.bytes_in` and :attr:`Counters.bytes_out` are exactly the bytes
of the application protocol in each direction: HTTP request and response heads, chunked
framing, WebSocket frame headers and masks, payloads. TCP/IP headers are not included.

Two kinds of streaming clients keep the load generator cheap at high client counts:

* **observers** keep every received chunk with its receipt time (``time.time_ns()``) and decode
  it only after the measurement (:meth:`StreamClient.analyze`), so decoding never delays
  receipt;
* **counters** (every other streaming client) never decode a tick: they count ticks and messages
  by searching the raw bytes for a marker (``{"s":``, ``{"symbol":`` ...) in C.

REST pollers decode every answer as it arrives (the request rate bounds that work) and record the
first sight of each quote. All clients keep monotonic counters; the orchestrator snapshots them
at the start and the end of the measurement window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, cast
from urllib.parse import quote

import msgspec

from ..protocol.messages import (
    JSON_ENCODER,
    Ack,
    Channel,
    ErrorMessage,
    SubscribeRequest,
    SymbolStatus,
    Welcome,
    decode_server_message,
)
from .wire import (
    MAX_HEAD,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ChunkedDecoder,
    FrameReader,
    HttpResponseReader,
    MarkerCounter,
    ProtocolError,
    SseReader,
    http_get,
    parse_head,
    ws_client_frame,
    ws_upgrade_request,
)

__all__ = [
    "METHODS",
    "Counters",
    "Endpoint",
    "Method",
    "RestPoller",
    "Seen",
    "StreamClient",
    "TickKey",
]

Method = Literal["rest-1s", "rest-fast", "ws-ticks", "ws-quotes", "sse", "feedadv"]
METHODS: Final[tuple[Method, ...]] = (
    "rest-1s",
    "rest-fast",
    "ws-ticks",
    "ws-quotes",
    "sse",
    "feedadv",
)

Seen = tuple[str, int, int, int]
"""One first sight of a tick: ``(symbol, seq, tick time ns, receipt time ns)``."""

TickKey = tuple[str, int, float, float]
"""How a legacy ``/feedadv`` tick is matched to a journaled one: ``(symbol, ts ms, bid, ask)``."""

KEEPALIVE_SECONDS: Final = 20.0
"""Native stream clients send an application ``ping`` this often (the server's idle timeout is
60 s of client silence; counting clients never parse frames, so they never answer a ping)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the server under test listens, and the key to use."""

    host: str
    http_port: int
    stream_host: str
    stream_port: int
    key: str


@dataclass(slots=True)
class Counters:
    """Monotonic counters of one client; snapshot them to measure a window."""

    bytes_in: int = 0
    bytes_out: int = 0
    ticks: int = 0
    """Ticks delivered: stream ticks received, or (REST) quotes not seen before by this client."""
    messages: int = 0
    """Stream messages (frames or SSE events) with ticks received, or REST answers received."""
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        """Count one error of ``kind`` (an HTTP status, a close code, ``lost`` ...)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def snapshot(self) -> tuple[int, int, int, int]:
        """``(bytes_in, bytes_out, ticks, messages)`` now."""
        return self.bytes_in, self.bytes_out, self.ticks, self.messages


# -- REST polling -------------------------------------------------------------------------------


class _Quote(msgspec.Struct):
    symbol: str
    ts: int
    seq: int


class _Quotes(msgspec.Struct):
    quotes: list[_Quote]


_quotes_decoder: Final = msgspec.json.Decoder(_Quotes)


class RestPoller(asyncio.Protocol):
    """Polls ``GET /v1/quotes?symbols=…`` on one keep-alive connection.

    Requests start on a fixed schedule (``phase + k × interval``, never more than one in flight);
    when an answer comes later than the next slot, the next request goes out at once. Each
    answer's quotes are compared with the last ones this client saw: a quote with a new ``seq``
    is a tick seen for the first time, recorded as a :data:`Seen` with the answer's receipt time.
    Non-200 answers (429 ...) are counted in :attr:`Counters.errors`.
    """

    def __init__(self, endpoint: Endpoint, symbols: list[str], *, interval: float) -> None:
        self.counters = Counters()
        self.seen: list[Seen] = []
        self._request = http_get(
            endpoint.host,
            endpoint.http_port,
            "/v1/quotes?symbols=" + quote(",".join(symbols), safe=","),
            {"X-API-Key": endpoint.key},
        )
        self._interval = interval
        self._reader = HttpResponseReader()
        self._last: dict[str, int] = {}
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closing:
            self.counters.error("lost")
        if not self._closed.done():
            self._closed.set_result(None)
        for future in (self.ready, self._answer):
            if future is not None and not future.done():
                future.set_exception(ConnectionError("connection lost"))
                future.exception()

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        self.counters.bytes_in += len(data)
        try:
            answers = self._reader.feed(data)
        except ProtocolError:
            self.counters.error("protocol")
            self.close()
            return
        for answer in answers:
            self.counters.messages += 1
            if answer.status == 200:
                self._record(answer.body, now)
            else:
                self.counters.error(str(answer.status))
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(None)

    def _record(self, body: bytes, now: int) -> None:
        last = self._last
        for q in _quotes_decoder.decode(body).quotes:
            if last.get(q.symbol) != q.seq:
                last[q.symbol] = q.seq
                self.seen.append((q.symbol, q.seq, q.ts, now))
                self.counters.ticks += 1

    async def _get(self) -> None:
        assert self._transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(self._request)
        self.counters.bytes_out += len(self._request)
        await self._answer

    async def warm_up(self) -> None:
        """One request, so that the connection is open and the first answer is in."""
        try:
            await self._get()
        except ConnectionError:
            return
        if not self.ready.done():
            self.ready.set_result(None)

    def start(self, phase: float) -> None:
        """Start polling: the first request ``phase`` seconds from now."""
        self._task = asyncio.get_running_loop().create_task(self._poll(phase))

    async def _poll(self, phase: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + phase
        try:
            while not self._closed.done():
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._get()
                due = max(due + self._interval, loop.time())
        except ConnectionError:
            return

    def close(self) -> None:
        """Stop polling and close the connection."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.close()


# -- streams ------------------------------------------------------------------------------------


class _Tick(msgspec.Struct):
    s: str
    t: int
    q: int


class _TicksMessage(msgspec.Struct):
    type: str
    ticks: list[_Tick] = []
    quotes: list[_Tick] = []


class _SseTicks(msgspec.Struct):
    ticks: list[_Tick]


class _LegacyTick(msgspec.Struct):
    symbol: str
    ts: str
    bid: float
    ask: float


_native_decoder: Final = msgspec.json.Decoder(_TicksMessage)
_sse_decoder: Final = msgspec.json.Decoder(_SseTicks)
_legacy_decoder: Final = msgspec.json.Decoder(_LegacyTick)

StreamKind = Literal["ws-ticks", "ws-quotes", "sse", "feedadv"]

_PING: Final = b'{"action":"ping"}'
"""The keepalive :class:`~tickwire.protocol.messages.PingRequest`, as short as it can be (it is
sent inside measurement windows; the Struct's encoding would add ``"id":null``)."""

_TICK_MARKER: Final[dict[StreamKind, bytes]] = {
    "ws-ticks": b'{"s":',
    "ws-quotes": b'{"s":',
    "sse": b'{"s":',
    "feedadv": b'{"symbol":',
}
_MESSAGE_MARKER: Final[dict[StreamKind, bytes]] = {
    "ws-ticks": b'{"type":"ticks"',
    "ws-quotes": b'{"type":"quotes"',
    "sse": b"event: ticks",
    "feedadv": b'{"symbol":',
}


class StreamClient(asyncio.Protocol):
    """One streaming connection: native ``ticks`` or ``quotes``, SSE, or legacy ``/feedadv``.

    Setup (the upgrade or the HTTP head, the welcome, the subscription and its ``ack``, the SSE
    ``hello``, the legacy ``Connected`` and login) is parsed frame by frame; :attr:`ready`
    resolves when the subscription is in place (for ``/feedadv``, which has no
    acknowledgement, when the login is sent). From then on every received byte is counted and
    searched for the tick and message markers, and an observer keeps it, with its receipt time,
    for :meth:`analyze`.
    """

    def __init__(
        self,
        kind: StreamKind,
        endpoint: Endpoint,
        symbols: list[str],
        *,
        observer: bool,
        max_rate: float = 5.0,
    ) -> None:
        self.kind: StreamKind = kind
        self.observer = observer
        self.counters = Counters()
        self.closed: str | None = None
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self._symbols = symbols
        self._endpoint = endpoint
        self._max_rate = max_rate
        self._transport: asyncio.Transport | None = None
        self._setup = True
        self._setup_buf = bytearray()
        self._head_done = False
        self._frames = FrameReader()
        self._ticks = MarkerCounter(_TICK_MARKER[kind])
        self._messages = MarkerCounter(_MESSAGE_MARKER[kind])
        self._kept: list[tuple[int, bytes]] = []
        self._keepalive: asyncio.TimerHandle | None = None
        if kind == "sse":
            names = quote(",".join(symbols), safe=",")
            self._request = http_get(
                endpoint.host,
                endpoint.http_port,
                f"/v1/sse?symbols={names}&channel=ticks",
                {"X-API-Key": endpoint.key},
            )
        elif kind == "feedadv":
            self._request = ws_upgrade_request(
                endpoint.stream_host, endpoint.stream_port, "/feedadv"
            )
        else:
            self._request = ws_upgrade_request(
                endpoint.stream_host,
                endpoint.stream_port,
                f"/v1/stream?api_key={quote(endpoint.key)}",
            )

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is None:
            self.closed = "lost"
            self.counters.error("lost")
        if self._keepalive is not None:
            self._keepalive.cancel()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(self.closed))
            self.ready.exception()

    def close(self) -> None:
        """Close the connection (without a closing handshake: the measurement is over)."""
        self.closed = self.closed or "closed by client"
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self._transport is not None:
            self._transport.close()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            self.counters.bytes_out += len(data)

    def _fail(self, why: str) -> None:
        self.closed = why
        self.counters.error(why.split(":", 1)[0])
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
            self.ready.exception()
        if self._transport is not None:
            self._transport.close()

    # -- receiving -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._setup:
            self.counters.bytes_in += len(data)
            try:
                rest = self._setup_step(data)
            except ProtocolError as exc:
                self._fail(f"protocol: {exc}")
                return
            if self._setup or not rest:
                return
            self.counters.bytes_in -= len(rest)  # counted again below, as streamed bytes
            data = rest
        self.counters.bytes_in += len(data)
        self.counters.ticks += self._ticks.feed(data)
        self.counters.messages += self._messages.feed(data)
        if self.observer:
            self._kept.append((time.time_ns(), data))

    def _setup_step(self, data: bytes) -> bytes:
        """Parse setup bytes; returns the bytes after the setup once it is complete."""
        if not self._head_done:
            self._setup_buf += data
            end = self._setup_buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._setup_buf) > MAX_HEAD:
                    raise ProtocolError("response head too large")
                return b""
            head = parse_head(bytes(self._setup_buf[:end]))
            data = bytes(self._setup_buf[end + 4 :])
            self._setup_buf.clear()
            if head.status != (200 if self.kind == "sse" else 101):
                self._fail(f"{head.status}: refused")
                return b""
            self._head_done = True
        if self.kind == "sse":
            # The body is chunked, one event per chunk: the hello event is the first chunk, and
            # the bytes after its chunk's CRLF start the next chunk.
            self._setup_buf += data
            at = self._setup_buf.find(b"event: hello")
            end = self._setup_buf.find(b"\n\n\r\n", at) if at >= 0 else -1
            if end < 0:
                if len(self._setup_buf) > MAX_HEAD:
                    raise ProtocolError("no hello event in the first bytes of the SSE stream")
                return b""
            rest = bytes(self._setup_buf[end + 4 :])
            self._setup_buf.clear()
            self._ready()
            return rest
        self._frames.feed(data)
        while self._setup:
            frame = self._frames.next_frame()
            if frame is None:
                return b""
            if frame.opcode == OP_PING:
                self._write(ws_client_frame(OP_PONG, frame.payload))
            elif frame.opcode == OP_CLOSE:
                code = int.from_bytes(frame.payload[:2], "big") if len(frame.payload) >= 2 else 0
                self._fail(f"close {code}: {frame.payload[2:].decode(errors='replace')}")
                return b""
            elif frame.opcode == OP_TEXT:
                self._setup_message(frame.payload)
        return self._frames.take_buffer()

    def _setup_message(self, payload: bytes) -> None:
        if self.kind == "feedadv":
            if payload == b"Connected":
                login = msgspec.json.encode(
                    {"userKey": self._endpoint.key, "symbol": ",".join(self._symbols)}
                )
                self._write(ws_client_frame(OP_TEXT, login))
                self._ready()
            return
        try:
            message = decode_server_message(payload, binary=False)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"bad setup message: {exc}") from None
        match message:
            case Welcome():
                ticks = self.kind == "ws-ticks"
                request = SubscribeRequest(
                    channel=Channel.TICKS if ticks else Channel.QUOTES,
                    symbols=self._symbols,
                    id=1,
                    snapshot=False,
                    max_rate=None if ticks else self._max_rate,
                )
                self._write(ws_client_frame(OP_TEXT, JSON_ENCODER.encode(request)))
            case Ack(results=results):
                refused = [
                    f"{r.symbol}: {r.reason or r.status}"
                    for r in results
                    if r.status != SymbolStatus.ACCEPTED
                ]
                if refused:
                    self._fail(f"refused: {refused[:3]}")
                    return
                self._ready()
            case ErrorMessage(code=code):
                self._fail(f"error: {code}")
            case _:
                pass

    def _ready(self) -> None:
        self._setup = False
        if self.kind in ("ws-ticks", "ws-quotes"):
            loop = asyncio.get_running_loop()
            self._keepalive = loop.call_later(KEEPALIVE_SECONDS, self._ping)
        if not self.ready.done():
            self.ready.set_result(None)

    def _ping(self) -> None:
        self._write(ws_client_frame(OP_TEXT, _PING))
        self._keepalive = asyncio.get_running_loop().call_later(KEEPALIVE_SECONDS, self._ping)

    # -- after the run ---------------------------------------------------------------------

    def analyze(
        self, resolve: Callable[[TickKey], tuple[int, int] | None] | None = None
    ) -> list[Seen]:
        """Decode what an observer kept: every tick with its receipt time, in receipt order.

        ``/feedadv`` ticks carry no position; ``resolve`` maps ``(symbol, ts ms, bid, ask)`` to
        the journaled tick's ``(seq, ts ns)`` (ticks it cannot place are counted as the
        ``unmatched`` error). Close frames found in the stream are counted as errors.
        """
        seen: list[Seen] = []
        kept, self._kept = self._kept, []
        if self.kind == "sse":
            body = ChunkedDecoder()
            events = SseReader()
            for now, data in kept:
                for event in events.feed(body.feed(data)):
                    if event.event == "ticks":
                        ticks = _sse_decoder.decode(event.data).ticks
                        seen += [(t.s, t.q, t.t, now) for t in ticks]
            return seen
        frames = FrameReader()
        for now, data in kept:
            frames.feed(data)
            while (frame := frames.next_frame()) is not None:
                if frame.opcode == OP_CLOSE:
                    code = int.from_bytes(frame.payload[:2], "big") if frame.payload else 0
                    self.counters.error(f"close {code}")
                    continue
                if frame.opcode != OP_TEXT or not frame.payload.startswith(b"{"):
                    continue
                if self.kind == "feedadv":
                    tick = _legacy_decoder.decode(frame.payload)
                    place = (
                        resolve((tick.symbol, int(tick.ts), tick.bid, tick.ask))
                        if resolve
                        else None
                    )
                    if place is None:
                        self.counters.error("unmatched")
                    else:
                        seen.append((tick.symbol, place[0], place[1], now))
                    continue
                message = _native_decoder.decode(frame.payload)
                for t in message.ticks or message.quotes:
                    seen.append((t.s, t.q, t.t, now))
        return seen
