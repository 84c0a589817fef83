"""The native REST API, under ``/v1``: quotes, bars, ticks, conversion, symbols, market status.

Everything here reads the same live state and store as the stream: quotes carry the stream
position of the tick they come from, and history answers carry ``as_of``, the store position
they include. Every list is capped and paged with an opaque cursor. Errors are JSON with a
stable ``code``, a ``message`` and the offending ``param`` (see :mod:`tickwire.api.errors`).
"""

from __future__ import annotations

import csv
import io
import time
from collections import OrderedDict
from typing import Any
from weakref import WeakKeyDictionary

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..access.keys import entitled
from ..errors import InvalidQueryError, NoRateError, UnknownSymbolError
from ..livestate import LiveState
from ..markethours import market_status
from ..model import BarUnit, Kind, PriceSide, Quote, Symbol
from ..node import Node
from ..rates import convert as convert_amount
from ..store.base import TickCursor
from ..timeframes import Resolution
from .errors import ApiError
from .params import (
    decode_cursor,
    encode_cursor,
    invalid,
    iso,
    parse_choice,
    parse_float,
    parse_int,
    parse_required,
    parse_symbol,
    parse_symbols,
    parse_time,
)

__all__ = ["MAX_BARS", "MAX_TICKS", "routes"]

MAX_BARS = 10_000
MAX_TICKS = 10_000
MAX_SYMBOLS = 100
DAY_NS = 86_400 * 10**9
MAX_TICK_RANGE_NS = 31 * DAY_NS
MAX_SECOND_BAR_RANGE_NS = 31 * DAY_NS
MAX_BAR_RANGE_NS = 20 * 365 * DAY_NS
_encoder = msgspec.json.Encoder()


