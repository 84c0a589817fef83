"""The asyncio client: :class:`BaseClient` plus an ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ._base import BaseClient, Request, TimeLike
from ._config import DEFAULT_BACKOFF, DEFAULT_RETRIES, DEFAULT_TIMEOUTS, Backoff, Retries, Timeouts
from ._errors import TransportError
from ._frames import bars_frame, ticks_frame
from ._models import (
    Bar,
    BarsPage,
    Conversion,
    Health,
    Market,
    Position,
    Quote,
    QuotesPage,
    Symbol,
    SymbolDetail,
    Tick,
    _RawTicksPage,
    _SymbolList,
    ticks_page,
)
from ._stream import DEFAULT_STALL_FACTOR, AsyncTickStream, Channel, SeqGap

__all__ = ["AsyncClient"]

T = TypeVar("T")

FILL_WAIT: float = 5.0
"""How long a gap fill waits for the history store to reach the live position."""
FILL_POLL: float = 0.1
"""How often a gap fill asks whether the store has reached it (a one-tick request)."""
FILL_SLACK = 1_000
"""Ticks fetched beyond a gap fill's cap, for those at or before the last delivered tick."""


def http_timeout(timeouts: Timeouts) -> httpx.Timeout:
    """The httpx form of :class:`Timeouts`."""
    return httpx.Timeout(
        connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=timeouts.pool
    )


