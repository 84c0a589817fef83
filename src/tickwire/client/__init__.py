"""The tickwire Python SDK: REST and stream clients for a tickwire server.

::

    from tickwire.client import Client

    with Client("http://127.0.0.1:8000", key="tw_...") as client:
        print(client.quotes(["EURUSD"]))
        for tick in client.stream(["EURUSD"]):
            print(tick.symbol, tick.bid, tick.ask)

See ``docs/sdk.md``.
"""

from __future__ import annotations

from ._async import AsyncClient
from ._config import Backoff, Retries, Timeouts
from ._errors import (
    ApiError,
    AuthenticationError,
    ClientError,
    InvalidRequestError,
    NotFoundError,
    PositionTooOldError,
    RateLimitError,
    SeqGapError,
    StallError,
    StreamError,
    SubscriptionError,
    TransportError,
)
from ._models import (
    Bar,
    BarsPage,
    Conversion,
    ConversionLeg,
    Health,
    Market,
    MarketStatus,
    Position,
    Quote,
    QuotesPage,
    Resolution,
    Symbol,
    SymbolDetail,
    Tick,
    TicksPage,
)
from ._stream import (
    FATAL_ERRORS,
    AsyncTickStream,
    SeqGap,
    StreamCore,
    StreamState,
    process_exception,
)
from ._sync import Client, TickStream

__all__ = [
    "FATAL_ERRORS",
    "ApiError",
    "AsyncClient",
    "AsyncTickStream",
    "AuthenticationError",
    "Backoff",
    "Bar",
    "BarsPage",
    "Client",
    "ClientError",
    "Conversion",
    "ConversionLeg",
    "Health",
    "InvalidRequestError",
    "Market",
    "MarketStatus",
    "NotFoundError",
    "Position",
    "PositionTooOldError",
    "Quote",
    "QuotesPage",
    "RateLimitError",
    "Resolution",
    "Retries",
    "SeqGap",
    "SeqGapError",
    "StallError",
    "StreamCore",
    "StreamError",
    "StreamState",
    "SubscriptionError",
    "Symbol",
    "SymbolDetail",
    "Tick",
    "TickStream",
    "TicksPage",
    "Timeouts",
    "TransportError",
    "process_exception",
]
