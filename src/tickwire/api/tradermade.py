"""The TraderMade-compatible REST surface: ``/api/v1/...``, so TraderMade clients work unchanged.

Only the host changes: paths, parameter names, date formats, output formats, field names,
key order (sorted), timestamp units and error shapes follow TraderMade (the compatibility spec
and ``docs/tradermade-compat.md``, which records every choice made where the spec is unsure).

Sources: live quotes (``/live``, ``/convert``) come from the node's live state, the same state
the stream is built from; history comes from the node's store, which holds every tick the
journal has made durable up to the store writer's position (normally < 0.2 s behind). Bars are
built from mid prices; daily bars run 22:00 → 22:00 GMT and the still-forming bar of today is
included. A reversed code (``USDEUR``) is served from the catalogue pair by inversion.

Guarantees:

* bad input (dates, ranges, codes, amounts, formats, lengths) gets a TraderMade error body with
  a 4xx status, or HTTP 200 with ``{"error": 204, ...}`` for "no data", as TraderMade documents;
  a failing store gets 503; nothing is answered with a stack trace;
* every response is bounded: at most :data:`MAX_PAIRS` codes per list, :data:`MAX_BARS` bars,
  :data:`MAX_TICKS` ticks;
* JSON object keys come out sorted, as in TraderMade's captured bodies.

Mount :data:`routes` on the application root; wrap the application in
:class:`DoubleSlashMiddleware` (outermost) to also serve ``//api/v1/...``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import msgspec
import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..access import entitled
from ..catalog import Catalog
from ..errors import InvalidQueryError, NoRateError, TickwireError, UnknownSymbolError
from ..markethours import is_open, market_status
from ..model import BarUnit, Kind, PriceSide
from ..node import Node
from ..rates import derive_quote
from ..server.responses import JSONResponse
from ..store.base import BarColumns
from ..timeframes import Resolution, bucket_start
from .tradermade_live import MAX_LIVE_PAIRS, LiveEndpoint
from .tradermade_wire import (
    DAY_NS,
    HOUR_NS,
    MAX_CODE_CHARS,
    MINUTE_NS,
    NO_DATA,
    NOT_ENTITLED,
    PAIR_UNAVAILABLE,
    HistorySource,
    TraderMadeError,
    coded,
    csv_table,
    dash_label,
    day_label,
    day_start_ns,
    http_date,
    invalid,
    minute_label,
    optional,
    parse_amount,
    parse_codes,
    parse_day,
    parse_flag,
    parse_instant,
    path_label,
    price_rounder,
    quote_error,
    required,
    resolve_history,
    round_sig,
    table,
    trading_day,
    weekend_to_friday,
)

__all__ = [
    "DEFAULT_HISTORICAL",
    "MAX_BARS",
    "MAX_PAIRS",
    "MAX_TICKS",
    "DoubleSlashMiddleware",
    "make_routes",
    "routes",
]

log = logging.getLogger("tickwire.api.tradermade")

MAX_PAIRS: Final = MAX_LIVE_PAIRS
"""Most codes in a ``currency`` list (``/live``, ``/historical``, ``/pandasDF?fields=close``)."""
MAX_BARS: Final = 10_000
"""Most bars read for one answer (the range limits keep real answers far below it)."""
MAX_TICKS: Final = 100_000
"""Most ticks in one tick answer; a busier range is refused with a 400, never cut short."""
FUTURE_TOLERANCE_NS: Final = 60 * 1_000_000_000
"""An intraday end up to this far past the server's clock is accepted (client clock skew)."""
MAX_DAILY_DAYS: Final = 366
MAX_HOURLY_NS: Final = 31 * DAY_NS
MAX_MINUTE_WORKING_DAYS: Final = 2
MAX_MINUTE_SPAN_NS: Final = 4 * DAY_NS
MAX_TICK_MINUTES: Final = 60
MAX_SAMPLE_MINUTES: Final = 30

DEFAULT_HISTORICAL: Final = (
    "EURUSD",
    "GBPUSD",
    "USDJPY",
    "USDCAD",
    "USDCHF",
    "AUDUSD",
    "NZDUSD",
    "EURGBP",
    "EURJPY",
)
"""``/historical`` without ``currency`` answers these nine majors (as a captured body did)."""

