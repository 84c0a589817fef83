"""The SDK's REST clients against a real server: every call, paging, errors, 429 retries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import tickwire.client
from tickwire.client import (
    ApiError,
    AsyncClient,
    AuthenticationError,
    Backoff,
    Client,
    ClientError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    Retries,
    TransportError,
)
from tickwire.errors import TickwireError

from .conftest import TIMEOUT_SCALE
from .serverproc import ServerProcess

pytestmark = pytest.mark.slow

ARGS = ("--backfill-days", "1", "--no-weekend-closed", "--load-rate", "500", "--sync", "none")

EXPORTS = {
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
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server with a day of history, ticking at 500 ticks/s."""
    data: Path = tmp_path_factory.mktemp("client") / "data"
    with ServerProcess(data, *ARGS) as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    """A sync client with the test key."""
    with Client(server.url, server.key) as c:
        yield c


def test_all_is_exactly_the_public_api() -> None:
    """tickwire.client.__all__ is sorted (isort style) and lists exactly the public API."""
    names = tickwire.client.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert set(tickwire.client.__all__) == EXPORTS
    for name in tickwire.client.__all__:
        assert getattr(tickwire.client, name) is not None


def test_errors_have_one_root() -> None:
    """Every SDK error is a ClientError, hence a TickwireError; stdlib bases where they fit."""
    for name in tickwire.client.__all__:
        obj = getattr(tickwire.client, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, ClientError), name
    assert issubclass(ClientError, TickwireError)
    assert issubclass(tickwire.client.StallError, TimeoutError)
    assert issubclass(InvalidRequestError, ValueError)


def test_quotes_symbols_market_health_convert(client: Client) -> None:
    """The simple calls return typed models with the documented fields."""
    quotes = client.quotes(["EURUSD", "GBPUSD"])
    assert [q.symbol for q in quotes] == ["EURUSD", "GBPUSD"]
    assert all(q.ask >= q.bid > 0 and q.epoch > 0 and q.seq > 0 for q in quotes)
    assert quotes[0].time.tzinfo is not None
    assert client.quotes("EURUSD,USDJPY")[1].symbol == "USDJPY"
    metals = client.symbols("metal")
    assert {s.code for s in metals} >= {"XAUUSD"} and {s.kind for s in metals} == {"metal"}
    assert len(client.symbols()) > len(metals)
    detail = client.symbol("eurusd")
    assert detail.code == "EURUSD" and detail.pip == 0.0001 and detail.market is not None
    assert detail.last_quote is not None and detail.last_quote.symbol == "EURUSD"
    market = client.market()
    assert "fx" in market.markets and isinstance(market.markets["fx"].open, bool)
    health = client.health()
    assert health.status == "ok" and health.position.epoch == quotes[0].epoch
    conversion = client.convert(100, "EUR", "JPY")
    assert conversion.from_ == "EUR" and conversion.to == "JPY" and conversion.amount == 100
    assert conversion.total == pytest.approx(100 * conversion.rate)
    assert conversion.path[0].symbol == "EURJPY"


def test_bars_follow_cursors_up_to_the_limit(client: Client) -> None:
    """bars() pages with cursors, stops at limit, and returns bars in time order."""
    start = datetime.now(UTC) - timedelta(hours=20)
    client.page_size = 50
    bars = client.bars("EURUSD", unit="minute", start=start, limit=120)
    assert len(bars) == 120
    assert [b.ts for b in bars] == sorted({b.ts for b in bars})
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in bars)
    client.page_size = 10_000
    assert [b.ts for b in client.bars("EURUSD", start=start, limit=120)] == [b.ts for b in bars]
    hourly = client.bars("EURUSD", unit="hour", multiplier=2, side="bid", daily_cut=22)
    assert hourly and hourly[-1].complete is False


def test_ticks_follow_cursors_over_a_range(client: Client, server: ServerProcess) -> None:
    """ticks() pages through a whole range with no gap and no duplicate."""
    end = datetime.now(UTC) - timedelta(minutes=30)
    start = end - timedelta(minutes=120)
    client.page_size = 100
    ticks = client.ticks("EURUSD", start=start, end=end)
    assert len(ticks) > 2 * client.page_size  # several pages, whatever the session's density
    seqs = [t.seq for t in ticks]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert all(t.symbol == "EURUSD" for t in ticks)
    start_ms = int(start.timestamp() * 1000)
    end_ms = int(end.timestamp() * 1000)
    assert client.ticks("EURUSD", start=start_ms, end=end_ms, limit=150) == ticks[:150]


