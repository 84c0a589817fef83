"""Server-Sent Events: the same ticks and quotes as the WebSocket stream, over plain HTTP.

``GET /v1/sse?symbols=EURUSD,GBPUSD[&channel=ticks|quotes][&from=EPOCH:OFFSET]``

Events (``data`` is one JSON object):

* ``ticks``: ``{"ticks": [{"s","b","a","t","e","o","q"}, …]}``; the event ``id`` is
  ``EPOCH:OFFSET`` of the last tick of the batch, so a reconnecting ``EventSource`` sends it back
  as ``Last-Event-ID`` and resumes after it: no gap, no duplicate, the same position semantics as
  the native protocol. On the ``quotes`` channel the same shape carries only each symbol's latest
  tick per batch (conflated) and never resumes; a quotes reader that fell more than
  ``MAX_TICKS_PER_EVENT`` behind gets one event with the live state's latest quotes of its
  symbols instead of a walk through the missed ticks, and continues from there.
* ``heartbeat``: ``{"epoch", "offset", "time"}`` every ``heartbeat`` seconds while idle.
* ``resume``: ``{"status": "too_old" | "epoch_changed" | "ahead", …}`` when the position cannot
  be resumed; the stream then ends, and the client should fetch history over REST and reconnect
  without a position.

Within a ``ticks`` event the ticks are grouped by symbol, each symbol's in ``seq`` order; every
tick of an event has a larger offset than every tick of the events before it (the ordering rules
of the native stream's frames). Each batch is encoded once per symbol for every connection
(:class:`SharedPieces`), so a connection's cost per event is joining its symbols' pieces.

A slow reader is never buffered for: each connection pulls from the bus at its own pace (ring,
then journal), so memory stays bounded; one that falls behind the journal's retention gets
``resume: too_old`` and the stream ends.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..api.errors import ApiError
from ..api.params import parse_choice, parse_symbols
from ..errors import JournalUnavailableError, PositionUnavailableError
from ..model import JournaledBatch, Position
from ..node import Node
from ..protocol import encode_quotes_json, encode_ticks_json
from ..protocol.encoding import wire_quote

__all__ = ["SharedPieces", "routes"]

HEARTBEAT_SECONDS = 5.0
MAX_TICKS_PER_EVENT = 5_000
SHARED_PIECES_BYTES = 32 * 1024 * 1024
_encoder = msgspec.json.Encoder()

_BatchKey = tuple[int, int, int]  # epoch, first offset, last offset


class SharedPieces:
    """Each batch's ticks encoded once, per symbol, for every SSE connection.

    ``ticks(batch)`` gives each symbol's ticks as comma-joined JSON objects (the native
    stream's wire form: ``s b a t e o q``) and ``quotes(batch)`` each symbol's last tick. The
    encodings of recent batches are kept, least recently used first out, within ``max_bytes``;
    a batch evicted and asked for again is encoded again. A connection that starts mid-batch
    gets its own slice encoded (it is another batch key).
    """

    def __init__(self, max_bytes: int = SHARED_PIECES_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._cache: OrderedDict[tuple[str, _BatchKey], dict[str, bytes]] = OrderedDict()

    def ticks(self, batch: JournaledBatch) -> dict[str, bytes]:
        return self._get("ticks", batch, encode_ticks_json)

    def quotes(self, batch: JournaledBatch) -> dict[str, bytes]:
        return self._get("quotes", batch, encode_quotes_json)

    def _get(
        self,
        kind: str,
        batch: JournaledBatch,
        encode: Callable[[JournaledBatch], Mapping[str, bytes]],
    ) -> dict[str, bytes]:
        key = (kind, (batch.epoch, batch.first_offset, batch.last_offset))
        cache = self._cache
        pieces = cache.get(key)
        if pieces is not None:
            cache.move_to_end(key)
            return pieces
        pieces = cache[key] = dict(encode(batch))
        self.size += sum(map(len, pieces.values()))
        while self.size > self.max_bytes and len(cache) > 1:
            _, evicted = cache.popitem(last=False)
            self.size -= sum(map(len, evicted.values()))
        return pieces


_SHARED: weakref.WeakKeyDictionary[Node, SharedPieces] = weakref.WeakKeyDictionary()


def _shared(node: Node) -> SharedPieces:
    shared = _SHARED.get(node)
    if shared is None:
        shared = _SHARED[node] = SharedPieces()
    return shared


def _ticks_body(shared: SharedPieces, batches: Sequence[JournaledBatch], wanted: set[str]) -> bytes:
    """The batches' ticks of the wanted symbols, grouped by symbol, each in offset order."""
    by_symbol: dict[str, list[bytes]] = {}
    for batch in batches:
        for name, piece in shared.ticks(batch).items():
            if name in wanted:
                by_symbol.setdefault(name, []).append(piece)
    parts = [piece for pieces in by_symbol.values() for piece in pieces]
    return b'{"ticks":[' + b",".join(parts) + b"]}" if parts else b""