DAILY: Final = Resolution(1, BarUnit.DAY, daily_cut=22)
COLUMNS: Final = ("date", "open", "high", "low", "close")
TICK_COLUMNS: Final = ("time", "inst", "bid", "ask")
_PERIODS: Final = {"hourly": (1, 2, 4, 6, 8, 24), "minute": (1, 5, 10, 15, 30)}
_TIMESERIES_FORMATS: Final = ("records", "csv", "index", "columns", "split")
_PANDAS_FORMATS: Final = ("records", "index", "columns", "split")
_LIST_CHARS: Final = MAX_PAIRS * (MAX_CODE_CHARS + 1)

Handler = Callable[[Request, Node, int], Awaitable[Any]]
Row = tuple[str, float, float, float, float]


def _entitled(request: Request, symbol: str) -> bool:
    """May the caller read catalogue ``symbol``? (An inverse or cross asks for each leg.)

    The access middleware puts the caller's key record in ``request.state.key``; without a
    record (no access layer in front, as in embedded use) everything is allowed. A denial is
    TraderMade's "Your plan doesn't allow access to this dataset", as ``{"error": 403, …}``
    with HTTP 403 (the access layer's status for the same refusal), or in place of the quote
    inside a list.
    """
    record = getattr(request.state, "key", None)
    return record is None or entitled(record, symbol)


def _entitlements(scope: Scope, symbols: Sequence[str]) -> tuple[bool, ...]:
    """:func:`_entitled` for several symbols at once, from the raw ASGI scope (for ``/live``)."""
    state = scope.get("state")
    record = state.get("key") if isinstance(state, Mapping) else None
    if record is None or record.entitlements.symbols == ("*",):
        return (True,) * len(symbols)
    return tuple(entitled(record, s) for s in symbols)


class TickOut(msgspec.Struct, gc=False):
    """One tick of ``tick_historical``: ``time`` in epoch milliseconds, keys sorted."""

    ask: float
    bid: float
    inst: str
    time: int


# -- the application side ---------------------------------------------------------------------


