"""ASGI middleware: authenticate every request by API key, rate-limit it, and say so in headers.

For ``http`` requests outside the public paths:

==========================================  ======  ==================================
situation                                   status  code
==========================================  ======  ==================================
no key, unknown key, revoked key            401     ``unauthorized``
over the token bucket                       429     ``rate_limited`` (+ ``Retry-After``)
over the monthly quota                      429     ``quota_exceeded`` (+ ``Retry-After``)
key not entitled to REST                    403     ``forbidden``
==========================================  ======  ==================================

Checks run in that order, so every request with a valid key is counted, whatever its answer,
and every answer to such a request carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (see :class:`~tickwire.access.Decision` for what they describe). A 401
says the same thing for every failure, so it reveals neither whether a key exists nor any part
of it. An allowed request continues with the key's :class:`~tickwire.access.KeyRecord` in
``scope["state"]["key"]`` (``request.state.key`` in Starlette); endpoints check symbols with
:func:`~tickwire.access.entitled`.

The key is read from, first match wins: ``Authorization: Bearer <key>``, ``X-API-Key: <key>``,
the ``api_key`` query parameter (TraderMade's way). The query parameter is left in place.

``websocket`` scopes are checked the same way (against the ``stream`` entitlement) but never
answered here: a refusal is left as an :class:`AccessDenied` in ``scope["state"]
["access_error"]`` for the gateway to turn into a close code, and ``scope["state"]["key"]`` is
set only when the connection is allowed. Each connection attempt costs 1.

``lifespan`` scopes pass through; once the application has started, a maintenance task
refreshes the key store (so keys created or revoked by the CLI take effect within
``maintenance_interval`` seconds) and flushes the limiter; at shutdown the limiter is closed
before the server is told shutdown is complete, so no counted request is lost on a clean stop.

The per-request path does no I/O and awaits nothing slow: key verification is an in-memory
dict lookup and :class:`~tickwire.access.MemoryRateLimiter` never waits. If the key store or
the limiter raises, the request fails (closed), it is not let through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .keys import KEYS_FILE, FileKeyStore, KeyRecord, KeyStore, entitled
from .limits import USAGE_FILE, Decision, MemoryRateLimiter, RateLimiter

__all__ = [
    "DEFAULT_PUBLIC_PATHS",
    "AccessDenied",
    "AccessMiddleware",
    "ErrorRenderer",
    "RedactApiKeys",
    "access_middleware",
    "entitled",
    "native_error",
    "redact_api_keys",
    "tradermade_cost",
    "tradermade_error",
]

log = logging.getLogger("tickwire.access")

DEFAULT_PUBLIC_PATHS: tuple[str, ...] = (
    "/",
    "/health",
    "/ready",
    "/metrics",
    "/docs",
    "/docs/*",
    "/openapi.json",
    "/static/*",
)
"""Paths served without a key. ``/x/*`` matches everything below ``/x/``; others are exact."""

ErrorRenderer = Callable[[int, str, str], tuple[int, Mapping[str, str], bytes]]
"""``(status, code, message) -> (status, headers, body)``: one surface's error shape."""

MESSAGES: Mapping[str, str] = {
    "unauthorized": (
        "A valid API key is required: pass it as the api_key query parameter, "
        "in an 'Authorization: Bearer' header or in an X-API-Key header."
    ),
    "forbidden_rest": "This API key is not entitled to the REST API.",
    "forbidden_stream": "This API key is not entitled to the stream.",
    "rate_limited": "Too many requests: slow down and retry after Retry-After seconds.",
    "quota_exceeded": "The monthly request quota of this API key is used up.",
}

_JSON = {"content-type": "application/json"}
_encode = msgspec.json.encode


class AccessDenied(msgspec.Struct, frozen=True, kw_only=True):
    """Why a connection was refused: what the gateway needs to answer it."""

    status: int
    """The HTTP status a request would have got: 401, 403 or 429."""
    code: str
    """``unauthorized``, ``forbidden``, ``rate_limited`` or ``quota_exceeded``."""
    message: str
    retry_after: int | None = None


def native_error(status: int, code: str, message: str) -> tuple[int, Mapping[str, str], bytes]:
    """tickwire's own error shape: ``{"error": {"code", "message", "param"}}``."""
    param = "api_key" if code == "unauthorized" else None
    body = {"error": {"code": code, "message": message, "param": param}}
    return status, _JSON, _encode(body)


_TRADERMADE_MESSAGES = {
    "unauthorized": "API Key is invalid",
    "forbidden": "Your plan doesn't allow access to this dataset",
    "rate_limited": "Too many requests, please slow down",
    "quota_exceeded": "Too many requests: the monthly request quota is used up",
}


def tradermade_error(status: int, code: str, message: str) -> tuple[int, Mapping[str, str], bytes]:
    """TraderMade's error shape, ``{"error": <status>, "message": "API Key is invalid"}``.

    TraderMade documents code 401 inside an HTTP 200 for both a bad key and a plan that does
    not cover the data; recent TraderMade clients read real status codes, so we send the real
    status and repeat it in ``error``. The messages are TraderMade's documented wording.
    """
    text = _TRADERMADE_MESSAGES.get(code, message)
    return status, _JSON, _encode({"error": status, "message": text})


def tradermade_cost(path: str) -> int:
    """Requests a call costs, TraderMade's way: 5 for tick history (and its sample), else 1."""
    return 5 if path.startswith("/api/v1/tick_historical") else 1


class AccessMiddleware:
    """Pure ASGI middleware enforcing API keys, entitlements and limits (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyStore,
        limiter: RateLimiter,
        public_paths: Iterable[str] = DEFAULT_PUBLIC_PATHS,
        error_renderers: Sequence[tuple[str, ErrorRenderer]] = (),
        cost: Callable[[str], int] | None = None,
        maintenance_interval: float = 2.0,
    ) -> None:
        """Wrap ``app``.

        ``error_renderers`` are ``(path_prefix, renderer)`` pairs, first match wins; other
        paths get :func:`native_error`. ``cost(path)`` gives the requests a call costs
        (default 1). ``maintenance_interval`` is how often, in seconds, the key store is
        refreshed and the limiter flushed while the application runs.
        """
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.error_renderers = tuple(error_renderers)
        self.cost = cost
        self.maintenance_interval = maintenance_interval
        paths = tuple(public_paths)
        self._public_exact = frozenset(p for p in paths if not p.endswith("/*"))
        self._public_prefixes = tuple(p[:-1] for p in paths if p.endswith("/*"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:  # pragma: no cover - no other scope types exist today
            await self.app(scope, receive, send)

    def is_public(self, path: str) -> bool:
        """True if ``path`` needs no key. Paths with dot segments are never public."""
        if "/." in path:
            return False
        return path in self._public_exact or path.startswith(self._public_prefixes)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if self.is_public(path):
            await self.app(scope, receive, send)
            return
        key = _key_of(scope)
        record = self.keys.verify(key) if key else None
        if record is None:
            extra = [(b"www-authenticate", b'Bearer realm="tickwire"')]
            await self._refuse(send, path, 401, "unauthorized", MESSAGES["unauthorized"], extra)
            return
        decision = await self._hit(record, path)
        headers = _rate_headers(decision)
        if not decision.allowed:
            code = "quota_exceeded" if decision.reason == "quota" else "rate_limited"
            retry = [(b"retry-after", str(decision.retry_after).encode())]
            await self._refuse(send, path, 429, code, MESSAGES[code], headers + retry)
            return
        if not record.entitlements.rest:
            await self._refuse(send, path, 403, "forbidden", MESSAGES["forbidden_rest"], headers)
            return
        scope.setdefault("state", {})["key"] = record

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.is_public(scope["path"]):
            state: dict[str, Any] = scope.setdefault("state", {})
            outcome = await self._check_stream(scope)
            if isinstance(outcome, AccessDenied):
                state["access_error"] = outcome
            else:
                state["key"] = outcome
        await self.app(scope, receive, send)

    async def _check_stream(self, scope: Scope) -> AccessDenied | KeyRecord:
        key = _key_of(scope)
        record = self.keys.verify(key) if key else None
        if record is None:
            return AccessDenied(status=401, code="unauthorized", message=MESSAGES["unauthorized"])
        decision = await self._hit(record, None)
        if not decision.allowed:
            code = "quota_exceeded" if decision.reason == "quota" else "rate_limited"
            return AccessDenied(
                status=429, code=code, message=MESSAGES[code], retry_after=decision.retry_after
            )
        if not record.entitlements.stream:
            return AccessDenied(status=403, code="forbidden", message=MESSAGES["forbidden_stream"])
        return record

    async def _hit(self, record: KeyRecord, path: str | None) -> Decision:
        """Count one call to ``path`` (None: a stream connection attempt, cost 1)."""
        limits = record.limits
        return await self.limiter.hit(
            record.id,
            rate=limits.rate,
            burst=limits.burst,
            monthly_quota=limits.monthly_quota,
            cost=1 if self.cost is None or path is None else self.cost(path),
        )

    async def _refuse(
        self,
        send: Send,
        path: str,
        status: int,
        code: str,
        message: str,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        render: ErrorRenderer = native_error
        for prefix, renderer in self.error_renderers:
            if path.startswith(prefix):
                render = renderer
                break
        status, headers, body = render(status, code, message)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw += [(b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        task: asyncio.Task[None] | None = None

        async def stop() -> None:
            nonlocal task
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                task = None
                try:
                    await self.limiter.aclose()
                except Exception:
                    log.exception("could not save the rate limiter's usage counts")

        async def wrapped_send(message: Message) -> None:
            nonlocal task
            kind = message["type"]
            if kind == "lifespan.startup.complete" and task is None:
                task = asyncio.create_task(self._maintain(), name="tickwire-access-maintenance")
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await stop()
            await send(message)

        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            await stop()

    async def _maintain(self) -> None:
        """Every interval: pick up key changes from other processes, then save usage counts."""
        while True:
            await asyncio.sleep(self.maintenance_interval)
            try:
                await asyncio.to_thread(self.keys.refresh)
            except Exception as exc:
                log.error("keeping the loaded API keys: %s", exc)
            try:
                await self.limiter.flush()
            except Exception as exc:
                log.error("could not save the rate limiter's usage counts: %s", exc)


def _key_of(scope: Scope) -> str | None:
    """The API key of a request, or None: Bearer header, X-API-Key header, api_key parameter."""
    bearer = header = None
    for name, value in scope["headers"]:
        if name == b"authorization" and bearer is None:
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
        elif name == b"x-api-key" and header is None:
            header = value.decode("latin-1").strip() or None
    if bearer or header:
        return bearer or header
    query: bytes = scope.get("query_string", b"")
    if b"api_key" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == "api_key":
            return value or None
    return None


_API_KEY_RE = re.compile(r"(api_key=)[^&\s\"']*")


def redact_api_keys(text: str) -> str:
    """``text`` with the value of every ``api_key=`` query parameter replaced by ``***``."""
    return _API_KEY_RE.sub(r"\1***", text) if "api_key=" in text else text


class RedactApiKeys(logging.Filter):
    """A logging filter hiding ``api_key=`` values, for access logs (uvicorn's logs full URLs).

    Install with ``logging.getLogger("uvicorn.access").addFilter(RedactApiKeys())``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_api_keys(a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact_api_keys(record.msg)
        return True


def _rate_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit", str(decision.limit).encode()),
        (b"x-ratelimit-remaining", str(decision.remaining).encode()),
        (b"x-ratelimit-reset", str(decision.reset).encode()),
    ]


def access_middleware(
    data_dir: Path,
    *,
    error_renderers: Sequence[tuple[str, ErrorRenderer]] = (("/api/v1/", tradermade_error),),
    cost: Callable[[str], int] | None = tradermade_cost,
    keys: KeyStore | None = None,
    **options: Any,
) -> Middleware:
    """The middleware for a server: keys in ``<data_dir>/keys.json``, usage in ``usage.json``.

    TraderMade's error shape and call costs apply under ``/api/v1/`` by default. ``options``
    go to :class:`AccessMiddleware` (``public_paths``, ``maintenance_interval``).
    """
    return Middleware(
        AccessMiddleware,
        keys=keys if keys is not None else FileKeyStore(Path(data_dir) / KEYS_FILE),
        limiter=MemoryRateLimiter(usage_path=Path(data_dir) / USAGE_FILE),
        error_renderers=error_renderers,
        cost=cost,
        **options,
    )