def _quotes_body(
    shared: SharedPieces, batches: Sequence[JournaledBatch], wanted: set[str]
) -> bytes:
    latest: dict[str, bytes] = {}
    for batch in reversed(batches):  # the latest batch that has a symbol wins
        for name, piece in shared.quotes(batch).items():
            if name in wanted and name not in latest:
                latest[name] = piece
    return b'{"ticks":[' + b",".join(latest.values()) + b"]}" if latest else b""


def _live_quotes_body(node: Node, wanted: set[str], after: int) -> bytes:
    """The live state's latest quote of each wanted symbol that ticked after ``after``."""
    live = node.live
    pieces = [
        _encoder.encode(wire_quote(quote))
        for name in sorted(wanted)
        if (quote := live.quote(name)) is not None and quote.offset > after
    ]
    return b'{"ticks":[' + b",".join(pieces) + b"]}" if pieces else b""


def _event(kind: str, data: Any, event_id: str | None = None) -> bytes:
    return _raw_event(kind, _encoder.encode(data), event_id)


def _raw_event(kind: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"event: {kind}\n" + (f"id: {event_id}\n" if event_id else "")
    return b"".join((head.encode(), b"data: ", data, b"\n\n"))


def _start_position(request: Request, node: Node) -> Position | None:
    # an EventSource reconnecting to a URL with ?from= sends Last-Event-ID: that is the newer
    # position, so it wins (else every reconnect would replay from the same point)
    header = request.headers.get("last-event-id")
    raw = header or request.query_params.get("from")
    if not raw:
        return None
    try:
        return Position.parse(raw[:64])
    except ValueError:
        where = "Last-Event-ID" if header else "from"
        raise ApiError(
            400, "invalid_parameter", f"{where} must be EPOCH:OFFSET", param=where
        ) from None


async def sse(request: Request) -> Response:
    """Stream ticks or conflated quotes as Server-Sent Events (see the module docstring)."""
    node: Node = request.app.state.node
    symbols = parse_symbols(node.catalog, request.query_params, limit=100)
    channel = parse_choice(request.query_params, "channel", ("ticks", "quotes"), "ticks")
    record = getattr(request.state, "key", None)
    if record is not None:
        from ..access import entitled

        for symbol in symbols:
            if not entitled(record, symbol.code):
                raise ApiError(
                    403, "not_entitled", f"not entitled to {symbol.code}", param="symbols"
                )
    start = _start_position(request, node) if channel == "ticks" else None
    wanted = {s.code for s in symbols}
    return StreamingResponse(
        _events(node, wanted, channel, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    node: Node, wanted: set[str], channel: str, start: Position | None
) -> AsyncIterator[bytes]:
    bus = node.bus
    after = bus.last_offset
    if start is not None:
        if start.epoch != bus.epoch:
            yield _event(
                "resume",
                {
                    "status": "epoch_changed",
                    "from": str(start),
                    "epoch": bus.epoch,
                    "offset": bus.last_offset,
                },
            )
            return
        if start.offset > bus.last_offset:
            yield _event(
                "resume",
                {
                    "status": "ahead",
                    "from": str(start),
                    "epoch": bus.epoch,
                    "offset": bus.last_offset,
                },
            )
            return
        after = start.offset
    subscription = bus.subscribe(after)
    shared = _shared(node)
    yield _event("hello", {"epoch": bus.epoch, "offset": after, "channel": channel})
    try:
        while True:
            if channel == "quotes" and bus.last_offset - subscription.after > MAX_TICKS_PER_EVENT:
                # behind (the reader was slow): only the latest quotes matter, so jump to the
                # live state's position instead of walking the missed ticks
                jump = node.live.offset
                if jump > subscription.after:
                    body = _live_quotes_body(node, wanted, subscription.after)
                    await subscription.aclose()
                    subscription = bus.subscribe(jump)
                    if body:
                        yield _raw_event("ticks", body, f"{bus.epoch}:{jump}")
                    continue
            try:
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    batches = await subscription.next(max_ticks=MAX_TICKS_PER_EVENT)
            except TimeoutError:
                state = {"epoch": bus.epoch, "offset": bus.last_offset, "time": time.time_ns()}
                yield _event("heartbeat", state)
                continue
            except PositionUnavailableError as exc:
                yield _event("resume", {"status": "too_old", "message": str(exc)})
                return
            except JournalUnavailableError:
                return  # the server is stopping
            last = batches[-1]
            if channel == "quotes":
                body = _quotes_body(shared, batches, wanted)
            else:
                body = _ticks_body(shared, batches, wanted)
            if body:
                yield _raw_event("ticks", body, f"{last.epoch}:{last.last_offset}")
    finally:
        await subscription.aclose()


routes: list[BaseRoute] = [Route("/v1/sse", sse, methods=["GET"])]