def node_of(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _json(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def _csv(header: list[str], rows: Any, filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )


def _entitled(request: Request, symbol: str) -> bool:
    """Whether the caller's key may read ``symbol`` (the access layer's entitlements)."""
    record = getattr(request.state, "key", None)
    return record is None or entitled(record, symbol)


def _require_entitled(request: Request, symbols: list[Symbol], param: str) -> None:
    for symbol in symbols:
        if not _entitled(request, symbol.code):
            raise ApiError(
                403, "not_entitled", f"this key is not entitled to {symbol.code}", param=param
            )


def _as_of(node: Node) -> dict[str, int]:
    return {"epoch": node.journal.epoch, "offset": node.writer.applied_offset}


# -- quotes -------------------------------------------------------------------------------


def _quote_body(quote: Quote) -> dict[str, Any]:
    return {
        "symbol": quote.symbol,
        "bid": quote.bid,
        "ask": quote.ask,
        "mid": quote.mid,
        "ts": quote.ts,
        "time": iso(quote.ts),
        "epoch": quote.epoch,
        "offset": quote.offset,
        "seq": quote.seq,
    }


class _LRU:
    """A small bounded LRU map: the least recently used entry goes beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self._entries[key] = value
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)


class _QuoteCaches:
    """Per node: encoded answers by (symbols parameter, live-state version), so a repeat
    between two ticks is a dict lookup, and parsed symbol lists by parameter. Both bounded."""

    def __init__(self) -> None:
        self.bodies = _LRU(512)
        self.symbols = _LRU(512)


# keyed by the node's live state, so two nodes in one process never share answers
_caches: WeakKeyDictionary[LiveState, _QuoteCaches] = WeakKeyDictionary()


def _caches_of(node: Node) -> _QuoteCaches:
    caches = _caches.get(node.live)
    if caches is None:
        caches = _caches[node.live] = _QuoteCaches()
    return caches


async def quotes(request: Request) -> Response:
    """Live quotes for many symbols in one call, each with its stream position."""
    node = node_of(request)
    params = request.query_params
    raw = params.get("symbols", "")
    caches = _caches_of(node)
    symbols: list[Symbol] | None = caches.symbols.get(raw)
    if symbols is None:
        symbols = parse_symbols(node.catalog, params, limit=MAX_SYMBOLS)
        caches.symbols.put(raw, symbols)
    _require_entitled(request, symbols, "symbols")
    key = (raw, node.live.version)
    body: bytes | None = caches.bodies.get(key)
    if body is None:
        found, missing = [], []
        for symbol in symbols:
            quote = node.live.quote(symbol.code)
            if quote is None:
                missing.append(symbol.code)
            else:
                found.append(_quote_body(quote))
        body = _encoder.encode({"quotes": found, "missing": missing})
        caches.bodies.put(key, body)
    return Response(body, media_type="application/json")


# -- bars ---------------------------------------------------------------------------------


async def bars(request: Request) -> Response:
    """Bars of one symbol: ``multiplier × unit``, a range, a price side, paged."""
    node = node_of(request)
    params = request.query_params
    symbol = parse_symbol(node.catalog, request.path_params["symbol"])
    _require_entitled(request, [symbol], "symbol")
    unit = BarUnit(parse_choice(params, "unit", tuple(u.value for u in BarUnit), "minute"))
    multiplier = parse_int(params, "multiplier", 1, low=1, high=10_000)
    side = PriceSide(parse_choice(params, "side", ("bid", "ask", "mid"), "mid"))
    daily_cut = int(parse_choice(params, "daily_cut", ("0", "22"), "0"))
    limit = parse_int(params, "limit", 1000, low=1, high=MAX_BARS)
    fmt = parse_choice(params, "format", ("json", "csv"), "json")
    try:
        resolution = Resolution(multiplier, unit, daily_cut)
    except InvalidQueryError as exc:
        raise invalid(exc.param or "multiplier", str(exc)) from None
    now = time.time_ns()
    end = parse_time(params, "to", default=now)
    span_cap = MAX_SECOND_BAR_RANGE_NS if unit is BarUnit.SECOND else MAX_BAR_RANGE_NS
    # without from: limit bars back, but never a range the caller would be refused for
    default_start = max(0, end - min(resolution.width_ns * limit, span_cap))
    start = parse_time(params, "from", default=default_start)
    if start >= end:
        raise invalid("from", "from must be before to")
    if end - start > span_cap:
        raise ApiError(
            400,
            "range_too_large",
            f"the range may span at most {span_cap // DAY_NS} days for {unit.value} bars",
            param="from",
        )
    cursor = decode_cursor(params, 1)
    if cursor is not None:
        if not start <= cursor[0] < end:
            raise invalid("cursor", "cursor lies outside from..to")
        start = cursor[0]
    columns = await node.store.bars(symbol.code, resolution, side, start, end, limit=limit + 1)
    more = len(columns) > limit
    n = min(len(columns), limit)
    width = resolution.width_ns
    starts = columns.start[:n].tolist()
    opens, highs = columns.open[:n].tolist(), columns.high[:n].tolist()
    lows, closes = columns.low[:n].tolist(), columns.close[:n].tolist()
    counts = columns.ticks[:n].tolist()
    complete = [s + width <= now for s in starts]
    next_cursor = encode_cursor(int(columns.start[limit])) if more else None
    if fmt == "csv":
        rows = zip(
            (iso(s) for s in starts),
            starts,
            opens,
            highs,
            lows,
            closes,
            counts,
            complete,
            strict=True,
        )
        response = _csv(
            ["time", "ts", "open", "high", "low", "close", "ticks", "complete"],
            rows,
            f"{symbol.code}-{resolution}.csv",
        )
        if next_cursor:
            response.headers["X-Next-Cursor"] = next_cursor
        return response
    return _json(
        {
            "symbol": symbol.code,
            "resolution": {"multiplier": multiplier, "unit": unit.value, "daily_cut": daily_cut},
            "side": side.value,
            "from": iso(start),
            "to": iso(end),
            "bars": [
                {
                    "time": iso(s),
                    "ts": s,
                    "open": o,
                    "high": h,
                    "low": lo,
                    "close": c,
                    "ticks": k,
                    "complete": done,
                }
                for s, o, h, lo, c, k, done in zip(
                    starts, opens, highs, lows, closes, counts, complete, strict=True
                )
            ],
            "next_cursor": next_cursor,
            "as_of": _as_of(node),
        }
    )


# -- ticks --------------------------------------------------------------------------------


async def ticks(request: Request) -> Response:
    """Raw ticks of one symbol in a time range, oldest first, paged."""
    node = node_of(request)
    params = request.query_params
    symbol = parse_symbol(node.catalog, request.path_params["symbol"])
    _require_entitled(request, [symbol], "symbol")
    limit = parse_int(params, "limit", 1000, low=1, high=MAX_TICKS)
    fmt = parse_choice(params, "format", ("json", "csv"), "json")
    end = parse_time(params, "to", default=time.time_ns())
    start = parse_time(params, "from", default=max(0, end - 3_600 * 10**9))
    if start >= end:
        raise invalid("from", "from must be before to")
    if end - start > MAX_TICK_RANGE_NS:
        raise ApiError(
            400,
            "range_too_large",
            f"the range may span at most {MAX_TICK_RANGE_NS // DAY_NS} days; page with cursor",
            param="from",
        )
    raw_cursor = decode_cursor(params, 3)
    after = TickCursor(*raw_cursor) if raw_cursor is not None else None
    columns = await node.store.ticks(symbol.code, start, end, limit=limit + 1, after=after)
    more = len(columns) > limit
    n = min(len(columns), limit)
    ts, bid, ask = columns.ts[:n].tolist(), columns.bid[:n].tolist(), columns.ask[:n].tolist()
    epoch, offset = columns.epoch[:n].tolist(), columns.offset[:n].tolist()
    seq = columns.seq[:n].tolist()
    next_cursor = encode_cursor(ts[-1], epoch[-1], offset[-1]) if more and n else None
    if fmt == "csv":
        rows = zip((iso(t) for t in ts), ts, bid, ask, epoch, offset, seq, strict=True)
        response = _csv(
            ["time", "ts", "bid", "ask", "epoch", "offset", "seq"], rows, f"{symbol.code}.csv"
        )
        if next_cursor:
            response.headers["X-Next-Cursor"] = next_cursor
        return response
    return _json(
        {
            "symbol": symbol.code,
            "from": iso(start),
            "to": iso(end),
            "ticks": [
                {"time": iso(t), "ts": t, "bid": b, "ask": a, "epoch": e, "offset": o, "seq": q}
                for t, b, a, e, o, q in zip(ts, bid, ask, epoch, offset, seq, strict=True)
            ],
            "next_cursor": next_cursor,
            "as_of": _as_of(node),
        }
    )


# -- conversion, catalogue, market --------------------------------------------------------


async def convert(request: Request) -> Response:
    """Convert an amount between currencies: direct pair, inverse, or a cross through a hub."""
    node = node_of(request)
    params = request.query_params
    source = parse_required(params, "from")
    target = parse_required(params, "to")
    amount = parse_float(params, "amount")
    try:
        result = convert_amount(node.catalog, node.live.quote, source, target, amount)
    except NoRateError as exc:
        raise ApiError(404, "no_rate", str(exc), param="to") from None
    except UnknownSymbolError as exc:
        param = "from" if exc.symbol == source.upper() else "to"
        raise ApiError(
            400, "unknown_currency", f"unknown currency {exc.symbol[:16]!r}", param=param
        ) from None
    except InvalidQueryError as exc:
        raise invalid(exc.param or "to", str(exc)) from None
    for leg in result.quote.legs:
        if not _entitled(request, leg.symbol):
            raise ApiError(
                403, "not_entitled", f"this key is not entitled to {leg.symbol}", param="to"
            )
    quote = result.quote
    return _json(
        {
            "from": result.source,
            "to": result.target,
            "amount": result.amount,
            "rate": result.rate,
            "total": result.total,
            "bid": quote.bid,
            "ask": quote.ask,
            "method": quote.method,
            "time": iso(quote.ts),
            "path": [
                {
                    "symbol": leg.symbol,
                    "inverted": leg.inverted,
                    "bid": leg.bid,
                    "ask": leg.ask,
                    "time": iso(leg.ts),
                    "epoch": leg.epoch,
                    "offset": leg.offset,
                    "seq": leg.seq,
                }
                for leg in quote.legs
            ],
        }
    )


def _symbol_body(symbol: Symbol) -> dict[str, Any]:
    return msgspec.to_builtins(symbol)  # type: ignore[no-any-return]


async def symbols(request: Request) -> Response:
    """The symbol catalogue with metadata."""
    node = node_of(request)
    kind = request.query_params.get("kind")
    if kind is not None and kind not in {k.value for k in Kind}:
        raise invalid("kind", f"kind must be one of {', '.join(k.value for k in Kind)}")
    return _json(
        {"symbols": [_symbol_body(s) for s in node.catalog.values() if kind in (None, s.kind)]}
    )


async def symbol(request: Request) -> Response:
    """One symbol's metadata, with its market status and last quote."""
    node = node_of(request)
    found = parse_symbol(node.catalog, request.path_params["symbol"])
    _require_entitled(request, [found], "symbol")  # the body carries its live quote
    quote = node.live.quote(found.code)
    status = market_status(time.time_ns(), found.kind)
    return _json(
        {
            **_symbol_body(found),
            "market": _status_body(status),
            "last_quote": None if quote is None else _quote_body(quote),
        }
    )


def _status_body(status: Any) -> dict[str, Any]:
    return {
        "open": status.is_open,
        "next_open": None if status.next_open is None else iso(status.next_open),
        "next_close": None if status.next_close is None else iso(status.next_close),
    }


async def market(request: Request) -> Response:
    """Whether each market is open now, and when it next opens and closes."""
    now = time.time_ns()
    kinds = sorted({s.kind for s in node_of(request).catalog.values()})
    return _json(
        {
            "time": iso(now),
            "markets": {kind.value: _status_body(market_status(now, kind)) for kind in kinds},
        }
    )


routes: list[BaseRoute] = [
    Route("/v1/quotes", quotes, methods=["GET"]),
    Route("/v1/bars/{symbol}", bars, methods=["GET"]),
    Route("/v1/ticks/{symbol}", ticks, methods=["GET"]),
    Route("/v1/convert", convert, methods=["GET"]),
    Route("/v1/symbols", symbols, methods=["GET"]),
    Route("/v1/symbols/{symbol}", symbol, methods=["GET"]),
    Route("/v1/market", market, methods=["GET"]),
]