class DoubleSlashMiddleware:
    """Serve ``//api/v1/...`` as ``/api/v1/...`` (TraderMade's docs examples use the double slash).

    Put it outermost, so that authentication and rate limiting see the rewritten path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("//api/v1/"):
            scope = dict(scope)
            scope["path"] = scope["path"][1:]
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.startswith(b"//"):
                scope["raw_path"] = raw[1:]
        await self.app(scope, receive, send)


def make_routes(*, clock: Callable[[], int] = time.time_ns) -> list[BaseRoute]:
    """The ``/api/v1/...`` routes; ``clock`` (UTC ns) decides "now" and "future".

    The node is read from ``request.app.state.node`` on each request.
    """
    api = _Api(clock)
    endpoints: list[tuple[str, Handler]] = [
        ("historical", api.historical),
        ("minute_historical", api.minute_historical),
        ("hour_historical", api.hour_historical),
        ("timeseries", api.timeseries),
        ("pandasDF", api.pandas_df),
        ("convert", api.convert),
        ("tick_historical/{symbol}/{start}/{end}", api.tick_historical),
        ("tick_historical_sample/{symbol}/{start}/{end}", api.tick_historical_sample),
        ("live_currencies_list", api.live_currencies_list),
        ("live_crypto_list", api.live_crypto_list),
        ("historical_currencies_list", api.historical_currencies_list),
        ("cfd_list", api.cfd_list),
        ("streaming_currencies_list", api.streaming_currencies_list),
        ("market_open_status", api.market_open_status),
        ("market_opening_times", api.market_opening_times),
    ]
    result: list[BaseRoute] = [
        Route("/api/v1/live", LiveEndpoint(clock=clock, entitlements=_entitlements), name="tm_live")
    ]
    for path, handler in endpoints:
        name = "tm_" + path.split("/")[0]
        result.append(Route(f"/api/v1/{path}", api.wrap(handler), name=name))
    return result


class _Api:
    """The handlers; each gets the request, the node and the current time (UTC ns)."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._lists: dict[tuple[int, str], bytes] = {}

    def wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Turn a handler into a Starlette endpoint that answers every error in TraderMade form."""

        async def endpoint(request: Request) -> Response:
            try:
                node: Node = request.app.state.node
                result = await handler(request, node, self._clock())
            except TraderMadeError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            except InvalidQueryError as exc:
                err = invalid(exc.param or "query", str(exc))
                return JSONResponse(err.body, status_code=err.status)
            except TickwireError:
                log.exception("TraderMade %s failed", request.url.path)
                body = {"error": 503, "message": "History is unavailable; try again later"}
                return JSONResponse(body, status_code=503)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        endpoint.__name__ = getattr(handler, "__name__", "endpoint")
        return endpoint

    # -- daily ------------------------------------------------------------------------------

    async def historical(self, request: Request, node: Node, now: int) -> Any:
        """Daily OHLC of one date for a list of codes; Saturday and Sunday give Friday."""
        params = request.query_params
        day = parse_day("date", required(params, "date"))
        text = optional(params, "currency", max_chars=_LIST_CHARS)
        codes = parse_codes("currency", text, max_codes=MAX_PAIRS) if text else DEFAULT_HISTORICAL
        sources = [resolve_history(node.catalog, code) for code in codes]
        if not all(s is not None and s.kind is Kind.CRYPTO for s in sources):
            day = weekend_to_friday(day)
        if day > trading_day(now):
            raise invalid("date", "date must not be in the future")
        start = day_start_ns(day)
        wanted = sorted({s.source for s in sources if s is not None})
        bars = await node.store.bars_many(wanted, DAILY, PriceSide.MID, start, start + DAY_NS)
        quotes: list[dict[str, Any]] = []
        for code, src in zip(codes, sources, strict=True):
            if src is None:
                quotes.append(quote_error(204, code, PAIR_UNAVAILABLE))
            elif not _entitled(request, src.source):
                quotes.append(quote_error(403, code, NOT_ENTITLED))
            else:
                rows = _rows(src, bars[src.source], day_label)
                if not rows:
                    quotes.append(quote_error(204, code, NO_DATA))
                    continue
                _, o, h, low, c = rows[0]
                quotes.append(
                    {
                        "base_currency": src.base,
                        "close": c,
                        "high": h,
                        "low": low,
                        "open": o,
                        "quote_currency": src.quote,
                    }
                )
        return {
            "date": day.isoformat(),
            "endpoint": "historical",
            "quotes": quotes,
            "request_time": http_date(now // 1_000_000_000),
        }

    async def pandas_df(self, request: Request, node: Node, now: int) -> Any:
        """Daily bars as a bare pandas-style table: OHLC of one code, or closes of several."""
        params = request.query_params
        fields = (optional(params, "fields") or "ohlc").lower()
        if fields not in ("ohlc", "close"):
            raise invalid("fields", "fields must be ohlc or close")
        codes = parse_codes(
            "currency", required(params, "currency", max_chars=_LIST_CHARS), max_codes=MAX_PAIRS
        )
        codes = tuple(dict.fromkeys(codes))
        if fields == "ohlc" and len(codes) > 1:
            raise invalid("fields", "fields=ohlc takes one currency; use fields=close for several")
        fmt = (optional(params, "format") or "records").lower()
        if fmt not in _PANDAS_FORMATS:
            raise invalid("format", "format must be records, index, columns or split")
        first, last = _day_range(params, now)
        sources = [_history_source(node.catalog, code) for code in codes]
        for src in sources:
            _require_entitled(request, src)
        weekend = parse_flag(params.get("weekend"))
        bars = await node.store.bars_many(
            sorted({s.source for s in sources}),
            DAILY,
            PriceSide.MID,
            day_start_ns(first),
            day_start_ns(last) + DAY_NS,
        )
        keep = None if weekend else _weekday_bar
        if fields == "ohlc":
            return table(_rows(sources[0], bars[sources[0].source], day_label, keep), COLUMNS, fmt)
        closes: dict[str, dict[str, float]] = {}
        for src in sources:
            closes[src.code] = {
                row[0]: row[4] for row in _rows(src, bars[src.source], day_label, keep)
            }
        dates = sorted({d for by_date in closes.values() for d in by_date})
        columns = ("date", *codes)
        rows = [(d, *(closes[c].get(d) for c in codes)) for d in dates]
        return table(rows, columns, fmt)

    # -- one intraday bar -------------------------------------------------------------------

    async def minute_historical(self, request: Request, node: Node, now: int) -> Any:
        """One minute bar (OHLC) at ``date_time``; off-grid times are floored."""
        return await self._one_bar(request, node, now, "minute_historical", BarUnit.MINUTE)

    async def hour_historical(self, request: Request, node: Node, now: int) -> Any:
        """One hour bar (OHLC) at ``date_time``; ``10:29`` gives the 10:00 bar."""
        return await self._one_bar(request, node, now, "hour_historical", BarUnit.HOUR)

    async def _one_bar(
        self, request: Request, node: Node, now: int, endpoint: str, unit: BarUnit
    ) -> Any:
        params = request.query_params
        src = _history_source(node.catalog, _single_code(params, "currency"))
        at, _ = parse_instant("date_time", required(params, "date_time"))
        width = MINUTE_NS if unit is BarUnit.MINUTE else HOUR_NS
        at -= at % width
        if src.kind is not Kind.CRYPTO:
            at = _weekend_back_to_friday(at)
        if at > now:
            raise invalid("date_time", "date_time must not be in the future")
        _require_entitled(request, src)
        cols = await node.store.bars(
            src.source, Resolution(1, unit), PriceSide.MID, at, at + width, limit=1
        )
        rows = _rows(src, cols, dash_label)
        if not rows:
            raise coded(204, NO_DATA)
        label, o, h, low, c = rows[0]
        return {
            "close": c,
            "currency": src.code,
            "date_time": label,
            "endpoint": endpoint,
            "high": h,
            "low": low,
            "open": o,
            "request_time": http_date(now // 1_000_000_000),
        }

    # -- time series ------------------------------------------------------------------------

    async def timeseries(self, request: Request, node: Node, now: int) -> Any:
        """Bars of one code over a range: daily (≤ 1 year), hourly (≤ 1 month), minute (≤ 2
        working days). An unsupported ``period`` falls back to 1; weekend bars only with
        ``weekend=true``; today's forming bar is included.
        """
        params = request.query_params
        src = _history_source(node.catalog, _single_code(params, "currency"))
        interval = (optional(params, "interval") or "daily").lower()
        if interval not in ("daily", "hourly", "minute"):
            raise invalid("interval", "interval must be daily, hourly or minute")
        fmt = (optional(params, "format") or "records").lower()
        fmt = "records" if fmt == "json" else fmt
        if fmt not in _TIMESERIES_FORMATS:
            raise invalid("format", "format must be records, csv, index, columns or split")
        weekend = parse_flag(params.get("weekend"))
        start_text = required(params, "start_date")
        if interval == "daily":
            first, last = _day_range(params, now)
            _require_entitled(request, src)
            cols = await node.store.bars(
                src.source,
                DAILY,
                PriceSide.MID,
                day_start_ns(first),
                day_start_ns(last) + DAY_NS,
                limit=MAX_BARS,
            )
            rows = _rows(src, cols, day_label, None if weekend else _weekday_bar)
            end_echo = required(params, "end_date")
        else:
            resolution = _intraday_resolution(interval, params.get("period"))
            start, end = _intraday_range(params, interval, now)
            _require_entitled(request, src)
            effective_end = min(end, now)
            cols = await node.store.bars(
                src.source,
                resolution,
                PriceSide.MID,
                bucket_start(start, resolution),
                effective_end + 1,
                limit=MAX_BARS,
            )
            keep = None if weekend else _open_bar(resolution.width_ns)
            rows = _rows(src, cols, minute_label, keep)
            end_echo = minute_label(effective_end - effective_end % MINUTE_NS)
        if fmt == "csv":
            return Response(csv_table(rows, COLUMNS), media_type="text/csv")
        return {
            "base_currency": src.base,
            "end_date": end_echo,
            "endpoint": "timeseries",
            "quote_currency": src.quote,
            "quotes": table(rows, COLUMNS, fmt),
            "request_time": http_date(now // 1_000_000_000),
            "start_date": start_text,
        }

    # -- ticks ------------------------------------------------------------------------------

    async def tick_historical(self, request: Request, node: Node, now: int) -> Any:
        """Raw ticks of one code over at most 60 minutes (``time`` in epoch ms)."""
        return await self._ticks(request, node, now, "tick_historical", MAX_TICK_MINUTES)

    async def tick_historical_sample(self, request: Request, node: Node, now: int) -> Any:
        """Raw ticks of one code over at most 30 minutes (``time`` in epoch ms)."""
        return await self._ticks(request, node, now, "tick_historical_sample", MAX_SAMPLE_MINUTES)

    async def _ticks(
        self, request: Request, node: Node, now: int, endpoint: str, max_minutes: int
    ) -> Any:
        path = request.path_params
        values = {"symbol": path["symbol"], "start_date": path["start"], "end_date": path["end"]}
        src = _history_source(node.catalog, _single_code(values, "symbol"), "symbol")
        fmt = (optional(request.query_params, "format") or "json").lower()
        if fmt not in ("json", "csv"):
            raise invalid("format", "format must be json or csv")
        start, _ = parse_instant("start_date", required(values, "start_date"))
        end, _ = parse_instant("end_date", required(values, "end_date"))
        if end <= start:
            raise invalid("end_date", "end_date must be after start_date")
        if end - start > max_minutes * MINUTE_NS:
            raise invalid("end_date", f"{endpoint} covers at most {max_minutes} minutes per call")
        if end > now + FUTURE_TOLERANCE_NS:
            raise invalid("end_date", "end_date must not be in the future")
        _require_entitled(request, src)
        cols = await node.store.ticks(src.source, start, end, limit=MAX_TICKS + 1)
        if len(cols) > MAX_TICKS:
            raise invalid(
                "end_date", f"more than {MAX_TICKS} ticks in the range; ask for a shorter one"
            )
        bid, ask = cols.bid, cols.ask
        if src.inverted:
            with np.errstate(divide="ignore"):
                bid, ask = 1 / cols.ask, 1 / cols.bid
            bids = [round_sig(v) for v in bid.tolist()]
            asks = [round_sig(v) for v in ask.tolist()]
        else:
            bids, asks = bid.tolist(), ask.tolist()
        code = src.code
        if fmt == "csv":
            stamps = np.datetime_as_string((cols.ts // 1000).astype("datetime64[us]"), unit="us")
            times = [s.replace("T", " ") + "+00:00" for s in stamps.tolist()]
            text = csv_table(zip(times, [code] * len(times), bids, asks, strict=True), TICK_COLUMNS)
            return Response(text, media_type="text/csv")
        millis = (cols.ts // 1_000_000).tolist()
        quotes = [TickOut(a, b, code, t) for t, b, a in zip(millis, bids, asks, strict=True)]
        return {
            "end_date": path_label(end),
            "endpoint": endpoint,
            "instrument": code,
            "quotes": quotes,
            "start_date": path_label(start),
        }

    # -- conversion -------------------------------------------------------------------------

    async def convert(self, request: Request, node: Node, now: int) -> Any:
        """``amount`` of ``from`` in ``to`` at the live mid; ``total = amount × quote``."""
        params = request.query_params
        source = required(params, "from", max_chars=MAX_CODE_CHARS).upper()
        target = required(params, "to", max_chars=MAX_CODE_CHARS).upper()
        amount = parse_amount("amount", required(params, "amount"))
        catalog = node.catalog
        currencies = catalog.currencies()
        for name, code in (("from", source), ("to", target)):
            if code not in currencies:
                raise invalid(name, f"currency {code!r} is not available")
        if source == target:
            rate = 1.0
        else:
            try:
                derived = derive_quote(catalog, node.live.quote, source, target)
            except (NoRateError, UnknownSymbolError):
                raise coded(204, PAIR_UNAVAILABLE) from None
            if not all(_entitled(request, leg.symbol) for leg in derived.legs):
                raise coded(403, NOT_ENTITLED)
            pair = source + target
            if derived.method == "direct" and pair in catalog:
                rate = round(derived.mid, catalog[pair].decimals + 1)
            else:
                rate = round_sig(derived.mid)
        second = now // 1_000_000_000
        return {
            "base_currency": source,
            "quote": rate,
            "quote_currency": target,
            "requested_time": http_date(second),
            "timestamp": second,
            "total": round_sig(amount * rate, 12),
        }

    # -- lists and market hours -------------------------------------------------------------

    async def live_currencies_list(self, request: Request, node: Node, now: int) -> Any:
        """Currencies that ``/live`` and ``/convert`` combine freely (crypto excluded)."""
        return self._list(node.catalog, "live_currencies", _live_currencies)

    async def live_crypto_list(self, request: Request, node: Node, now: int) -> Any:
        """Crypto currencies (quoted against the other catalogue currencies)."""
        return self._list(node.catalog, "live_crypto", _crypto_currencies)

    async def historical_currencies_list(self, request: Request, node: Node, now: int) -> Any:
        """Pairs with history: every catalogue pair and its reverse, code → name."""
        return self._list(node.catalog, "historical_currencies", _history_pairs)

    async def streaming_currencies_list(self, request: Request, node: Node, now: int) -> Any:
        """Symbols on the stream, code → name."""
        return self._list(node.catalog, "streaming_currencies", _stream_symbols)

    async def cfd_list(self, request: Request, node: Node, now: int) -> Any:
        """CFDs in the catalogue (none in the built-in one), as ``{"available_cfds": {...}}``."""
        key = (id(node.catalog), "cfd_list")
        body = self._lists.get(key)
        if body is None:
            cfds = {s.code: s.name for s in node.catalog.values() if s.kind is Kind.CFD}
            body = self._lists[key] = _encode({"available_cfds": dict(sorted(cfds.items()))})
        return Response(body, media_type="application/json")

    async def market_open_status(self, request: Request, node: Node, now: int) -> Any:
        """Whether each instrument class trades now, with its next open and close (RFC 1123)."""
        markets: dict[str, Any] = {}
        for kind in sorted({s.kind for s in node.catalog.values()}):
            status = market_status(now, Kind.CRYPTO if kind is Kind.CRYPTO else Kind.FX)
            markets[kind.value] = {
                "is_open": status.is_open,
                "next_close": _when(status.next_close),
                "next_open": _when(status.next_open),
                "status": "open" if status.is_open else "closed",
            }
        second = now // 1_000_000_000
        return {
            "endpoint": "market_open_status",
            "markets": markets,
            "request_time": http_date(second),
            "timestamp": second,
        }

    async def market_opening_times(self, request: Request, node: Node, now: int) -> Any:
        """The weekly schedule of each instrument class (GMT); holidays are not modelled."""
        markets: dict[str, Any] = {}
        for kind in sorted({s.kind for s in node.catalog.values()}):
            if kind is Kind.CRYPTO:
                markets[kind.value] = {"always_open": True, "sessions": []}
            else:
                session = {"close": "Friday 22:00", "open": "Sunday 22:00"}
                markets[kind.value] = {"always_open": False, "sessions": [session]}
        return {
            "endpoint": "market_opening_times",
            "holidays": [],
            "markets": markets,
            "timezone": "GMT",
        }

    def _list(
        self, catalog: Catalog, endpoint: str, entries: Callable[[Catalog], dict[str, str]]
    ) -> Response:
        key = (id(catalog), endpoint)
        body = self._lists.get(key)
        if body is None:
            available = dict(sorted(entries(catalog).items()))
            body = _encode({"available_currencies": available, "endpoint": endpoint})
            self._lists[key] = body
        return Response(body, media_type="application/json")


# -- helpers ----------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def _encode(document: Any) -> bytes:
    return _encoder.encode(document)


def _when(ns: int | None) -> str | None:
    return None if ns is None else http_date(ns // 1_000_000_000)


def _single_code(params: Mapping[str, str], name: str) -> str:
    text = required(params, name, max_chars=MAX_CODE_CHARS * 4)
    if "," in text:
        raise invalid(name, "one currency per request")
    return parse_codes(name, text, max_codes=1)[0]


def _history_source(catalog: Catalog, code: str, param: str = "currency") -> HistorySource:
    src = resolve_history(catalog, code)
    if src is None:
        raise invalid(param, f"currency pair {code!r} is not available")
    return src


def _require_entitled(request: Request, src: HistorySource) -> None:
    if not _entitled(request, src.source):
        raise coded(403, NOT_ENTITLED)


def _day_range(params: Mapping[str, str], now: int) -> tuple[dt.date, dt.date]:
    first = parse_day("start_date", required(params, "start_date"))
    last = parse_day("end_date", required(params, "end_date"))
    if last < first:
        raise invalid("end_date", "end_date must not be before start_date")
    if last > trading_day(now):
        raise invalid("end_date", "end_date must not be in the future")
    if (last - first).days > MAX_DAILY_DAYS:
        raise invalid("end_date", "daily data covers at most 1 year per request")
    return first, last


def _intraday_range(params: Mapping[str, str], interval: str, now: int) -> tuple[int, int]:
    """``[start, end]`` in ns; a date-only end means the end of that day."""
    start, _ = parse_instant("start_date", required(params, "start_date"))
    end, date_only = parse_instant("end_date", required(params, "end_date"))
    if start > now + FUTURE_TOLERANCE_NS:
        raise invalid("start_date", "start_date must not be in the future")
    # a date-only end is in the future when its day has not begun
    if (end if date_only else end - FUTURE_TOLERANCE_NS) > now:
        raise invalid("end_date", "end_date must not be in the future")
    if date_only:
        end += DAY_NS - 1
    if end < start:
        raise invalid("end_date", "end_date must not be before start_date")
    if interval == "hourly" and end - start > MAX_HOURLY_NS:
        raise invalid("end_date", "hourly data covers at most 1 month per request")
    if interval == "minute" and (
        end - start > MAX_MINUTE_SPAN_NS or _working_days(start, end) > MAX_MINUTE_WORKING_DAYS
    ):
        raise invalid("end_date", "minute data covers at most 2 working days per request")
    return start, end


def _working_days(start: int, end: int) -> int:
    first, last = start // DAY_NS, end // DAY_NS  # days since 1970-01-01, a Thursday
    return sum(1 for day in range(first, last + 1) if (day + 3) % 7 < 5)


def _intraday_resolution(interval: str, period: str | None) -> Resolution:
    """The bar width: ``period`` when TraderMade lists it for ``interval``, else 1."""
    try:
        value = int(period) if period is not None and len(period) <= 8 else 1
    except ValueError:
        value = 1
    if value not in _PERIODS[interval]:
        value = 1
    return Resolution(value, BarUnit.HOUR if interval == "hourly" else BarUnit.MINUTE)


def _weekday_bar(start: int) -> bool:
    return trading_day(start).weekday() < 5


def _open_bar(width: int) -> Callable[[int], bool]:
    def keep(start: int) -> bool:
        return is_open(start) or is_open(start + width - 1)

    return keep


def _weekend_back_to_friday(at: int) -> int:
    """A Saturday or Sunday instant while FX is closed → the same time on Friday."""
    if is_open(at):
        return at
    weekday = (at // DAY_NS + 3) % 7  # Monday = 0
    return at - (weekday - 4) * DAY_NS if weekday >= 5 else at


def _rows(
    src: HistorySource,
    cols: BarColumns,
    label: Callable[[int], str],
    keep: Callable[[int], bool] | None = None,
) -> list[Row]:
    """Bars as ``(label, open, high, low, close)`` rows in the code's direction, rounded."""
    if not len(cols):
        return []
    o, h, low, c = cols.open, cols.high, cols.low, cols.close
    if src.inverted:
        with np.errstate(divide="ignore"):
            o, h, low, c = 1 / o, 1 / low, 1 / h, 1 / c
    r = price_rounder(src)
    rows: list[Row] = []
    for start, a, b, d, e in zip(
        cols.start.tolist(), o.tolist(), h.tolist(), low.tolist(), c.tolist(), strict=True
    ):
        if keep is None or keep(start):
            rows.append((label(start), r(a), r(b), r(d), r(e)))
    return rows


