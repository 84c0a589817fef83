"""The blocking client: :class:`BaseClient` plus an ``httpx.Client``, and the sync stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ._async import AsyncClient, http_timeout
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
from ._stream import DEFAULT_STALL_FACTOR, AsyncTickStream, Channel, SeqGap, StreamState

__all__ = ["Client", "TickStream"]

T = TypeVar("T")


class Client(BaseClient):
    """The native API, blocking. Use ``with Client(...) as client:``.

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
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(url, key, stream_url=stream_url, timeout=timeout, retries=retries)
        self._http = http or httpx.Client(base_url=self.url, timeout=http_timeout(timeout))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, model: type[T], request: Request) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
            time.sleep(delay)

    # -- the API ----------------------------------------------------------------------------

    def quotes(self, symbols: str | Iterable[str] | None = None) -> list[Quote]:
        """Live quotes in request order (symbols that have not ticked yet are left out)."""
        return self.quotes_page(symbols).quotes

    def quotes_page(self, symbols: str | Iterable[str] | None = None) -> QuotesPage:
        """Live quotes and the list of symbols that have not ticked yet."""
        return self._call(QuotesPage, self.quotes_request(symbols))

    def bars(
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
            page = self._call(BarsPage, request)
            bars.extend(page.bars)
            request = self.next_page(request, page.next_cursor, len(bars), limit)
        return bars if limit is None else bars[:limit]

    def ticks(
        self,
        symbol: str,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        limit: int | None = None,
    ) -> list[Tick]:
        """Raw ticks, oldest first, following cursors until the range or ``limit`` is done."""
        request: Request | None = self.ticks_request(symbol, start=start, end=end, limit=limit)
        ticks: list[Tick] = []
        while request is not None:
            page = ticks_page(self._call(_RawTicksPage, request))
            ticks.extend(page.ticks)
            request = self.next_page(request, page.next_cursor, len(ticks), limit)
        return ticks if limit is None else ticks[:limit]

    def convert(self, amount: float, from_: str, to: str) -> Conversion:
        """``amount`` of currency ``from_`` in currency ``to``, at the live mid."""
        return self._call(Conversion, self.convert_request(amount, from_, to))

    def symbols(self, kind: str | None = None) -> list[Symbol]:
        """The catalogue, optionally one kind (``fx``, ``metal``, ``cfd``, ``crypto``)."""
        return self._call(_SymbolList, self.symbols_request(kind)).symbols

    def symbol(self, code: str) -> SymbolDetail:
        """One symbol, with its market status and last quote."""
        return self._call(SymbolDetail, self.symbol_request(code))

    def market(self) -> Market:
        """Whether each market is open, and when it next opens and closes."""
        return self._call(Market, self.market_request())

    def health(self) -> Health:
        """The server's health (no key needed)."""
        return self._call(Health, self.health_request())

    def bars_df(self, symbol: str, **kwargs: Any) -> Any:
        """:meth:`bars` as a pandas DataFrame indexed by bar start (needs pandas)."""
        return bars_frame(self.bars(symbol, **kwargs))

    def ticks_df(self, symbol: str, **kwargs: Any) -> Any:
        """:meth:`ticks` as a pandas DataFrame indexed by tick time (needs pandas)."""
        return ticks_frame(self.ticks(symbol, **kwargs))

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
    ) -> TickStream:
        """The blocking twin of :meth:`AsyncClient.stream`; iterate it with ``for``.

        It runs the async stream in a private event loop, in the calling thread, while the
        caller waits for the next tick. So it must not be used from inside a running event
        loop, and a caller that does not read for a minute is disconnected by the server;
        the stream then resumes where the caller is, with no gap.
        """
        return TickStream(
            lambda: AsyncClient(
                self.url,
                self.key,
                stream_url=self.stream_url,
                timeout=self.timeout,
                retries=self.retries,
            ),
            symbols,
            channel=channel,
            from_=from_,
            fill_gaps=fill_gaps,
            on_gap=on_gap,
            backoff=backoff,
            stall_timeout=stall_timeout,
            stall_factor=stall_factor,
        )


class TickStream:
    """An iterator of :class:`Tick`: :class:`AsyncTickStream` run in a private event loop.

    Use it with ``with`` (or call :meth:`close`). ``state``, ``position`` and ``lag`` are those
    of the async stream.
    """

    def __init__(
        self,
        make_client: Callable[[], AsyncClient],
        symbols: str | Iterable[str],
        **options: Any,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._client: AsyncClient | None = None
        self._stream: AsyncTickStream | None = None

        async def start() -> AsyncTickStream:
            self._client = make_client()
            return self._client.stream(symbols, **options)

        self._stream = self._loop.run_until_complete(start())

    @property
    def _async(self) -> AsyncTickStream:
        if self._stream is None:
            raise RuntimeError("the stream is closed")
        return self._stream

    @property
    def symbols(self) -> tuple[str, ...]:
        """The subscribed symbols, upper-case."""
        return self._async.symbols

    @property
    def state(self) -> StreamState:
        """connecting, replaying, live, backoff or closed."""
        return StreamState.CLOSED if self._stream is None else self._stream.state

    @property
    def position(self) -> Position | None:
        """The last position delivered: pass it as ``from_`` to continue in a later stream."""
        return self._async.position

    @property
    def lag(self) -> float | None:
        """Seconds between now and the last delivered tick's time (None before the first)."""
        return self._async.lag

    @property
    def reconnects(self) -> int:
        """How many times the stream reconnected."""
        return self._async.reconnects

    @property
    def gaps_filled(self) -> int:
        """How many ticks came from REST gap fills."""
        return self._async.gaps_filled

    def __iter__(self) -> Iterator[Tick]:
        return self

    def __next__(self) -> Tick:
        if self._stream is None:
            raise StopIteration
        try:
            return self._loop.run_until_complete(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection and the private event loop."""
        stream, self._stream = self._stream, None
        if self._loop.is_closed():
            return
        try:
            if stream is not None:
                self._loop.run_until_complete(stream.aclose())
            if self._client is not None:
                self._loop.run_until_complete(self._client.aclose())
        finally:
            self._loop.close()

    def __enter__(self) -> TickStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
