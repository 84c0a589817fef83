"""TraderMade-compatible WebSocket streams on picows: legacy ``/feedadv`` and V2 ``/feedAdv``.

:func:`tradermade_listener` answers the two TraderMade paths and returns None for any other
path, so it plugs into the gateway (:class:`tickwire.gateway.ws.Gateway`) as an extra route,
sharing the gateway's :class:`~.connections.ConnectionCounter`::

    counter = ConnectionCounter()
    tradermade = functools.partial(
        tradermade_listener, node=node, keys=keys, connections=counter
    )
    gateway = Gateway(node, keys, counter=counter, extra_routes=[tradermade])

The gateway's server must reply to pings itself or leave them to the listeners (this one
answers a PING it is given with a PONG).

The protocol is in :mod:`.tradermade_session` (sans-I/O) and the frames in
:mod:`.tradermade_frames`; this module only moves bytes and runs timers. What each client gets
is documented in ``docs/tradermade-streams.md``.

Ticks: a connection with at least one symbol runs one task that pulls journaled batches from the
bus (``node.bus.subscribe(position)`` then ``Subscription.next``), takes the frames of its
symbols from the node's shared :class:`~.tradermade_frames.FrameCache` (each tick is encoded
once per format, whatever the number of connections, and the frames of one batch are joined once
per set of symbols, shared by every connection with that set), and writes them, one WebSocket
frame per tick, with a single transport write per read, at most every ``write_interval``.

Slow-client policy: nothing is buffered for a client beyond its transport's write buffer. The
tick task never awaits the client: after each write, if more than ``write_buffer_bytes`` are
still unsent, the connection gets a close frame with code 4009 and is aborted if it has not
closed within ``close_timeout`` seconds. A client's buffer thus holds at most
``write_buffer_bytes`` plus one read's worth of frames (``max_ticks_per_read`` ticks). TraderMade
streams have no resume: a client closed this way reconnects, logs in and subscribes again, and
the ticks in between are not replayed (fetch them over REST). Other clients are not slowed
down: every connection reads the bus at its own pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import weakref
from dataclasses import dataclass, field
from typing import Final

from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponseWithListener,
)

from ..access.keys import KeyStore
from ..bus.base import Subscription
from ..errors import JournalUnavailableError, PositionUnavailableError
from ..node import Node
from .closing import answer_close, send_close
from .connections import ConnectionCounter
from .tradermade_frames import DEFAULT_CACHE_BYTES, FrameCache, select_frames
from .tradermade_session import CloseCode, Dialect, SessionLimits, TraderMadeSession

__all__ = [
    "DEFAULT_LIMITS",
    "PATHS",
    "ConnectionCounter",
    "TraderMadeLimits",
    "TraderMadeListener",
    "close_all",
    "frame_cache",
    "tradermade_listener",
]

log = logging.getLogger("tickwire.gateway.tradermade")

PATHS: Final = {"/feedadv": Dialect.LEGACY, "/feedAdv": Dialect.V2}
"""The served paths and the dialect each assumes until the client's first message decides."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TraderMadeLimits:
    """Bounds and timeouts of the TraderMade streams (``docs/tradermade-streams.md``)."""

    session: SessionLimits = field(default_factory=SessionLimits)
    """Protocol bounds: symbols per connection, message size, inbound rate, errors."""
    write_buffer_bytes: int = 4 * 1024 * 1024
    """Unsent bytes a connection may have before it is closed as a slow consumer (4009)."""
    max_ticks_per_read: int = 10_000
    """Ticks taken from the bus at once (bounds one write, and the overshoot past the limit)."""
    write_interval: float = 0.002
    """Connections write ticks at most once per this many seconds, all on the same clock grid
    (so they read the same slices of the bus and share their encoding); under load each write
    carries more ticks instead of each connection waking once per published batch."""
    cache_bytes: int = DEFAULT_CACHE_BYTES
    """Frames the node's shared cache keeps (read when the cache is made)."""
    login_timeout: float = 30.0
    """Seconds a connection may stay open without a successful login (then 4001)."""
    close_timeout: float = 5.0
    """Seconds to wait for the client's close frame before the socket is aborted."""

    def __post_init__(self) -> None:
        if (
            self.write_buffer_bytes < 1
            or self.max_ticks_per_read < 1
            or self.cache_bytes < 0
            or not 0 <= self.write_interval <= 1
        ):
            raise ValueError(f"invalid limits: {self!r}")
        if not (self.login_timeout > 0 and self.close_timeout > 0):
            raise ValueError(f"invalid timeouts: {self!r}")


DEFAULT_LIMITS: Final = TraderMadeLimits()


class _NodeStreams:
    """What the TraderMade connections of one node share: the frame cache, and who is open."""

    def __init__(self, cache: FrameCache) -> None:
        self.cache = cache
        self.open: set[TraderMadeListener] = set()


