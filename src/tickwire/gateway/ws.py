"""The WebSocket gateway: an asyncio shell around the sans-I/O protocol, and the fan-out.

It runs picows on its own port (``--stream-port``), next to the HTTP server, and routes by path:
``/v1/stream`` is the native protocol (:mod:`tickwire.protocol`); other surfaces (TraderMade's
streams) plug in through ``extra_routes``.

**Fan-out.** One task consumes the bus. Per wake-up (at most every ``flush_interval``) it encodes
each symbol's new ticks once per encoding in use, then gives each connection one frame made of
the pieces for its own symbols: the work per connection grows with flushes, not ticks, and
connections with the same symbol set share the frame bytes. Nothing awaits per connection.

**Positions.** ``delivered`` is the last offset handed to every live connection; heartbeats and
subscriptions use it, so a position a client sees is always a valid resume point. A resuming
subscription replays from the ring or the journal (with flow control) until it has caught up
with ``delivered``, then joins the live fan-out in the same event-loop step: no gap, no
duplicate.

**Slow consumers.** Before each write the connection's send buffer is checked by the session's
policy (:meth:`NativeSession.backlog`): a lossless connection first gets a ``lag`` warning, then
close 4009 with its resume position; a quotes-only connection just gets fewer updates. Nothing
else waits for a slow connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest

from ..access.keys import KeyRecord, KeyStore
from ..errors import JournalUnavailableError, PositionUnavailableError
from ..livestate import LiveState
from ..model import JournaledBatch, Position, PriceSide
from ..node import Node
from ..protocol import (
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
    ResumeStatus,
    SendPing,
    SessionLimits,
    StreamState,
)
from ..protocol.session import Subscribe, Unsubscribe, admit
from .barstream import BarTracker
from .closing import answer_close, send_close
from .connections import ConnectionCounter
from .symbolsets import SymbolSets

__all__ = ["DEFAULT_FLUSH_INTERVAL", "Gateway"]

log = logging.getLogger("tickwire.gateway")

DEFAULT_FLUSH_INTERVAL = 0.002
REPLAY_CHUNK_TICKS = 20_000
TIMER_INTERVAL = 0.1
CLOSE_GRACE_SECONDS = 10.0
KERNEL_SEND_BUFFER_BYTES = 256 * 1024
ExtraRoute = Callable[[WSUpgradeRequest], Any]


def _key_from_request(request: WSUpgradeRequest) -> tuple[str | None, str]:
    """The API key (query ``api_key``, ``Authorization: Bearer`` or ``X-API-Key``) and encoding."""
    query = parse_qs(urlsplit(request.path.decode("latin-1")).query)
    encoding = (query.get("encoding") or ["json"])[0]
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), encoding
    key = request.headers.get("x-api-key") or (query.get("api_key") or [""])[0]
    return key or None, encoding


class _Connection(WSListener):
    """One native stream connection: the session plus its fan-out state."""

    def __init__(self, gateway: Gateway, session: NativeSession, key: KeyRecord | None) -> None:
        self.gateway = gateway
        self.session = session
        self.key = key
        self.counted_key: str | None = None
        self.transport: WSTransport | None = None
        self.codec = session.codec
        self.msg_type = WSMsgType.BINARY if self.codec.binary else WSMsgType.TEXT
        self._live_ticks: frozenset[str] = frozenset()
        self.replaying: set[asyncio.Task[None]] = set()
        self.last_written: Position | None = None
        self.writable = asyncio.Event()
        self.writable.set()

    @property
    def live_ticks(self) -> frozenset[str]:
        """The symbols whose live ticks the fan-out sends (interned: see :class:`SymbolSets`)."""
        return self._live_ticks

    @live_ticks.setter
    def live_ticks(self, symbols: frozenset[str]) -> None:
        self._live_ticks = self.gateway.tick_sets.replace(
            self.codec.encoding, self._live_ticks, symbols
        )

    # -- picows callbacks -------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        sock = transport.underlying_transport.get_extra_info("socket")
        if sock is not None:
            # bound what the kernel holds for a slow reader too (it doubles the value)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER_BYTES)
        self.gateway.connections.add(self)
        if self.key is not None:
            self._authenticate(self.key)
        self.pump()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        now = time.monotonic()
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if not frame.fin:
                self.session.close(1009, "fragmented messages are not supported")
            else:
                data = frame.get_payload_as_bytes()
                self.session.receive_message(
                    data if kind is WSMsgType.BINARY else data.decode("utf-8", "replace"),
                    binary=kind is WSMsgType.BINARY,
                    now=now,
                    stream=self.gateway.stream_state(),
                )
        elif kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind is WSMsgType.PONG:
            self.session.pong_received(now)
        elif kind is WSMsgType.CLOSE:
            # the client is leaving: nothing more is built for it while its socket drains
            self.live_ticks = frozenset()
            self.session.close(CloseCode.NORMAL, "closed by the client")
            answer_close(transport, frame, grace=CLOSE_GRACE_SECONDS)
            return
        self.pump()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gateway.connections.discard(self)
        self.live_ticks = frozenset()
        if self.session.symbols(Channel.BARS):
            self.gateway.bars_changed()
        if self.counted_key is not None:
            self.gateway.counter.release(self.counted_key)
            self.counted_key = None
        for task in self.replaying:
            task.cancel()
        self.session.close(1006, "disconnected")
        self.session.outgoing()
        self.session.actions()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # -- session I/O ------------------------------------------------------------------------

    def _authenticate(self, record: KeyRecord | None) -> None:
        counter = self.gateway.counter
        open_now = counter.count(record.id) if record is not None else 0
        self.session.authenticate(
            record,
            open_connections=open_now,
            now=time.monotonic(),
            stream=self.gateway.stream_state(),
        )
        if record is not None and self.session.key is not None and self.counted_key is None:
            counter.add(record.id)  # before any await: see NativeSession.authenticate
            self.counted_key = record.id

    def send(self, data: bytes, *, binary: bool | None = None) -> None:
        if self.transport is None or self.transport.is_disconnected:
            return
        kind = self.msg_type if binary is None else (WSMsgType.BINARY if binary else WSMsgType.TEXT)
        self.transport.send(kind, data)

    def send_due_quotes(self, now: float) -> None:
        """Send the conflated quotes whose interval has passed, in one frame (if any)."""
        due = self.session.quotes.due(now)
        if due:
            self.send(self.codec.frame_quotes(due))

    def pump(self) -> None:
        """Write what the session queued, then carry out its actions, until both are empty."""
        session = self.session
        if not session.pending:
            return
        while True:
            out = session.outgoing()
            for message in out:
                self.send(message.data, binary=message.binary)
            actions = session.actions()
            if not out and not actions:
                return
            for action in actions:
                self._perform(action)

    def _perform(self, action: Any) -> None:
        match action:
            case Authenticate(key=key):
                self._authenticate(self.gateway.keys.verify(key))
            case Subscribe():
                self.gateway.subscribe(self, action)
            case Unsubscribe():
                self.gateway.unsubscribe(self, action)
            case SendPing(payload=payload):
                if self.transport is not None:
                    self.transport.send_ping(payload)
            case Close(code=code, reason=reason):
                self._close(int(code), reason)

    def _close(self, code: int, reason: str) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        # the closing handshake: the peer answers our close frame (after reading everything
        # before it) and on_ws_frame disconnects; a peer that never reads is aborted after a
        # grace period, so its buffers are freed
        if send_close(transport, code, reason, grace=CLOSE_GRACE_SECONDS) and code >= 4000:
            log.info("session %s: closing %d: %s", self.session.id, code, reason)


class Gateway:
    """The WebSocket server and fan-out (see the module docstring)."""

    def __init__(
        self,
        node: Node,
        keys: KeyStore,
        *,
        limits: SessionLimits | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        counter: ConnectionCounter | None = None,
        extra_routes: Iterable[ExtraRoute] = (),
    ) -> None:
        self.node = node
        self.keys = keys
        self.limits = limits or SessionLimits()
        self.flush_interval = flush_interval
        self.counter = counter or ConnectionCounter()
        self.extra_routes = tuple(extra_routes)
        self.connections: set[_Connection] = set()
        self.tick_sets = SymbolSets()
        self._bar_subscribers: list[_Connection] | None = None  # None: to recompute
        self._bar_keys: set[tuple[str, Interval]] = set()
        self.delivered = node.bus.last_offset
        # quotes and forming bars exactly as delivered, for snapshots
        self.view = LiveState()
        self.view.restore(node.journal.epoch, node.journal.state)
        self.bar_tracker = BarTracker(self.view)
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.frames_sent = 0
        self.ticks_delivered = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a port); return the bound port."""
        self._server = await picows.ws_create_server(
            self._route,
            host,
            port,
            websocket_handshake_timeout=5,
            max_frame_size=self.limits.max_message_bytes,
            enable_auto_pong=False,
        )
        self._tasks = [
            asyncio.create_task(self._fan_out(), name="gateway-fan-out"),
            asyncio.create_task(self._timers(), name="gateway-timers"),
        ]
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in list(self.connections):
            conn._close(1001, "server shutting down")
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # -- upgrade ----------------------------------------------------------------------------

    def _route(self, request: WSUpgradeRequest) -> Any:
        path = urlsplit(request.path.decode("latin-1")).path
        if path == "/v1/stream":
            return self._native(request)
        for route in self.extra_routes:
            answer = route(request)
            if answer is not None:
                return answer
        return None

    def _native(self, request: WSUpgradeRequest) -> Any:
        key, encoding_name = _key_from_request(request)
        try:
            encoding = Encoding(encoding_name)
        except ValueError:
            return picows.WSUpgradeResponseWithListener(
                picows.WSUpgradeResponse.create_error_response(
                    400, b"encoding must be json or msgpack"
                ),
                None,
            )
        record = self.keys.verify(key) if key else None
        if key:
            refusal = admit(
                record,
                open_connections=self.counter.count(record.id) if record else 0,
                limits=self.limits,
            )
            if refusal is not None:
                headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else {}
                return picows.WSUpgradeResponseWithListener(
                    picows.WSUpgradeResponse.create_error_response(
                        refusal.http_status, refusal.reason.encode(), extra_headers=headers
                    ),
                    None,
                )
        session = NativeSession(
            now=time.monotonic(),
            limits=self.limits,
            encoding=encoding,
            catalog=self.node.catalog,
        )
        return _Connection(self, session, record)

    # -- stream state -----------------------------------------------------------------------

    def stream_state(self) -> StreamState:
        bus = self.node.bus
        first = bus.ring.first_offset
        journal_first = self.node.journal.first_offset
        return StreamState(
            epoch=bus.epoch,
            offset=self.delivered,
            first_offset=min(journal_first, first) if first is not None else journal_first,
            time=time.time_ns(),
        )

    # -- subscriptions ----------------------------------------------------------------------

    def bars_changed(self) -> None:
        """Bar subscriptions changed (or a bar subscriber left): recompute who wants bars."""
        self._bar_subscribers = None

    def _bars_wanted(self) -> tuple[list[_Connection], set[tuple[str, Interval]]]:
        """The connections with bar subscriptions and every (symbol, interval) they want."""
        if self._bar_subscribers is None:
            self._bar_subscribers = [c for c in self.connections if c.session.symbols(Channel.BARS)]
            self._bar_keys = {
                (symbol, interval)
                for c in self._bar_subscribers
                for symbol, interval, _ in c.session.bar_subscriptions()
            }
        return self._bar_subscribers, self._bar_keys

    def subscribe(self, conn: _Connection, action: Subscribe) -> None:
        if action.channel is Channel.BARS:
            self.bars_changed()
        symbols = frozenset(action.symbols)
        if action.channel is Channel.TICKS:
            if action.from_position is not None:
                task = asyncio.create_task(self._replay(conn, action, symbols))
                conn.replaying.add(task)
                task.add_done_callback(conn.replaying.discard)
            else:
                conn.live_ticks = conn.live_ticks | symbols
        if action.snapshot:
            quotes = [q for s in action.symbols if (q := self.view.quote(s)) is not None]
            bars = []
            resolution = action.resolution
            if resolution is not None and action.side is not None:
                bars = [
                    b
                    for s in action.symbols
                    if (b := self.view.forming(s, resolution, action.side)) is not None
                ]
            conn.session.snapshot(action, quotes=quotes, bars=bars)

    def unsubscribe(self, conn: _Connection, action: Unsubscribe) -> None:
        if action.channel is Channel.BARS:
            self.bars_changed()
        if action.channel is Channel.TICKS:
            conn.live_ticks = conn.live_ticks - frozenset(action.symbols)

    async def _replay(self, conn: _Connection, action: Subscribe, symbols: frozenset[str]) -> None:
        """Send the ticks after ``from_position`` until caught up, then join the fan-out."""
        assert action.from_position is not None
        codec = conn.codec
        cursor = action.from_position.offset
        try:
            subscription = self.node.bus.subscribe(cursor)
            while cursor < self.delivered:
                # never past `delivered`: the bus returns at most max_ticks
                batches = await subscription.next(
                    max_ticks=min(REPLAY_CHUNK_TICKS, self.delivered - cursor)
                )
                if conn.session.closed:
                    return
                # only the symbols still subscribed (the client may unsubscribe meanwhile)
                symbols = symbols & conn.session.symbols(Channel.TICKS)
                pieces = codec.encode_ticks(batches, symbols)  # its own symbols only
                mine = [pieces[s] for s in sorted(symbols) if s in pieces]
                if mine:
                    conn.send(codec.frame_ticks(mine))
                cursor = batches[-1].last_offset
                conn.last_written = Position(batches[-1].epoch, cursor)
                await conn.writable.wait()
        except PositionUnavailableError:
            conn.session.replay_failed(
                action, status=ResumeStatus.TOO_OLD, stream=self.stream_state()
            )
        except JournalUnavailableError:
            return  # the server is stopping
        except Exception:
            # the client was told "replaying": never leave it waiting for a "live" that won't come
            log.exception("session %s: replay failed", conn.session.id)
            conn.session.close(CloseCode.INTERNAL_ERROR, "replay failed; resume again")
            conn.pump()
            return
        else:
            if conn.session.closed:
                return
            conn.session.replay_finished(action)
        # caught up: join the live fan-out in this same step, so nothing is missed or repeated;
        # only the symbols still subscribed (the client may have unsubscribed meanwhile)
        conn.live_ticks = conn.live_ticks | (symbols & conn.session.symbols(Channel.TICKS))
        conn.pump()

    # -- fan-out ----------------------------------------------------------------------------

    async def _fan_out(self) -> None:
        bus = self.node.bus
        subscription = bus.subscribe(self.delivered)
        loop = asyncio.get_running_loop()
        last_flush = -math.inf
        while True:
            # at most one flush per interval, counted from the start of the previous one: a
            # tick arriving after a quiet spell goes out at once, not an interval later; always
            # yield, so the connections' reads run between flushes even when they fall due
            wait = last_flush + self.flush_interval - loop.time()
            await asyncio.sleep(wait if wait > 0 else 0)
            try:
                batches = await subscription.next(max_ticks=200_000)
            except PositionUnavailableError:
                # fell behind the journal (should not happen): restart at the head
                log.error("fan-out fell behind the bus; restarting at the head")
                subscription = bus.subscribe(bus.last_offset)
                self.delivered = bus.last_offset
                continue
            except JournalUnavailableError:
                return
            last_flush = loop.time()
            try:
                self._flush(batches)
            except Exception:
                log.exception("fan-out flush failed")

    def _flush(self, batches: list[JournaledBatch]) -> None:
        last = batches[-1]
        position = Position(last.epoch, last.last_offset)
        bar_subscribers, bar_keys = self._bars_wanted()
        bar_events = self.bar_tracker.advance(batches, bar_keys)
        for batch in batches:
            self.view.apply(batch)
        encoded: dict[Encoding, dict[str, Piece]] = {}
        quotes: dict[Encoding, dict[str, bytes]] = {}
        frames: dict[tuple[Encoding, frozenset[str]], bytes] = {}
        # keep a frame for the rest of the flush only if another connection will reuse it;
        # a frame for a unique symbol set is freed right after its send (less memory churn)
        shared = self.tick_sets.shared
        now = time.monotonic()
        flows: dict[_Connection, Flow] = {}
        frames_sent = 0
        for conn in list(self.connections):
            session = conn.session
            transport = conn.transport
            if transport is None or session.closed or transport.is_disconnected:
                continue
            buffered = transport.underlying_transport.get_write_buffer_size()
            flow = flows[conn] = session.backlog(buffered, position=conn.last_written)
            if flow is Flow.STOP:
                conn.pump()
                continue
            codec = conn.codec
            symbols = conn._live_ticks
            if symbols:
                encoding = codec.encoding
                pieces = encoded.get(encoding)
                if pieces is None:
                    pieces = encoded[encoding] = codec.encode_ticks(batches)
                cache_key = (encoding, symbols)  # interned sets: looked up by identity
                frame = frames.get(cache_key)
                if frame is None:
                    mine = [pieces[s] for s in sorted(symbols) if s in pieces]
                    frame = codec.frame_ticks(mine) if mine else b""
                    if shared(encoding, symbols):
                        frames[cache_key] = frame
                if frame:
                    transport.send(conn.msg_type, frame)
                    frames_sent += 1
                conn.last_written = position
            if len(session.quotes):
                latest = quotes.get(codec.encoding)
                if latest is None:
                    latest = quotes[codec.encoding] = codec.encode_quotes(batches)
                # always offered (it only replaces what is pending), sent only when not backed up
                session.quotes.offer_many(latest)
                if flow is Flow.OPEN:
                    conn.send_due_quotes(now)
            conn.pump()
        if bar_events:
            encoded_bars: dict[tuple[Encoding, str, Interval, PriceSide, int, BarState], bytes] = {}
            for conn in bar_subscribers:
                flow = flows.get(conn, Flow.STOP)
                if flow is Flow.STOP or conn.session.closed:
                    continue
                codec = conn.codec
                for symbol, interval, side in conn.session.bar_subscriptions():
                    for event in bar_events.get((symbol, interval, side), ()):
                        if flow is Flow.CONFLATE and event.state is BarState.FORMING:
                            continue  # held back: the next forming update carries the latest

                        key = (codec.encoding, symbol, interval, side, event.bar.start, event.state)
                        frame = encoded_bars.get(key)
                        if frame is None:
                            frame = encoded_bars[key] = codec.encode_bar(
                                event.bar, interval, side, event.state
                            )
                        conn.send(frame)
        self.frames_sent += frames_sent
        self.delivered = last.last_offset
        self.ticks_delivered += sum(len(b) for b in batches)

    async def _timers(self) -> None:
        """Heartbeats, idle and login timeouts, and quotes that fell due while quiet."""
        while True:
            await asyncio.sleep(TIMER_INTERVAL)
            now = time.monotonic()
            state = self.stream_state()
            for conn in list(self.connections):
                session = conn.session
                if session.closed:
                    continue
                if now >= session.deadline:
                    session.tick(now, state)
                if len(session.quotes) and conn.transport is not None:
                    buffered = conn.transport.underlying_transport.get_write_buffer_size()
                    if session.backlog(buffered, position=conn.last_written) is Flow.OPEN:
                        conn.send_due_quotes(now)
                conn.pump()
