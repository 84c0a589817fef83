"""``/api/v1/live``: TraderMade live quotes from the node's live state, with a response cache.

Quotes come from :attr:`Node.live <tickwire.node.Node.live>`, the state the stream is built
from, so a REST quote is never older than the last tick the live state has applied and never
shows a tick the journal could lose.

A pair in the catalogue is quoted as is; any other pair of catalogue currencies is derived
by :func:`tickwire.rates.derive_quote` (an inverse such as ``USDEUR``, or a cross through a
hub). A code that cannot be quoted becomes ``{"error": 204, "instrument": …, "message": …}``
in its place in the list; the other quotes are unaffected.

Cost: the endpoint is a plain ASGI app (no Request/Response objects on the hot path). The
parsed query is cached by the raw query string, and the encoded body by the normalised
currency list; a cached body is reused while the whole second of ``requested_time`` is the
same, the ``(epoch, offset)`` of every quote it was built from is unchanged and the caller's
entitlements to those quotes are unchanged. A repeat then costs one live-state lookup per
symbol and a dict lookup. Both caches are bounded (:data:`MAX_CACHED`).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec
from starlette.types import Receive, Scope, Send

from ..catalog import Catalog
from ..errors import InvalidQueryError, NoRateError, UnknownSymbolError
from ..model import Quote
from ..rates import derive_quote
from .tradermade_wire import (
    MAX_CODE_CHARS,
    NOT_ENTITLED,
    PAIR_UNAVAILABLE,
    TraderMadeError,
    http_date,
    parse_codes,
    parse_flag,
    required,
    round_sig,
)

__all__ = ["MAX_CACHED", "MAX_LIVE_PAIRS", "LiveEndpoint"]

log = logging.getLogger("tickwire.api.tradermade")

MAX_LIVE_PAIRS: Final = 50
"""Most codes in one ``currency`` list (TraderMade documents 10; we allow more)."""
MAX_CACHED: Final = 4096
"""Most entries in each of the two caches; a full cache is cleared."""

Entitlements = Callable[[Scope, Sequence[str]], tuple[bool, ...]]
Version = tuple[int, int] | None


class LiveQuote(msgspec.Struct, gc=False):
    """One pair quote; fields in alphabetical order, as TraderMade sends them."""

    ask: float
    base_currency: str
    bid: float
    mid: float
    quote_currency: str


class LiveQuoteTs(msgspec.Struct, gc=False):
    """A pair quote with ``per_quote_ts``: ``timestamp`` is its last tick, in epoch seconds."""

    ask: float
    base_currency: str
    bid: float
    mid: float
    quote_currency: str
    timestamp: int


class QuoteError(msgspec.Struct, gc=False):
    """A quote that could not be given, in its place in the list."""

    error: int
    instrument: str
    message: str


class LiveBody(msgspec.Struct):
    """The whole ``/live`` answer."""

    endpoint: str
    quotes: list[LiveQuote | LiveQuoteTs | QuoteError]
    requested_time: str
    timestamp: int


_encoder = msgspec.json.Encoder()
_JSON_HEADERS: Final = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class _Plan:
    codes: tuple[str, ...]
    per_quote_ts: bool


@dataclass(frozen=True, slots=True)
class _Entry:
    second: int
    deps: tuple[str, ...]
    versions: tuple[Version, ...]
    allowed: tuple[bool, ...]
    body: bytes


def _version(quote: Quote | None) -> Version:
    return None if quote is None else (quote.epoch, quote.offset)


class LiveEndpoint:
    """The ``/api/v1/live`` ASGI app (see the module docstring for the caching guarantees).

    ``entitlements(scope, symbols)`` says, for each catalogue symbol, whether the caller may
    read it; a derived quote needs every symbol it is built from. A denied quote becomes
    ``{"error": 403, "instrument": …, "message": …}`` in its place.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], int] = time.time_ns,
        entitlements: Entitlements,
        max_pairs: int = MAX_LIVE_PAIRS,
    ) -> None:
        self._clock = clock
        self._entitlements = entitlements
        self._max_pairs = max_pairs
        self._plans: dict[bytes, _Plan | TraderMadeError] = {}
        self._bodies: dict[tuple[_Plan, int], _Entry] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - routed for HTTP only
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _send(
                send, 405, b'{"message":"The method is not allowed for the requested URL."}'
            )
            return
        try:
            body = self._answer(scope)
            status = 200
        except TraderMadeError as exc:
            status, body = exc.status, _encoder.encode(exc.body)
        await _send(send, status, b"" if method == "HEAD" else body, length=len(body))

    # -- the answer -------------------------------------------------------------------------

    def _plan(self, query: bytes) -> _Plan:
        plan = self._plans.get(query)
        if plan is None:
            try:
                params = dict(
                    urllib.parse.parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                )
                text = required(
                    params, "currency", max_chars=self._max_pairs * (MAX_CODE_CHARS + 1)
                )
                codes = parse_codes("currency", text, max_codes=self._max_pairs)
                plan = _Plan(codes, parse_flag(params.get("per_quote_ts")))
            except TraderMadeError as exc:
                plan = exc
            if len(self._plans) >= MAX_CACHED:
                self._plans.clear()
            self._plans[query] = plan
        if isinstance(plan, TraderMadeError):
            raise plan
        return plan

    def _answer(self, scope: Scope) -> bytes:
        plan = self._plan(scope.get("query_string", b""))
        node = scope["app"].state.node
        live, catalog = node.live, node.catalog
        second = self._clock() // 1_000_000_000
        key = (plan, id(catalog))
        entry = self._bodies.get(key)
        if entry is not None and entry.second == second:
            quote = live.quote
            versions = tuple(_version(quote(s)) for s in entry.deps)
            if (
                versions == entry.versions
                and self._entitlements(scope, entry.deps) == entry.allowed
            ):
                return entry.body
        entry = self._build(plan, catalog, live.quote, scope, second)
        if len(self._bodies) >= MAX_CACHED:
            self._bodies.clear()
        self._bodies[key] = entry
        return entry.body

    def _build(
        self,
        plan: _Plan,
        catalog: Catalog,
        lookup: Callable[[str], Quote | None],
        scope: Scope,
        second: int,
    ) -> _Entry:
        consulted: dict[str, Version] = {}
        allowed: dict[str, bool] = {}

        def recording(symbol: str) -> Quote | None:
            quote = lookup(symbol)
            consulted.setdefault(symbol, _version(quote))
            return quote

        def may_read(symbol: str) -> bool:
            ok = allowed.get(symbol)
            if ok is None:
                ok = allowed[symbol] = self._entitlements(scope, (symbol,))[0]
            return ok

        quotes: list[LiveQuote | LiveQuoteTs | QuoteError] = []
        for code in plan.codes:
            quotes.append(self._one(code, plan.per_quote_ts, catalog, recording, may_read))
        deps = tuple(consulted)
        body = _encoder.encode(LiveBody("live", quotes, http_date(second), second))
        return _Entry(
            second,
            deps,
            tuple(consulted[s] for s in deps),
            tuple(may_read(s) for s in deps),
            body,
        )

    @staticmethod
    def _one(
        code: str,
        per_quote_ts: bool,
        catalog: Catalog,
        lookup: Callable[[str], Quote | None],
        may_read: Callable[[str], bool],
    ) -> LiveQuote | LiveQuoteTs | QuoteError:
        if code in catalog:
            symbol = catalog[code]
            quote = lookup(code)
            if quote is None:
                return QuoteError(204, code, PAIR_UNAVAILABLE)
            if not may_read(code):
                return QuoteError(403, code, NOT_ENTITLED)
            places = symbol.decimals + 1
            base, quote_ccy = symbol.base, symbol.quote
            bid, ask = quote.bid, quote.ask
            mid = round((bid + ask) / 2, places)
            ts = quote.ts
        else:
            if len(code) != 6:
                return QuoteError(204, code, PAIR_UNAVAILABLE)
            try:
                derived = derive_quote(catalog, lookup, code[:3], code[3:])
            except (NoRateError, UnknownSymbolError, InvalidQueryError):
                return QuoteError(204, code, PAIR_UNAVAILABLE)
            if not all(may_read(leg.symbol) for leg in derived.legs):
                return QuoteError(403, code, NOT_ENTITLED)
            base, quote_ccy = derived.base, derived.quote
            bid, ask = round_sig(derived.bid), round_sig(derived.ask)
            mid = round_sig(derived.mid)
            ts = derived.ts
        if per_quote_ts:
            return LiveQuoteTs(ask, base, bid, mid, quote_ccy, ts // 1_000_000_000)
        return LiveQuote(ask, base, bid, mid, quote_ccy)


async def _send(send: Send, status: int, body: bytes, *, length: int | None = None) -> None:
    size = len(body) if length is None else length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON_HEADERS, (b"content-length", str(size).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
