"""Server-Sent Events: the same ticks and quotes as the WebSocket stream, over plain HTTP.

``GET /v1/sse?symbols=EURUSD,GBPUSD[&channel=ticks|quotes][&from=EPOCH:OFFSET]``

Events (``data`` is one JSON object):

* ``ticks``: ``{"ticks": [{"s","b","a","t","e","o","q"}, …]}``; the event ``id`` is
  ``EPOCH:OFFSET`` of the last tick of the batch, so a reconnecting ``EventSource`` sends it back
  as ``Last-Event-ID`` and resumes after it: no gap, no duplicate, the same position semantics as
  the native protocol. On the ``quotes`` channel the same shape carries only each symbol's latest
  tick per batch (conflated) and never resumes.
* ``heartbeat``: ``{"epoch", "offset", "time"}`` every ``heartbeat`` seconds while idle.
* ``resume``: ``{"status": "too_old" | "epoch_changed" | "ahead", …}`` when the position cannot
  be resumed; the stream then ends, and the client should fetch history over REST and reconnect
  without a position.

A slow reader is never buffered for: each connection pulls from the bus at its own pace (ring,
then journal), so memory stays bounded; one that falls behind the journal's retention gets
``resume: too_old`` and the stream ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import numpy as np
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..api.errors import ApiError
from ..api.params import parse_choice, parse_symbols
from ..errors import JournalUnavailableError, PositionUnavailableError
from ..model import JournaledBatch, Position
from ..node import Node

__all__ = ["routes"]

HEARTBEAT_SECONDS = 5.0
MAX_TICKS_PER_EVENT = 5_000
_encoder = msgspec.json.Encoder()


class _Tick(msgspec.Struct, array_like=False):
    s: str
    b: float
    a: float
    t: int
    e: int
    o: int
    q: int


def _select(batch: JournaledBatch, wanted: set[str]) -> list[_Tick]:
    local = [i for i, name in enumerate(batch.symbols) if name in wanted]
    if not local:
        return []
    mask = np.isin(batch.sym, np.array(local, dtype=np.uint16))
    idx = np.flatnonzero(mask)
    names = batch.symbols
    sym, seq = batch.sym[idx].tolist(), batch.seq[idx].tolist()
    ts, bid, ask = batch.ts[idx].tolist(), batch.bid[idx].tolist(), batch.ask[idx].tolist()
    offsets = (batch.first_offset + idx).tolist()
    return [
        _Tick(names[s], b, a, t, batch.epoch, o, q)
        for s, b, a, t, o, q in zip(sym, bid, ask, ts, offsets, seq, strict=True)
    ]


def _event(kind: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"event: {kind}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + _encoder.encode(data) + b"\n\n"


def _start_position(request: Request, node: Node) -> Position | None:
    raw = request.query_params.get("from") or request.headers.get("last-event-id")
    if not raw:
        return None
    try:
        return Position.parse(raw[:64])
    except ValueError:
        raise ApiError(
            400, "invalid_parameter", "from must be EPOCH:OFFSET", param="from"
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
    yield _event("hello", {"epoch": bus.epoch, "offset": after, "channel": channel})
    while True:
        try:
            batches = await asyncio.wait_for(
                subscription.next(max_ticks=MAX_TICKS_PER_EVENT), HEARTBEAT_SECONDS
            )
        except TimeoutError:
            yield _event(
                "heartbeat", {"epoch": bus.epoch, "offset": bus.last_offset, "time": time.time_ns()}
            )
            continue
        except PositionUnavailableError as exc:
            yield _event("resume", {"status": "too_old", "message": str(exc)})
            return
        except JournalUnavailableError:
            return  # the server is stopping
        ticks = [t for b in batches for t in _select(b, wanted)]
        last = batches[-1]
        if channel == "quotes":
            latest: dict[str, _Tick] = {}
            for t in ticks:
                latest[t.s] = t
            ticks = list(latest.values())
        if ticks:
            yield _event("ticks", {"ticks": ticks}, f"{last.epoch}:{last.last_offset}")


routes: list[BaseRoute] = [Route("/v1/sse", sse, methods=["GET"])]