_nodes: weakref.WeakKeyDictionary[Node, _NodeStreams] = weakref.WeakKeyDictionary()
_ids = itertools.count(1)


def _streams(node: Node, max_bytes: int = DEFAULT_CACHE_BYTES) -> _NodeStreams:
    streams = _nodes.get(node)
    if streams is None:
        streams = _nodes[node] = _NodeStreams(FrameCache(max_bytes=max_bytes))
    return streams


def frame_cache(node: Node, *, max_bytes: int = DEFAULT_CACHE_BYTES) -> FrameCache:
    """The frame cache shared by every TraderMade connection of ``node`` (made on first use)."""
    return _streams(node, max_bytes).cache


def close_all(node: Node, reason: str = "server shutting down") -> int:
    """Close every open TraderMade connection of ``node`` with 1001; return how many.

    For the gateway's shutdown: each gets a close frame and is aborted after its
    ``close_timeout`` if it does not answer.
    """
    listeners = list(_streams(node).open)
    for listener in listeners:
        listener.close(CloseCode.GOING_AWAY, reason)
    return len(listeners)


def _dialect(path: bytes) -> Dialect | None:
    route = path.split(b"?", 1)[0].rstrip(b"/").decode("latin-1")
    dialect = PATHS.get(route)
    if dialect is None and route.lower() == "/feedadv":
        dialect = Dialect.LEGACY
    return dialect


def tradermade_listener(
    request: WSUpgradeRequest,
    *,
    node: Node,
    keys: KeyStore,
    connections: ConnectionCounter,
    limits: TraderMadeLimits = DEFAULT_LIMITS,
) -> WSListener | WSUpgradeResponseWithListener | None:
    """A listener for ``/feedadv`` or ``/feedAdv`` (any case, query ignored); None otherwise.

    The key is checked in-band (the first message), with ``keys.verify``; connections count
    against the key's ``limits.max_connections`` in ``connections`` from login to disconnect.
    """
    dialect = _dialect(request.path)
    if dialect is None:
        return None
    return TraderMadeListener(
        node=node, keys=keys, connections=connections, default=dialect, limits=limits
    )