def _names(catalog: Catalog) -> dict[str, str]:
    names: dict[str, str] = {}
    for s in catalog.values():
        parts = s.name.split(" / ")
        if len(parts) == 2:
            names.setdefault(s.base, parts[0])
            names.setdefault(s.quote, parts[1])
    return names


def _crypto_codes(catalog: Catalog) -> set[str]:
    return {s.base for s in catalog.values() if s.kind is Kind.CRYPTO}


def _live_currencies(catalog: Catalog) -> dict[str, str]:
    names, crypto = _names(catalog), _crypto_codes(catalog)
    return {c: names.get(c, c) for c in catalog.currencies() if c not in crypto}


def _crypto_currencies(catalog: Catalog) -> dict[str, str]:
    names = _names(catalog)
    return {c: names.get(c, c) for c in _crypto_codes(catalog)}


def _history_pairs(catalog: Catalog) -> dict[str, str]:
    names = _names(catalog)
    out: dict[str, str] = {}
    for s in catalog.values():
        out[s.code] = s.name
        if len(s.code) == 6 and s.quote + s.base not in catalog:
            out[s.quote + s.base] = f"{names.get(s.quote, s.quote)} / {names.get(s.base, s.base)}"
    return out


def _stream_symbols(catalog: Catalog) -> dict[str, str]:
    return {s.code: s.name for s in catalog.values()}


routes: list[BaseRoute] = make_routes()
"""The routes with the real clock; mount them on the application root."""
