"""What the sync and async clients share: settings, request building, answer parsing. No I/O.

:class:`BaseClient` turns each API call into a :class:`Request` and each answer into a typed
model or an exception. :class:`~tickwire.client.Client` and
:class:`~tickwire.client.AsyncClient` only send requests and sleep.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ._config import DEFAULT_RETRIES, DEFAULT_TIMEOUTS, Retries, Timeouts
from ._errors import (
    ApiError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_KEY",
    "ENV_STREAM_URL",
    "ENV_URL",
    "BaseClient",
    "Request",
    "TimeLike",
    "format_time",
]

DEFAULT_URL: Final = "http://127.0.0.1:8000"
ENV_URL: Final = "TICKWIRE_URL"
ENV_KEY: Final = "TICKWIRE_KEY"
ENV_STREAM_URL: Final = "TICKWIRE_STREAM_URL"
MAX_PAGE: Final = 10_000
"""The server's largest ``limit``."""

TimeLike = datetime | int | str
"""A time parameter: an aware datetime, integer epoch milliseconds, or an ISO 8601 string."""

T = TypeVar("T")


class Request(NamedTuple):
    """One API call to make: method, path (under the base URL) and query parameters."""

    method: str
    path: str
    params: dict[str, str]


def format_time(value: TimeLike) -> str:
    """A time parameter as the server reads it; naive datetimes are refused (times are UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a naive datetime is ambiguous: give tzinfo (times are UTC)")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, bool):
        raise TypeError("a time is a datetime, epoch milliseconds or an ISO 8601 string")
    return str(value)


def _symbol_path(symbol: str) -> str:
    if not symbol or "/" in symbol or "?" in symbol or "#" in symbol:
        raise ValueError(f"not a symbol: {symbol!r}")
    return symbol


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: not sent by tickwire; fall back to the default wait


class _ErrorBody(msgspec.Struct):
    code: str = "unknown"
    message: str = ""
    param: str | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorBody


_error_decoder: Final = msgspec.json.Decoder(_ErrorEnvelope)
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(model: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(model)
    if decoder is None:
        decoder = _decoders[model] = msgspec.json.Decoder(model)
    return decoder


class BaseClient:
    """Settings and the request/answer logic of both clients.

    The environment is read here, once, and only for arguments left as None: ``url`` from
    ``TICKWIRE_URL``, ``key`` from ``TICKWIRE_KEY``, ``stream_url`` from
    ``TICKWIRE_STREAM_URL`` (else the HTTP URL with a ``ws`` scheme and the port plus one,
    the server's default layout).
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        stream_url: str | None = None,
        timeout: Timeouts = DEFAULT_TIMEOUTS,
        retries: Retries | int = DEFAULT_RETRIES,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.url = (url or env.get(ENV_URL) or DEFAULT_URL).rstrip("/")
        self.key = key if key is not None else env.get(ENV_KEY)
        self.stream_url = (
            stream_url or env.get(ENV_STREAM_URL) or derive_stream_url(self.url)
        ).rstrip("/")
        self.timeout = timeout
        self.retries = retries if isinstance(retries, Retries) else Retries(max_retries=retries)

    page_size: int = MAX_PAGE
    """Items asked for per page when paging (the server's maximum by default)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, stream_url={self.stream_url!r})"

    # -- requests ---------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        """Headers sent with every request: the key, when there is one."""
        headers = {"Accept": "application/json", "User-Agent": "tickwire-client"}
        if self.key:
            headers["X-API-Key"] = self.key
        return headers

    def quotes_request(self, symbols: str | Iterable[str] | None) -> Request:
        """``GET /v1/quotes``; None asks for every symbol."""
        params = {} if symbols is None else {"symbols": _join(symbols)}
        return Request("GET", "/v1/quotes", params)

    def bars_request(
        self,
        symbol: str,
        *,
        unit: str,
        multiplier: int,
        start: TimeLike | None,
        end: TimeLike | None,
        side: str,
        daily_cut: int,
        limit: int | None,
    ) -> Request:
        """``GET /v1/bars/{symbol}``, first page; ``limit`` is the total wanted."""
        params = {"unit": unit, "multiplier": str(multiplier), "side": side}
        params["daily_cut"] = str(daily_cut)
        _range(params, start, end)
        if limit is not None:
            params["limit"] = str(max(1, min(limit, self.page_size)))
        return Request("GET", f"/v1/bars/{_symbol_path(symbol)}", params)

    def ticks_request(
        self, symbol: str, *, start: TimeLike | None, end: TimeLike | None, limit: int | None
    ) -> Request:
        """``GET /v1/ticks/{symbol}``, first page; ``limit`` is the total wanted."""
        size = self.page_size if limit is None else max(1, min(limit, self.page_size))
        params: dict[str, str] = {"limit": str(size)}
        _range(params, start, end)
        return Request("GET", f"/v1/ticks/{_symbol_path(symbol)}", params)

    def convert_request(self, amount: float, from_: str, to: str) -> Request:
        """``GET /v1/convert``."""
        return Request("GET", "/v1/convert", {"amount": repr(amount), "from": from_, "to": to})

    def symbols_request(self, kind: str | None) -> Request:
        """``GET /v1/symbols``, optionally of one kind."""
        return Request("GET", "/v1/symbols", {} if kind is None else {"kind": kind})

    def symbol_request(self, code: str) -> Request:
        """``GET /v1/symbols/{code}``."""
        return Request("GET", f"/v1/symbols/{_symbol_path(code)}", {})

    def market_request(self) -> Request:
        """``GET /v1/market``."""
        return Request("GET", "/v1/market", {})

    def health_request(self) -> Request:
        """``GET /health``."""
        return Request("GET", "/health", {})

    def next_page(
        self, request: Request, cursor: str | None, got: int, limit: int | None
    ) -> Request | None:
        """The request for the next page, or None when done (no cursor, or ``limit`` reached).

        The other parameters stay the same, as the server asks; the caller trims the last page.
        """
        if cursor is None or (limit is not None and got >= limit):
            return None
        return request._replace(params=dict(request.params, cursor=cursor))

    # -- answers ----------------------------------------------------------------------------

    def retry_delay(self, status: int, headers: Mapping[str, str], attempt: int) -> float | None:
        """Seconds to wait before retrying a 429 (``attempt`` counts from 0), or None to fail."""
        if status != 429 or attempt >= self.retries.max_retries:
            return None
        wait = _retry_after(headers)
        wait = self.retries.default_wait if wait is None else wait
        return None if wait > self.retries.max_wait else wait

    def parse(
        self,
        model: type[T],
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        request: Request,
    ) -> T:
        """The answer as ``model``, or the matching :class:`ApiError` for an error status."""
        if status >= 400:
            raise self.error(status, headers, content, request)
        try:
            return _decoder(model).decode(content)
        except msgspec.DecodeError as exc:
            raise ApiError(
                f"unexpected answer: {exc}",
                status=status,
                code="bad_response",
                method=request.method,
                url=self.url + request.path,
            ) from exc

    def error(
        self, status: int, headers: Mapping[str, str], content: bytes, request: Request
    ) -> ApiError:
        """The exception for an error answer, from its JSON body ``{"error": {...}}``."""
        try:
            body = _error_decoder.decode(content).error
        except msgspec.DecodeError:
            text = content[:200].decode("utf-8", "replace").strip()
            body = _ErrorBody(code=f"http_{status}", message=text or f"HTTP {status}")
        kwargs: dict[str, Any] = {
            "status": status,
            "code": body.code,
            "param": body.param,
            "method": request.method,
            "url": self.url + request.path,
        }
        if status == 429:
            return RateLimitError(body.message, retry_after=_retry_after(headers), **kwargs)
        cls: type[ApiError] = ApiError
        if status in (401, 403):
            cls = AuthenticationError
        elif status == 404:
            cls = NotFoundError
        elif status == 400:
            cls = InvalidRequestError
        return cls(body.message, **kwargs)


def _join(symbols: str | Iterable[str]) -> str:
    items: Sequence[str] = [symbols] if isinstance(symbols, str) else list(symbols)
    return ",".join(s.strip() for item in items for s in item.split(",") if s.strip())


def _range(params: dict[str, str], start: TimeLike | None, end: TimeLike | None) -> None:
    if start is not None:
        params["from"] = format_time(start)
    if end is not None:
        params["to"] = format_time(end)


_PORT = re.compile(r":(\d+)$")


def derive_stream_url(url: str) -> str:
    """The stream URL next to a REST URL: same host, port + 1 (``ws``, or ``wss`` for https)."""
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    netloc = parts.netloc
    match = _PORT.search(netloc)
    if match:
        netloc = netloc[: match.start()] + f":{int(match.group(1)) + 1}"
    return urlunsplit((scheme, netloc, "", "", ""))