def test_error_answers_map_to_the_hierarchy(server: ServerProcess, client: Client) -> None:
    """401, 404 and 400 answers raise typed errors carrying status, code and param."""
    with Client(server.url, "tw_not_a_key") as bad, pytest.raises(AuthenticationError) as auth:
        bad.quotes(["EURUSD"])
    assert auth.value.status == 401 and auth.value.code == "unauthorized"
    with pytest.raises(NotFoundError) as missing:
        client.symbol("NOPE")
    assert (missing.value.status, missing.value.code, missing.value.param) == (
        404,
        "unknown_symbol",
        "symbol",
    )
    with pytest.raises(InvalidRequestError) as invalid:
        client.bars("EURUSD", unit="fortnight")
    assert invalid.value.code == "invalid_parameter" and invalid.value.param == "unit"
    assert "/v1/bars/EURUSD" in str(invalid.value)
    with pytest.raises(InvalidRequestError) as unknown:
        client.quotes(["EURUSD", "NOPE"])
    assert unknown.value.code == "unknown_symbol" and unknown.value.param == "symbols"
    with pytest.raises(ValueError, match="naive"):
        client.ticks("EURUSD", start=datetime(2026, 1, 1))


def test_unreachable_server_is_a_transport_error() -> None:
    """A refused connection raises TransportError, with the httpx error chained."""
    with Client("http://127.0.0.1:9", "k") as c, pytest.raises(TransportError) as caught:
        c.health()
    assert isinstance(caught.value.__cause__, httpx.HTTPError)


def test_429_is_retried_after_retry_after(server: ServerProcess) -> None:
    """A key limited to 1 request/s gets its calls through by waiting; without retries: 429."""
    key = server.create_key("slow-client", "--plan", "basic", "--rate", "1", "--burst", "1")
    deadline = time.monotonic() + 5 * TIMEOUT_SCALE
    with Client(server.url, key, retries=Retries(max_retries=5)) as patient:
        while True:  # new keys reach the server within 2 s
            try:
                patient.market()
                break
            except AuthenticationError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        started = time.monotonic()
        for _ in range(3):
            patient.market()
        assert time.monotonic() - started >= 1.5  # two of them waited about 1 s each
    with Client(server.url, key, retries=0) as hasty, pytest.raises(RateLimitError) as caught:
        for _ in range(3):
            hasty.market()
    assert caught.value.status == 429 and caught.value.code == "rate_limited"
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert isinstance(caught.value, ApiError)


def test_url_and_key_come_from_the_environment(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TICKWIRE_URL and TICKWIRE_KEY are read by the constructor when the arguments are None."""
    monkeypatch.setenv("TICKWIRE_URL", server.url)
    monkeypatch.setenv("TICKWIRE_KEY", server.key)
    with Client() as c:
        assert c.url == server.url
        assert c.stream_url == server.ws_url.replace(str(server.stream_port), str(server.port + 1))
        assert c.quotes(["EURUSD"])[0].symbol == "EURUSD"
    with Client(server.url, "explicit") as c:
        assert c.key == "explicit"


def test_dataframes(client: Client) -> None:
    """bars_df and ticks_df return time-indexed DataFrames with the documented columns."""
    bars = client.bars_df("EURUSD", unit="hour", limit=5)
    assert list(bars.columns) == ["open", "high", "low", "close", "ticks", "complete"]
    assert len(bars) == 5 and str(bars.index.tz) == "UTC"
    ticks = client.ticks_df("EURUSD", limit=10)
    assert list(ticks.columns) == ["symbol", "bid", "ask", "epoch", "offset", "seq"]
    assert ticks.index.is_monotonic_increasing


async def test_async_client_mirrors_the_sync_one(server: ServerProcess) -> None:
    """AsyncClient gives the same answers and errors as Client."""
    async with AsyncClient(server.url, server.key) as client:
        quotes = await client.quotes(["EURUSD"])
        assert quotes[0].symbol == "EURUSD"
        assert (await client.symbol("GBPUSD")).base == "GBP"
        assert (await client.health()).status == "ok"
        assert len(await client.bars("EURUSD", unit="hour", limit=3)) == 3
        assert len(await client.ticks("EURUSD", limit=5)) == 5
        assert (await client.convert(1, "USD", "EUR")).to == "EUR"
        assert (await client.market()).markets
        assert await client.symbols("fx")
        assert len(await client.ticks_df("EURUSD", limit=3)) == 3
        with pytest.raises(NotFoundError):
            await client.symbol("NOPE")


def test_backoff_delays_grow_to_the_cap() -> None:
    """Delays start with jitter under `initial`, then grow geometrically to `maximum`."""
    delays = Backoff(initial=1.0, minimum=0.5, factor=2.0, maximum=4.0).delays()
    values = [next(delays) for _ in range(8)]
    assert 0 <= values[0] <= 1.0
    assert all(0 < v <= 4.0 for v in values[1:])
    assert values[-1] >= 2.0  # at the cap, within the ±50 % jitter
