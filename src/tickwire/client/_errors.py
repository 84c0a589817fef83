"""The SDK's one exception hierarchy, rooted in :class:`tickwire.errors.TickwireError`.

::

    TickwireError
    └── ClientError                   anything the SDK raises
        ├── TransportError            the server could not be reached, or the connection broke
        ├── ApiError                  the server answered with a JSON error: status, code, param
        │   ├── InvalidRequestError   400: a parameter is wrong (also a ValueError)
        │   ├── AuthenticationError   401/403, or stream close 4001/4003: fatal, never retried
        │   ├── NotFoundError         404: unknown symbol, no rate yet, no such path
        │   └── RateLimitError        429 still answered after the retries: ``retry_after``
        └── StreamError               the stream cannot go on as asked
            ├── SubscriptionError     the server refused a symbol or the subscribe request
            ├── PositionTooOldError   ``resume`` said too_old / epoch_changed / ahead
            ├── SeqGapError           a symbol's seq jumped (raised unless ``on_gap`` is given)
            └── StallError            no message nor heartbeat in time (also a TimeoutError)

Every :class:`ApiError` carries the failing request's method and URL; every stream error
carries the subscription's symbols when it has them.
"""

from __future__ import annotations

from ..errors import TickwireError

__all__ = [
    "ApiError",
    "AuthenticationError",
    "ClientError",
    "InvalidRequestError",
    "NotFoundError",
    "PositionTooOldError",
    "RateLimitError",
    "SeqGapError",
    "StallError",
    "StreamError",
    "SubscriptionError",
    "TransportError",
]


class ClientError(TickwireError):
    """Root of every error the SDK raises."""


class TransportError(ClientError):
    """The server could not be reached, or the connection broke (the cause is chained)."""


class ApiError(ClientError):
    """The server refused a request with a JSON error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        param: str | None = None,
        method: str = "GET",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.method = method
        self.url = url

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.url else ""
        return f"{self.status} {self.code}: {self.message}{where}"


class InvalidRequestError(ApiError, ValueError):
    """400: a parameter has the wrong form, is missing or is out of range; ``param`` names it."""


class AuthenticationError(ApiError):
    """The key is missing, unknown or revoked (401), or may not do this (403)."""


class NotFoundError(ApiError):
    """404: the symbol, the rate or the path does not exist."""


class RateLimitError(ApiError):
    """429 after the allowed retries; ``retry_after`` is the server's advice, in seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        status: int = 429,
        code: str = "rate_limited",
        param: str | None = None,
        method: str = "GET",
        url: str = "",
    ) -> None:
        super().__init__(message, status=status, code=code, param=param, method=method, url=url)
        self.retry_after = retry_after


class StreamError(ClientError):
    """The stream cannot continue as asked."""


class SubscriptionError(StreamError):
    """The server refused the subscription; ``refused`` maps each refused symbol to a reason."""

    def __init__(self, message: str, *, refused: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.refused = dict(refused or {})


class PositionTooOldError(StreamError):
    """The server cannot resume from the position asked for.

    ``reason`` is ``too_old``, ``epoch_changed`` or ``ahead``; ``position`` is where the live
    stream continues (``EPOCH:OFFSET``); ``oldest`` is the oldest resumable position when the
    server gave one. Fetch the gap over REST, or pass ``fill_gaps=True`` to ``stream()``.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        position: str,
        oldest: str | None = None,
        symbols: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.position = position
        self.oldest = oldest
        self.symbols = symbols


class SeqGapError(StreamError):
    """A symbol's seq jumped: ``expected`` was due, ``got`` arrived."""

    def __init__(self, symbol: str, *, epoch: int, expected: int, got: int) -> None:
        super().__init__(f"{symbol}: seq gap in epoch {epoch}: expected {expected}, got {got}")
        self.symbol = symbol
        self.epoch = epoch
        self.expected = expected
        self.got = got


class StallError(StreamError, TimeoutError):
    """No message (not even a heartbeat) arrived within the stall timeout."""