class AsyncClient(BaseClient):
    """The native API over asyncio. Use ``async with AsyncClient(...) as client:``.

    Every call raises an :class:`~tickwire.client.ApiError` subclass for an error answer and
    :class:`~tickwire.client.TransportError` when the server cannot be reached. 429 answers
    are retried after ``Retry-After`` (see :class:`~tickwire.client.Retries`).
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        stream_url: str | None = None,
        timeout: Timeouts = DEFAULT_TIMEOUTS,
        retries: Retries | int = DEFAULT_RETRIES,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, key, stream_url=stream_url, timeout=timeout, retries=retries)
        self._http = http or httpx.AsyncClient(base_url=self.url, timeout=http_timeout(timeout))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(self, model: type[T], request: Request) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    request.method, request.path, params=request.params, headers=self.headers
                )
            except httpx.HTTPError as exc:
                raise TransportError(f"{request.method} {request.path}: {exc!r}") from exc
            delay = self.retry_delay(response.status_code, response.headers, attempt)
            if delay is None:
                return self.parse(
                    model, response.status_code, response.headers, response.content, request
                )
            attempt += 1
            await asyncio.sleep(delay)

    # -- the API ----------------------------------------------------------------------------

    async def quotes(self, symbols: str | Iterable[str] | None = None) -> list[Quote]:
        """Live quotes in request order (symbols that have not ticked yet are left out)."""
        return (await self.quotes_page(symbols)).quotes

    async def quotes_page(self, symbols: str | Iterable[str] | None = None) -> QuotesPage:
        """Live quotes and the list of symbols that have not ticked yet."""
        return await self._call(QuotesPage, self.quotes_request(symbols))

    async def bars(
        self,
        symbol: str,
        *,
        unit: str = "minute",
        multiplier: int = 1,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        side: str = "mid",
        daily_cut: int = 0,
        limit: int | None = None,
    ) -> list[Bar]:
        """OHLC bars, oldest first, following cursors until the range or ``limit`` is done."""
        request: Request | None = self.bars_request(
            symbol,
            unit=unit,
            multiplier=multiplier,
            start=start,
            end=end,
            side=side,
            daily_cut=daily_cut,
            limit=limit,
        )
        bars: list[Bar] = []
        while request is not None:
            page = await self._call(BarsPage, request)
            bars.extend(page.bars)
            request = self.next_page(request, page.next_cursor, len(bars), limit)
        return bars if limit is None else bars[:limit]

    async def ticks(
        self,
        symbol: str,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        limit: int | None = None,
    ) -> list[Tick]:
        """Raw ticks, oldest first, following cursors until the range or ``limit`` is done."""
        return (await self._ticks_with_as_of(symbol, start, end, limit))[0]

    async def _ticks_with_as_of(
        self, symbol: str, start: TimeLike | None, end: TimeLike | None, limit: int | None
    ) -> tuple[list[Tick], Position]:
        request: Request | None = self.ticks_request(symbol, start=start, end=end, limit=limit)
        ticks: list[Tick] = []
        as_of = Position(0, 0)
        while request is not None:
            page = ticks_page(await self._call(_RawTicksPage, request))
            ticks.extend(page.ticks)
            as_of = page.as_of
            request = self.next_page(request, page.next_cursor, len(ticks), limit)
        return (ticks if limit is None else ticks[:limit]), as_of

    async def convert(self, amount: float, from_: str, to: str) -> Conversion:
        """``amount`` of currency ``from_`` in currency ``to``, at the live mid."""
        return await self._call(Conversion, self.convert_request(amount, from_, to))

    async def symbols(self, kind: str | None = None) -> list[Symbol]:
        """The catalogue, optionally one kind (``fx``, ``metal``, ``cfd``, ``crypto``)."""
        return (await self._call(_SymbolList, self.symbols_request(kind))).symbols

    async def symbol(self, code: str) -> SymbolDetail:
        """One symbol, with its market status and last quote."""
        return await self._call(SymbolDetail, self.symbol_request(code))

    async def market(self) -> Market:
        """Whether each market is open, and when it next opens and closes."""
        return await self._call(Market, self.market_request())

    async def health(self) -> Health:
        """The server's health (no key needed)."""
        return await self._call(Health, self.health_request())

    async def bars_df(self, symbol: str, **kwargs: Any) -> Any:
        """:meth:`bars` as a pandas DataFrame indexed by bar start (needs pandas)."""
        return bars_frame(await self.bars(symbol, **kwargs))

    async def ticks_df(self, symbol: str, **kwargs: Any) -> Any:
        """:meth:`ticks` as a pandas DataFrame indexed by tick time (needs pandas)."""
        return ticks_frame(await self.ticks(symbol, **kwargs))

    # -- the stream -------------------------------------------------------------------------

    def stream(
        self,
        symbols: str | Iterable[str],
        channel: Channel = "ticks",
        from_: str | Position | None = None,
        *,
        fill_gaps: bool = False,
        on_gap: Callable[[SeqGap], object] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        stall_timeout: float | None = None,
        stall_factor: float = DEFAULT_STALL_FACTOR,
    ) -> AsyncTickStream:
        """A self-healing stream of ticks (or conflated quotes); iterate it with ``async for``.

        It resumes after every reconnect from the last position delivered, so the caller sees
        each tick once, in offset order. ``from_`` (``EPOCH:OFFSET``) resumes a past stream.
        When the server cannot resume (``too_old``, ``epoch_changed``) it raises
        :class:`~tickwire.client.PositionTooOldError`, or with ``fill_gaps=True`` fetches the
        missing ticks over REST and goes on. A seq gap raises
        :class:`~tickwire.client.SeqGapError` unless ``on_gap`` is given.
        """
        items = [symbols] if isinstance(symbols, str) else list(symbols)
        return AsyncTickStream(
            self.stream_url,
            [s for item in items for s in item.split(",")],
            key=self.key,
            channel=channel,
            from_=from_,
            fill_gaps=fill_gaps,
            gap_filler=self._fill_gap,
            on_gap=on_gap,
            backoff=backoff,
            open_timeout=self.timeout.connect,
            stall_timeout=stall_timeout,
            stall_factor=stall_factor,
        )

    async def _fill_gap(
        self, symbol: str, last: Tick, until: Position, max_ticks: int
    ) -> list[Tick] | None:
        """``symbol``'s ticks after ``last`` up to ``until``, once the store has reached it; at
        most ``max_ticks`` of them are fetched, and None means the gap holds more.

        While the store is behind, it is asked with one-tick requests (their ``as_of``); the
        gap itself is fetched once, when the store has reached ``until`` or after FILL_WAIT.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FILL_WAIT
        start = last.ts // 1_000_000
        while True:
            _, as_of = await self._ticks_with_as_of(symbol, start, None, 1)
            store_done = as_of.epoch == until.epoch and as_of.offset >= until.offset
            if store_done or loop.time() > deadline:
                break
            await asyncio.sleep(FILL_POLL)
        # the range starts at last's millisecond, so ticks up to last come first: some slack
        limit = max_ticks + FILL_SLACK
        ticks, _ = await self._ticks_with_as_of(symbol, start, None, limit)
        after = (last.ts, last.epoch, last.offset)
        gap = [
            t
            for t in ticks
            if (t.ts, t.epoch, t.offset) > after
            and (t.epoch != until.epoch or t.offset <= until.offset)
        ]
        reached_until = bool(ticks) and (ticks[-1].epoch, ticks[-1].offset) >= (
            until.epoch,
            until.offset,
        )
        if len(gap) > max_ticks or (len(ticks) == limit and not reached_until):
            return None  # the page was cut at the limit before the gap's end
        return gap