class TraderMadeListener(WSListener):
    """One TraderMade stream connection: the asyncio shell around a :class:`TraderMadeSession`."""

    def __init__(
        self,
        *,
        node: Node,
        keys: KeyStore,
        connections: ConnectionCounter,
        default: Dialect = Dialect.LEGACY,
        limits: TraderMadeLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__()
        self.id = next(_ids)
        self.limits = limits
        self.session = TraderMadeSession(
            catalog=node.catalog,
            verify=keys.verify,
            slots=connections,
            quote=node.live.quote,
            default=default,
            limits=limits.session,
        )
        self.frames_sent = 0
        """Tick frames written (control frames not counted)."""
        self._node = node
        self._streams = _streams(node, limits.cache_bytes)
        self._cache = self._streams.cache
        self._transport: WSTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sub: Subscription | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._login_timer: asyncio.TimerHandle | None = None
        self._partial: bytearray | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"TraderMadeListener(id={self.id}, dialect={self.session.dialect})"

    @property
    def transport(self) -> WSTransport | None:
        """The connection's transport once connected (for metrics and tests)."""
        return self._transport

    # -- picows callbacks -----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        self._streams.open.add(self)
        self._loop = loop = asyncio.get_running_loop()
        self._login_timer = loop.call_later(self.limits.login_timeout, self._login_expired)
        log.debug("tradermade #%d: connected", self.id)
        self.session.start()
        self._flush()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        try:
            self._frame(transport, frame)
        except Exception:
            log.exception("tradermade #%d: failed to handle a frame", self.id)
            self._close(CloseCode.INTERNAL_ERROR, "internal error")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closing = True
        if self._login_timer is not None:
            self._login_timer.cancel()
        if self._pump_task is not None:
            self._pump_task.cancel()
        self.session.finish()
        self._streams.open.discard(self)
        log.debug("tradermade #%d: disconnected after %d ticks", self.id, self.frames_sent)

    # -- frames in ------------------------------------------------------------------------------

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            self._closing = True
            if self._pump_task is not None:
                self._pump_task.cancel()
            answer_close(transport, frame, grace=self.limits.close_timeout)
            return
        if kind == WSMsgType.PING:  # only seen when the server does not auto-pong
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if self._closing or kind == WSMsgType.PONG:
            return
        max_bytes = self.limits.session.max_message_bytes
        if kind == WSMsgType.CONTINUATION:
            if self._partial is None:
                return  # a continuation of nothing: picows has already checked the framing
            self._partial += frame.get_payload_as_memoryview()
            if len(self._partial) > max_bytes:
                self._partial = None
                self._close(CloseCode.TOO_BIG, "message too big")
                return
            if not frame.fin:
                return
            payload, self._partial = bytes(self._partial), None
        elif not frame.fin:
            if frame.payload_size > max_bytes:
                self._close(CloseCode.TOO_BIG, "message too big")
            else:
                self._partial = bytearray(frame.get_payload_as_memoryview())
            return
        else:
            payload = frame.get_payload_as_bytes()
        assert self._loop is not None
        self.session.receive(payload, now=self._loop.time(), position=self._position())
        self._flush()

    def _position(self) -> int:
        """The offset after which this connection's ticks start (or have been written up to)."""
        return self._sub.after if self._sub is not None else self._node.bus.last_offset

    # -- bytes out ------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Send what the session has queued, start the tick task, close if the session says so."""
        transport, session = self._transport, self.session
        assert transport is not None
        for payload in session.data_to_send():
            transport.send(WSMsgType.TEXT, payload)
        if session.close_with is not None:
            self._close(*session.close_with)
            return
        if session.logged_in and self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        if session.symbols and self._sub is None:
            # in the same step as the session saw `position`, so its LAST_QUOTE skips hold
            self._sub = self._node.bus.subscribe(self._node.bus.last_offset)
            self._pump_task = asyncio.create_task(self._pump(self._sub), name=f"tm-{self.id}")
        self._check_buffer()

    def _check_buffer(self) -> bool:
        """Close the connection as a slow consumer if too much is unsent; True if it was."""
        transport = self._transport
        assert transport is not None
        limit = self.limits.write_buffer_bytes
        if transport.underlying_transport.get_write_buffer_size() <= limit:
            return False
        log.info("tradermade #%d: slow consumer, over %d bytes unsent; closing", self.id, limit)
        self._close(CloseCode.SLOW_CONSUMER, f"slow consumer: over {limit} bytes unsent")
        return True

    async def _pump(self, sub: Subscription) -> None:
        """Write this connection's ticks, batch by batch, until it closes (module docstring)."""
        transport, session, cache = self._transport, self.session, self._cache
        assert transport is not None
        max_ticks = self.limits.max_ticks_per_read
        interval = self.limits.write_interval
        loop = asyncio.get_running_loop()
        try:
            while not self._closing:
                batches = await sub.next(max_ticks=max_ticks)
                if self._closing:
                    return
                symbols = session.symbols
                if symbols:
                    fmt, skip = session.fmt, session.skip
                    batch = cache.merged(batches)  # one slice, shared by whoever reads it
                    if skip:  # just after a LAST_QUOTE: this connection's own selection
                        frames = select_frames(cache, batch, symbols, fmt, skip)
                        data, count = b"".join(frames), len(frames)
                    else:  # the bytes every connection with these symbols shares
                        data, count = cache.joined(batch, session.symbols_key, symbols, fmt)
                    if count and not (transport.is_close_frame_sent or transport.is_disconnected):
                        # pre-framed text frames, one per tick, in one write
                        transport.underlying_transport.write(data)
                        self.frames_sent += count
                session.delivered(batches[-1].last_offset)
                if self._check_buffer():
                    return
                if interval > 0:
                    # every connection wakes on the same grid, so they read the same slices of
                    # the bus and share the merged batch, its frames and its joins
                    await asyncio.sleep(interval - loop.time() % interval)
        except asyncio.CancelledError:
            raise
        except JournalUnavailableError:
            self._close(CloseCode.GOING_AWAY, "server shutting down")
        except PositionUnavailableError as exc:
            self._close(CloseCode.SLOW_CONSUMER, f"fell behind the journal: {exc}"[:100])
        except Exception:
            log.exception("tradermade #%d: tick task failed", self.id)
            self._close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            with contextlib.suppress(Exception):
                await sub.aclose()

    # -- closing --------------------------------------------------------------------------------

    def close(self, code: CloseCode, reason: str) -> None:
        """Close the connection: a close frame now, an abort after ``close_timeout``."""
        self._close(code, reason)

    def _close(self, code: CloseCode, reason: str) -> None:
        """Send a close frame, stop the tick task, and abort after ``close_timeout``."""
        if self._closing:
            return
        self._closing = True
        if self._login_timer is not None:
            self._login_timer.cancel()
        task = self._pump_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        transport = self._transport
        if transport is None:
            return
        log.debug("tradermade #%d: closing with %d %s", self.id, code, reason)
        send_close(transport, int(code), reason, grace=self.limits.close_timeout)

    def _login_expired(self) -> None:
        self._login_timer = None
        if not self.session.logged_in:
            timeout = self.limits.login_timeout
            self._close(CloseCode.UNAUTHORIZED, f"no login within {timeout:g} s")
