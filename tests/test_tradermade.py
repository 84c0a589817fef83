"""The TraderMade-compatible REST surface, in process, against a real node.

One node per module, on a clock that starts Monday 2026-01-05 10:00 UTC and then runs in real
time, with three days of backfilled history (Friday 10:00 onwards, FX closed at the weekend,
crypto trading through it). Shapes are compared with the examples of the compatibility spec;
values with the node's live state and store.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.middleware import Middleware

from tickwire.access import FileKeyStore, access_middleware
from tickwire.api import tradermade
from tickwire.api.tradermade import DoubleSlashMiddleware, make_routes
from tickwire.config import Settings
from tickwire.errors import StoreError
from tickwire.journal import SyncPolicy
from tickwire.model import BarUnit, PriceSide, TickBatch
from tickwire.node import Node
from tickwire.timeframes import Resolution

from .conftest import TIMEOUT_SCALE

pytestmark = pytest.mark.asyncio(loop_scope="module")

T_START = 1_767_607_200 * 10**9  # Monday 2026-01-05 10:00:00 UTC
FRIDAY, SATURDAY, SUNDAY, MONDAY = "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"
DAILY = Resolution(1, BarUnit.DAY, daily_cut=22)
RFC1123 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")
VALIDATION = "Input payload validation failed"
MAJORS = "EURUSD,GBPUSD,USDJPY,USDCHF,AUDUSD,USDCAD,NZDUSD,EURGBP,EURJPY,USDEUR"

# -- examples from the compatibility spec (values illustrative; shapes are what matter) --------

SPEC_LIVE = {
    "endpoint": "live",
    "quotes": [
        {
            "ask": 108.774,
            "base_currency": "USD",
            "bid": 108.773,
            "mid": 108.7735,
            "quote_currency": "JPY",
        }
    ],
    "requested_time": "Tue, 23 Mar 2021 09:12:55 GMT",
    "timestamp": 1616490776,
}
SPEC_HISTORICAL = {
    "date": "2019-10-09",
    "endpoint": "historical",
    "quotes": [
        {
            "base_currency": "EUR",
            "close": 1.09734,
            "high": 1.09905,
            "low": 1.09546,
            "open": 1.09557,
            "quote_currency": "USD",
        }
    ],
    "request_time": "Thu, 12 Jun 2025 14:05:44 GMT",
}
SPEC_MINUTE = {
    "close": 0.1509,
    "currency": "CNYUSD",
    "date_time": "2020-11-11-13:50",
    "endpoint": "minute_historical",
    "high": 0.1509,
    "low": 0.1509,
    "open": 0.1509,
    "request_time": "Tue, 29 Dec 2020 09:02:04 GMT",
}
SPEC_HOUR = {**SPEC_MINUTE, "endpoint": "hour_historical", "date_time": "2020-10-09-13:00"}
SPEC_TICKS = {
    "end_date": "2023-04-12 09:00",
    "endpoint": "tick_historical_sample",
    "instrument": "GBPUSD",
    "quotes": [{"ask": 1.24122, "bid": 1.24122, "inst": "GBPUSD", "time": 1681288200034}],
    "start_date": "2023-04-12 08:30",
}
SPEC_TIMESERIES = {
    "base_currency": "EUR",
    "end_date": "2023-04-13",
    "endpoint": "timeseries",
    "quote_currency": "BRL",
    "quotes": [
        {"close": 5.52149, "date": "2023-04-03", "high": 5.53923, "low": 5.46334, "open": 5.49093}
    ],
    "request_time": "Thu, 13 Apr 2023 19:16:58 GMT",
    "start_date": "2023-04-01",
}
SPEC_SPLIT = {
    **SPEC_TIMESERIES,
    "quotes": {
        "columns": ["date", "open", "high", "low", "close"],
        "data": [["2021-03-22 09:00:00", 108.674, 108.6925, 108.6205, 108.653]],
        "index": [0],
    },
}
SPEC_CONVERT = {
    "base_currency": "EUR",
    "quote": 0.85821,
    "quote_currency": "GBP",
    "requested_time": "Wed, 13 Oct 2021 10:15:17 GMT",
    "timestamp": 1634120117,
    "total": 858.21,
}
SPEC_CURRENCIES = {"available_currencies": {"AED": "UAE Dirham"}, "endpoint": "live_currencies"}
SPEC_400 = {
    "errors": {"date": "YYYY-MM-DD time data '2019-10-' does not match format '%Y-%m-%d'"},
    "message": VALIDATION,
}


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys in order, element shapes, scalar types."""
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    return type(value).__name__


def assert_sorted_keys(value: Any, *, row_labels: bool = False) -> None:
    """Every object's keys are in ascending order (row-label objects excepted)."""
    if isinstance(value, dict):
        keys = list(value)
        if not row_labels:
            assert keys == sorted(keys), keys
        for v in value.values():
            assert_sorted_keys(v)
    elif isinstance(value, list):
        for v in value:
            assert_sorted_keys(v)


# -- fixtures ---------------------------------------------------------------------------------


class Clock:
    """UTC ns: T_START when created, then advancing in real time."""

    def __init__(self) -> None:
        self.offset = T_START - time.time_ns()

    def __call__(self) -> int:
        return time.time_ns() + self.offset


async def eventually(condition: Callable[[], bool], within: float = 60) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` (scaled) seconds."""
    deadline = time.monotonic() + within * TIMEOUT_SCALE
    for _ in itertools.count():
        if condition():
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture(scope="module")
def clock() -> Clock:
    """The module's clock, shared by the node and the routes."""
    return Clock()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> AsyncIterator[Node]:
    """A node with three days of history, ready, its store caught up with the backfill."""
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("tm")),
        backfill_days=3,
        backfill_rate=4,
        sync=SyncPolicy.NONE,
        store_flush_ms=10,
    )
    started = await Node.start(settings, clock=clock)
    await eventually(lambda: started.ready)
    target = started.journal.last_offset
    await eventually(lambda: started.writer.applied_offset >= target)
    yield started
    await started.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(node: Node, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for an app serving the TraderMade routes on the shared node."""
    app = Starlette(
        routes=make_routes(clock=clock),
        middleware=[Middleware(DoubleSlashMiddleware)],
    )
    app.state.node = node
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tm") as c:
        yield c


KeyedClient = tuple[httpx.AsyncClient, str]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def keyed(
    node: Node, clock: Clock, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[KeyedClient]:
    """A client for the routes behind the real access middleware, with a key that may read
    GBP* and USDJPY only."""
    data = tmp_path_factory.mktemp("keys")
    key, _ = FileKeyStore(data / "keys.json").create(
        "gbp", plan="unlimited", symbols=["GBP*", "USDJPY"]
    )
    app = Starlette(routes=make_routes(clock=clock), middleware=[access_middleware(data)])
    app.state.node = node
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tm") as c:
        yield c, key


async def get(client: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    """GET ``url``; assert the status and return the JSON body with key order preserved."""
    response = await client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return json.loads(response.text)


def assert_400(body: Any, param: str, pattern: str = "") -> None:
    """Flask-RESTX validation error naming ``param``."""
    assert shape(body) == [("errors", [(param, "str")]), ("message", "str")]
    assert body["message"] == VALIDATION
    assert re.search(pattern, body["errors"][param]), body


async def daily_bar(node: Node, symbol: str, day: str) -> tuple[float, float, float, float]:
    """The stored mid OHLC of ``symbol`` for the trading day ``day``."""
    start = (int(np.datetime64(day, "s").astype(np.int64)) - 7200) * 10**9
    cols = await node.store.bars(
        symbol, DAILY, PriceSide.MID, start, start + 86400 * 10**9, limit=2
    )
    assert len(cols) == 1
    return float(cols.open[0]), float(cols.high[0]), float(cols.low[0]), float(cols.close[0])


def offset_of(node: Node, symbol: str) -> int:
    """Offset of the live state's last quote of ``symbol`` (0 without one)."""
    quote = node.live.quote(symbol)
    return 0 if quote is None else quote.offset


def ns(text: str) -> int:
    """UTC ns of ``YYYY-MM-DDTHH:MM``."""
    return int(np.datetime64(text, "s").astype(np.int64)) * 10**9


# -- /live ------------------------------------------------------------------------------------


async def test_live_matches_spec_shape_and_live_state(
    client: httpx.AsyncClient, node: Node, clock: Clock
) -> None:
    """/live: spec shape and key order, quotes in request order, prices from the live state."""
    body = await get(client, f"/api/v1/live?currency={MAJORS}&api_key=k")
    assert shape(body) == shape(SPEC_LIVE)
    assert_sorted_keys(body)
    assert RFC1123.match(body["requested_time"])
    assert abs(body["timestamp"] - clock() // 10**9) <= 1
    codes = MAJORS.split(",")
    assert [q["base_currency"] + q["quote_currency"] for q in body["quotes"]] == codes
    for quote in body["quotes"][:-1]:
        symbol = quote["base_currency"] + quote["quote_currency"]
        live = node.live.quote(symbol)
        assert live is not None
        # the live state may have moved on since; the quote is never ahead of it
        assert quote["bid"] <= quote["mid"] <= quote["ask"]
        decimals = node.catalog[symbol].decimals
        assert quote["mid"] == round((quote["bid"] + quote["ask"]) / 2, decimals + 1)


async def test_live_agrees_with_live_state_after_a_new_tick(
    client: httpx.AsyncClient, node: Node, clock: Clock
) -> None:
    """A tick applied to the live state shows in /live at once, cache or not (CADCHF: a
    symbol no other test reads, so the odd prices injected here disturb nothing)."""
    await get(client, "/api/v1/live?currency=CADCHF")
    for bid in (1.01234, 1.01111):
        batch = TickBatch.from_rows([("CADCHF", clock(), bid, bid + 0.00002)])
        done = await node.tickplant.submit_durable(batch)
        last = done.last_offset
        await eventually(lambda last=last: offset_of(node, "CADCHF") >= last)  # type: ignore[misc]
        before = node.live.quote("CADCHF")
        body = await get(client, "/api/v1/live?currency=CADCHF")
        after = node.live.quote("CADCHF")
        assert before is not None and after is not None
        # the feed may add a tick while the request runs: either side of it is correct
        shown = (body["quotes"][0]["bid"], body["quotes"][0]["ask"])
        assert shown in ((before.bid, before.ask), (after.bid, after.ask))


async def test_live_inverse_and_cross(client: httpx.AsyncClient, node: Node) -> None:
    """A reversed code is 1/ask, 1/bid of the pair; a cross combines two legs."""
    body = await get(client, "/api/v1/live?currency=USDEUR,SEKNOK,EURUSD")
    inverse, cross, direct = body["quotes"]
    assert (inverse["base_currency"], inverse["quote_currency"]) == ("USD", "EUR")
    assert inverse["bid"] == pytest.approx(1 / direct["ask"], rel=2e-6)
    assert inverse["ask"] == pytest.approx(1 / direct["bid"], rel=2e-6)
    assert (cross["base_currency"], cross["quote_currency"]) == ("SEK", "NOK")
    assert 0 < cross["bid"] <= cross["mid"] <= cross["ask"]


async def test_live_error_is_per_quote(client: httpx.AsyncClient) -> None:
    """Unknown codes and CFDs fail alone, in place, as {error, instrument, message}."""
    body = await get(client, "/api/v1/live?currency=EURUSD,UK100,xxxyyy,GBPUSD")
    good, cfd, unknown, other = body["quotes"]
    assert shape(good) == shape(SPEC_LIVE["quotes"][0])
    assert shape(other) == shape(SPEC_LIVE["quotes"][0])
    for err, code in ((cfd, "UK100"), (unknown, "XXXYYY")):
        assert list(err) == ["error", "instrument", "message"]
        assert err["error"] == 204 and err["instrument"] == code


async def test_live_per_quote_timestamp(client: httpx.AsyncClient, node: Node) -> None:
    """per_quote_ts=true adds each quote's last tick time, in epoch seconds."""
    body = await get(client, "/api/v1/live?currency=EURUSD,USDEUR&per_quote_ts=true")
    live = node.live.quote("EURUSD")
    assert live is not None
    for quote in body["quotes"]:
        assert list(quote)[-1] == "timestamp"
        assert quote["timestamp"] == pytest.approx(live.ts / 1e9, abs=2)


async def test_entitlements_through_the_access_middleware(keyed: KeyedClient) -> None:
    """A key limited to GBP* and USDJPY: denied quotes become 403s in place (an inverse needs
    its pair), single-pair endpoints answer HTTP 403, and rate-limit headers are present."""
    client, key = keyed
    response = await client.get(f"/api/v1/live?currency=EURUSD,GBPUSD,USDGBP,EURGBP&api_key={key}")
    assert response.status_code == 200
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(
        response.headers
    )
    quotes = response.json()["quotes"]
    assert [q.get("error") for q in quotes] == [403, None, None, 403]
    assert quotes[0] == {
        "error": 403,
        "instrument": "EURUSD",
        "message": "Your plan doesn't allow access to this dataset",
    }
    historical = await get(
        client, f"/api/v1/historical?currency=GBPUSD,EURUSD&date={FRIDAY}&api_key={key}"
    )
    assert [q.get("error") for q in historical["quotes"]] == [None, 403]
    denied = await get(
        client,
        f"/api/v1/timeseries?currency=EURUSD&start_date={FRIDAY}&end_date={MONDAY}&api_key={key}",
        403,
    )
    assert denied == {"error": 403, "message": "Your plan doesn't allow access to this dataset"}
    assert (await client.get("/api/v1/live?currency=GBPUSD")).status_code == 401


@pytest.mark.parametrize(
    ("query", "pattern"),
    [
        ("", "Missing required parameter"),
        ("currency=", "must not be empty"),
        ("currency=,,", "no currency"),
        ("currency=EUR$USD", "invalid currency code"),
        ("currency=" + ",".join(["EURUSD"] * 51), "at most 50"),
        ("currency=" + "A" * 2000, "longer than"),
    ],
)
async def test_live_rejects_bad_currency_lists(
    client: httpx.AsyncClient, query: str, pattern: str
) -> None:
    """Missing, empty, malformed, too many or too long → the Flask-RESTX 400."""
    assert_400(await get(client, f"/api/v1/live?{query}", 400), "currency", pattern)


async def test_live_accepts_the_cap(client: httpx.AsyncClient) -> None:
    """Exactly 50 codes are answered, one quote each."""
    body = await get(client, "/api/v1/live?currency=" + ",".join(["EURUSD"] * 50))
    assert len(body["quotes"]) == 50


async def test_live_head_and_wrong_method(client: httpx.AsyncClient) -> None:
    """HEAD has no body; POST is a 405 with a JSON message."""
    head = await client.head("/api/v1/live?currency=EURUSD")
    assert head.status_code == 200 and head.content == b""
    post = await client.post("/api/v1/live?currency=EURUSD")
    assert post.status_code == 405 and "message" in post.json()


# -- /historical ------------------------------------------------------------------------------


async def test_historical_matches_spec_and_store(client: httpx.AsyncClient, node: Node) -> None:
    """Daily OHLC (22:00 cut, mid) of one date, spec shape, values from the store."""
    body = await get(client, f"/api/v1/historical?currency=EURUSD,USDJPY&date={FRIDAY}")
    assert shape(body) == shape(SPEC_HISTORICAL)
    assert_sorted_keys(body)
    assert body["date"] == FRIDAY and RFC1123.match(body["request_time"])
    for quote in body["quotes"]:
        symbol = quote["base_currency"] + quote["quote_currency"]
        places = node.catalog[symbol].decimals + 1
        stored = await daily_bar(node, symbol, FRIDAY)
        assert [quote[k] for k in ("open", "high", "low", "close")] == [
            round(v, places) for v in stored
        ]


async def test_historical_today_is_the_forming_bar(client: httpx.AsyncClient, node: Node) -> None:
    """Today's date answers the bar still forming (opened Sunday 22:00)."""
    body = await get(client, f"/api/v1/historical?currency=EURUSD&date={MONDAY}")
    quote = body["quotes"][0]
    o, _, _, _ = await daily_bar(node, "EURUSD", MONDAY)
    assert quote["open"] == round(o, 6)
    assert quote["low"] <= quote["close"] <= quote["high"]


async def test_historical_weekend_gives_friday(client: httpx.AsyncClient, node: Node) -> None:
    """Saturday and Sunday dates answer Friday's bar and say so in ``date``."""
    friday = await get(client, f"/api/v1/historical?currency=EURUSD&date={FRIDAY}")
    for day in (SATURDAY, SUNDAY):
        body = await get(client, f"/api/v1/historical?currency=EURUSD&date={day}")
        assert body["date"] == FRIDAY
        assert body["quotes"] == friday["quotes"]


async def test_historical_crypto_only_keeps_weekend(client: httpx.AsyncClient) -> None:
    """A crypto-only request on a Saturday gets Saturday's bar (crypto trades then)."""
    body = await get(client, f"/api/v1/historical?currency=BTCUSD&date={SATURDAY}")
    assert body["date"] == SATURDAY and "open" in body["quotes"][0]


async def test_historical_default_majors_and_inverse(client: httpx.AsyncClient) -> None:
    """Without currency: the nine majors; an inverse is the pair's OHLC inverted."""
    body = await get(client, f"/api/v1/historical?date={FRIDAY}")
    pairs = [q["base_currency"] + q["quote_currency"] for q in body["quotes"]]
    assert pairs == list(tradermade.DEFAULT_HISTORICAL)
    both = await get(client, f"/api/v1/historical?currency=EURUSD,USDEUR&date={FRIDAY}")
    direct, inverse = both["quotes"]
    assert inverse["open"] == pytest.approx(1 / direct["open"], rel=1e-5)
    assert inverse["high"] == pytest.approx(1 / direct["low"], rel=1e-5)
    assert inverse["low"] == pytest.approx(1 / direct["high"], rel=1e-5)
    assert inverse["close"] == pytest.approx(1 / direct["close"], rel=1e-5)


async def test_historical_per_quote_errors(client: httpx.AsyncClient) -> None:
    """Unknown pair and no data for the date are errors in place of the quote."""
    body = await get(client, "/api/v1/historical?currency=EURUSD,XXXYYY&date=2025-06-02")
    no_data, unknown = body["quotes"]
    assert no_data == {
        "error": 204,
        "instrument": "EURUSD",
        "message": "Data for the date requested not available",
    }
    assert unknown["error"] == 204 and unknown["instrument"] == "XXXYYY"


@pytest.mark.parametrize(
    ("date", "pattern"),
    [
        ("2019-10-", r"^YYYY-MM-DD time data '2019-10-' does not match format '%Y-%m-%d'$"),
        ("2026-13-01", "YYYY-MM-DD"),
        ("1969-12-31", "before 1970"),
        ("2026-01-07", "future"),
        ("9999-12-31", "future"),
    ],
)
async def test_historical_rejects_bad_dates(
    client: httpx.AsyncClient, date: str, pattern: str
) -> None:
    """Malformed, too old and future dates → 400 (the docs' exact wording for a bad format)."""
    assert_400(await get(client, f"/api/v1/historical?date={date}", 400), "date", pattern)


async def test_historical_docs_error_verbatim(client: httpx.AsyncClient) -> None:
    """The docs' 400 example comes back byte-for-byte in content."""
    assert await get(client, "/api/v1/historical?date=2019-10-", 400) == SPEC_400


# -- /minute_historical, /hour_historical -------------------------------------------------------


async def test_minute_and_hour_historical_shapes(client: httpx.AsyncClient, node: Node) -> None:
    """One bar, spec shape; off-grid times are floored; values from the store."""
    cols = await node.store.bars(
        "EURUSD",
        Resolution(1, BarUnit.MINUTE),
        PriceSide.MID,
        ns("2026-01-05T09:00"),
        ns("2026-01-05T10:00"),
        limit=60,
    )
    start = int(cols.start[0])
    label = np.datetime_as_string(np.datetime64(start // 10**9, "s"), unit="m").replace("T", "-")
    minute = await get(client, f"/api/v1/minute_historical?currency=EURUSD&date_time={label}")
    assert shape(minute) == shape(SPEC_MINUTE)
    assert minute["date_time"] == label and minute["open"] == round(float(cols.open[0]), 6)
    hour = await get(client, "/api/v1/hour_historical?currency=EURUSD&date_time=2026-01-05-09:29")
    assert shape(hour) == shape(SPEC_HOUR)
    assert hour["date_time"] == "2026-01-05-09:00"
    spaced = await get(client, "/api/v1/hour_historical?currency=EURUSD&date_time=2026-01-05 09:00")
    assert spaced["open"] == hour["open"]


async def test_hour_historical_saturday_gives_friday(client: httpx.AsyncClient) -> None:
    """Saturday 13:00 answers Friday 13:00 and echoes the bar served (as captured in S9)."""
    body = await get(client, "/api/v1/hour_historical?currency=GBPUSD&date_time=2026-01-03-13:00")
    assert body["date_time"] == "2026-01-02-13:00"
    friday = await get(client, "/api/v1/hour_historical?currency=GBPUSD&date_time=2026-01-02-13:00")
    assert body["open"] == friday["open"]


async def test_one_bar_no_data_is_204_with_http_200(client: httpx.AsyncClient) -> None:
    """A bar with no ticks: HTTP 200 with {"error": 204, "message": ...}."""
    body = await get(client, "/api/v1/minute_historical?currency=EURUSD&date_time=2025-06-02-10:00")
    assert body == {"error": 204, "message": "Data for the date requested not available"}


@pytest.mark.parametrize(
    ("query", "param", "pattern"),
    [
        ("currency=EURUSD,GBPUSD&date_time=2026-01-05-09:00", "currency", "one currency"),
        ("currency=UK100&date_time=2026-01-05-09:00", "currency", "not available"),
        ("currency=EURUSD", "date_time", "Missing required"),
        ("currency=EURUSD&date_time=2026-01-05-9", "date_time", "^YYYY-MM-DD-HH:MM time data"),
        ("currency=EURUSD&date_time=2026-01-06-10:00", "date_time", "future"),
    ],
)
async def test_one_bar_rejects_bad_input(
    client: httpx.AsyncClient, query: str, param: str, pattern: str
) -> None:
    """Lists, unknown codes, missing or malformed or future times → 400."""
    assert_400(await get(client, f"/api/v1/minute_historical?{query}", 400), param, pattern)


# -- /timeseries ------------------------------------------------------------------------------


async def test_timeseries_daily_records(client: httpx.AsyncClient, node: Node) -> None:
    """Daily records: spec shape, weekends skipped, today's forming bar last, echoes as given."""
    body = await get(
        client,
        f"/api/v1/timeseries?currency=EURUSD&start_date=2026-01-01&end_date={MONDAY}&period=15",
    )
    assert shape(body) == shape(SPEC_TIMESERIES)
    assert_sorted_keys(body)
    assert [q["date"] for q in body["quotes"]] == [FRIDAY, MONDAY]
    assert (body["start_date"], body["end_date"]) == ("2026-01-01", MONDAY)
    o, h, _, _ = await daily_bar(node, "EURUSD", FRIDAY)
    assert body["quotes"][0]["open"] == round(o, 6) and body["quotes"][0]["high"] == round(h, 6)


async def test_timeseries_weekend_flag(client: httpx.AsyncClient) -> None:
    """weekend=true adds the weekend bars of crypto; without it they are skipped."""
    base = "/api/v1/timeseries?currency=BTCUSD&start_date=2026-01-02&end_date=2026-01-05"
    plain = await get(client, base)
    weekend = await get(client, base + "&weekend=true")
    assert [q["date"] for q in plain["quotes"]] == [FRIDAY, MONDAY]
    assert [q["date"] for q in weekend["quotes"]] == [FRIDAY, SATURDAY, SUNDAY, MONDAY]


async def test_timeseries_split_is_what_the_sdk_reads(client: httpx.AsyncClient) -> None:
    """format=split: columns date,open,high,low,close; data rows; index 0..n-1."""
    body = await get(
        client,
        "/api/v1/timeseries?currency=USDJPY&start_date=2026-01-05-08:00"
        "&end_date=2026-01-05-09:30&interval=hourly&period=15&format=split",
    )
    assert shape(body) == shape(SPEC_SPLIT)
    quotes = body["quotes"]
    assert quotes["columns"] == ["date", "open", "high", "low", "close"]
    assert [row[0] for row in quotes["data"]] == ["2026-01-05 08:00:00", "2026-01-05 09:00:00"]
    assert quotes["index"] == [0, 1]


async def test_timeseries_minute_period_and_echo(client: httpx.AsyncClient) -> None:
    """Minute bars honour period=15; start echoes the input, end is normalised."""
    body = await get(
        client,
        "/api/v1/timeseries?currency=EURUSD&start_date=2026-01-05-08:21"
        "&end_date=2026-01-05 09:00&interval=minute&period=15",
    )
    dates = [q["date"] for q in body["quotes"]]
    assert dates == [f"2026-01-05 {t}:00" for t in ("08:15", "08:30", "08:45", "09:00")]
    assert body["start_date"] == "2026-01-05-08:21"
    assert body["end_date"] == "2026-01-05 09:00:00"


async def test_timeseries_bad_period_falls_back_to_one(client: httpx.AsyncClient) -> None:
    """An unsupported period (7, abc) gives the interval's base bars instead of an error."""
    url = (
        "/api/v1/timeseries?currency=EURUSD&start_date=2026-01-05-08:00"
        "&end_date=2026-01-05-08:05&interval=minute"
    )
    base = await get(client, url)
    for period in ("7", "abc", "-1", "9" * 50):
        assert (await get(client, f"{url}&period={period}"))["quotes"] == base["quotes"]


async def test_timeseries_hourly_date_only_covers_the_day(client: httpx.AsyncClient) -> None:
    """Hourly with date-only start and end: every hour of that day (no weekend hours)."""
    body = await get(
        client,
        f"/api/v1/timeseries?currency=EURUSD&start_date={FRIDAY}&end_date={FRIDAY}&interval=hourly",
    )
    hours = [q["date"][11:13] for q in body["quotes"]]
    assert hours == [f"{h:02d}" for h in range(10, 22)]


async def test_timeseries_formats(client: httpx.AsyncClient) -> None:
    """index, columns and csv carry the same rows as records."""
    url = (
        "/api/v1/timeseries?currency=GBPUSD&interval=hourly"
        "&start_date=2026-01-05-06:00&end_date=2026-01-05-09:00"
    )  # completed bars only: the answers must not move between requests
    records = (await get(client, url))["quotes"]
    assert len(records) == 4
    index = (await get(client, url + "&format=index"))["quotes"]
    assert list(index) == ["0", "1", "2", "3"] and list(index.values()) == records
    columns = (await get(client, url + "&format=columns"))["quotes"]
    assert list(columns) == ["close", "date", "high", "low", "open"]
    assert [columns["date"][str(i)] for i in range(4)] == [r["date"] for r in records]
    csv = await client.get(url + "&format=csv")
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0] == "date,open,high,low,close"
    first = lines[1].split(",")
    assert first[0] == records[0]["date"] and float(first[4]) == records[0]["close"]


@pytest.mark.parametrize(
    ("query", "param", "pattern"),
    [
        ("start_date=2026-01-01&end_date=2026-01-05&interval=weekly", "interval", "daily"),
        ("start_date=2026-01-01&end_date=2026-01-05&format=xml", "format", "records"),
        ("start_date=2026-01-05&end_date=2026-01-01", "end_date", "before"),
        ("start_date=2025-01-01&end_date=2026-01-05", "end_date", "1 year"),
        ("start_date=2026-01-01&end_date=2026-01-07", "end_date", "future"),
        ("start_date=2026-01-01&end_date=2026-1-", "end_date", "YYYY-MM-DD"),
        ("end_date=2026-01-05", "start_date", "Missing"),
        (
            "start_date=2025-12-01-00:00&end_date=2026-01-05-00:00&interval=hourly",
            "end_date",
            "1 month",
        ),
        (
            "start_date=2026-01-01-00:00&end_date=2026-01-05-09:00&interval=minute",
            "end_date",
            "2 working days",
        ),
        (
            "start_date=2026-01-05-09:00&end_date=2026-01-05-10:30&interval=minute",
            "end_date",
            "future",
        ),
        ("start_date=2026-01-05-0900&end_date=2026-01-05-10:00&interval=hourly", "start_date", ""),
        ("start_date=2026-01-05&end_date=2026-01-06&interval=hourly", "end_date", "future"),
        (
            "start_date=2026-01-06-09:00&end_date=2026-01-06-10:00&interval=hourly",
            "start_date",
            "future",
        ),
    ],
)
async def test_timeseries_rejects_bad_input(
    client: httpx.AsyncClient, query: str, param: str, pattern: str
) -> None:
    """Bad interval/format/dates, reversed, future or too long ranges → 400."""
    body = await get(client, f"/api/v1/timeseries?currency=EURUSD&{query}", 400)
    assert_400(body, param, pattern)


async def test_timeseries_minute_over_a_weekend_is_two_working_days(
    client: httpx.AsyncClient,
) -> None:
    """Friday 21:00 → Monday 09:00 spans two working days, so it is allowed."""
    body = await get(
        client,
        "/api/v1/timeseries?currency=EURUSD&start_date=2026-01-02-21:00"
        "&end_date=2026-01-05-09:00&interval=minute&period=30",
    )
    dates = [q["date"] for q in body["quotes"]]
    assert dates[:3] == ["2026-01-02 21:00:00", "2026-01-02 21:30:00", "2026-01-04 22:00:00"]
    assert dates[-1] == "2026-01-05 09:00:00"


# -- /pandasDF --------------------------------------------------------------------------------


async def test_pandas_df_ohlc_and_close(client: httpx.AsyncClient) -> None:
    """fields=ohlc: bare records; fields=close: one column per pair, joined on date."""
    url = "/api/v1/pandasDF?start_date=2026-01-01&end_date=2026-01-05"
    ohlc = await get(client, url + "&currency=EURUSD")
    assert shape(ohlc) == shape(SPEC_TIMESERIES["quotes"])
    close = await get(client, url + "&currency=EURUSD,USDJPY,USDEUR&fields=close")
    assert [list(row) for row in close] == [["EURUSD", "USDEUR", "USDJPY", "date"]] * 2
    assert [row["date"] for row in close] == [row["date"] for row in ohlc] == [FRIDAY, MONDAY]
    assert close[0]["EURUSD"] == ohlc[0]["close"]  # Friday's bar is complete; Monday's moves
    split = await get(client, url + "&currency=EURUSD,USDJPY&fields=close&format=split")
    assert split["columns"] == ["date", "EURUSD", "USDJPY"] and split["index"] == [0, 1]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("currency=EURUSD,USDJPY", "fields"),
        ("currency=EURUSD&format=csv", "format"),
        ("currency=EURUSD&fields=hlc", "fields"),
        ("currency=EURXXX", "currency"),
    ],
)
async def test_pandas_df_rejects(client: httpx.AsyncClient, query: str, param: str) -> None:
    """ohlc with several pairs, csv, unknown fields or pairs → 400."""
    url = f"/api/v1/pandasDF?start_date=2026-01-01&end_date=2026-01-05&{query}"
    assert_400(await get(client, url, 400), param)


# -- /convert ---------------------------------------------------------------------------------


async def test_convert_shape_and_total(client: httpx.AsyncClient, node: Node) -> None:
    """Spec shape; quote is the live mid; total = amount × quote; same currency is 1."""
    body = await get(client, "/api/v1/convert?from=EUR&to=GBP&amount=1000")
    assert shape(body) == shape(SPEC_CONVERT)
    assert body["total"] == pytest.approx(1000 * body["quote"], rel=1e-12)
    live = node.live.quote("EURGBP")
    assert live is not None and body["quote"] == pytest.approx(live.mid, rel=1e-3)
    same = await get(client, "/api/v1/convert?from=usd&to=USD&amount=5")
    assert (same["quote"], same["total"]) == (1.0, 5.0)
    inverse = await get(client, "/api/v1/convert?from=USD&to=EUR&amount=1")
    assert inverse["quote"] == pytest.approx(1 / node.live.quote("EURUSD").mid, rel=1e-3)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("from=EUR&to=GBP&amount=-1", "amount"),
        ("from=EUR&to=GBP&amount=nan", "amount"),
        ("from=EUR&to=GBP&amount=inf", "amount"),
        ("from=EUR&to=GBP&amount=1e308", "amount"),  # the total would not be a finite number
        ("from=EUR&to=GBP&amount=abc", "amount"),
        ("from=EUR&to=GBP&amount=1_000", "amount"),  # float() takes it; the API does not
        ("from=EUR&to=GBP&amount=%EF%BC%91%EF%BC%90", "amount"),  # fullwidth "10"
        ("from=EUR&to=GBP&amount=%D9%A3", "amount"),  # Arabic-Indic 3
        ("from=EUR&to=GBP", "amount"),
        ("from=EUR&to=BRL&amount=1", "to"),
        ("from=XXXXXXXXXXXXXXXXXXXXXXXXXXX&to=GBP&amount=1", "from"),
    ],
)
async def test_convert_rejects(client: httpx.AsyncClient, query: str, param: str) -> None:
    """Negative, NaN, infinite, non-numeric or missing amounts and unknown codes → 400."""
    assert_400(await get(client, f"/api/v1/convert?{query}", 400), param)


async def test_convert_minus_zero_is_zero(client: httpx.AsyncClient) -> None:
    """``-0`` converts to a plain 0 total, not ``-0.0``."""
    response = await client.get("/api/v1/convert?from=EUR&to=GBP&amount=-0")
    assert response.status_code == 200, response.text
    assert '"total":0.0' in response.text.replace(" ", "")
    assert "-0" not in response.text


async def test_convert_and_live_without_a_rate_are_204(
    client: httpx.AsyncClient, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known currencies with no quote to derive from (NoRateError): the 204 "not available"."""
    monkeypatch.setattr(node.live, "quote", lambda _: None)
    body = await get(client, "/api/v1/convert?from=SEK&to=NZD&amount=1")
    assert body == {"error": 204, "message": "Currency pair currently not available"}
    live = await get(client, "/api/v1/live?currency=SEKNZD")
    assert live["quotes"] == [
        {"error": 204, "instrument": "SEKNZD", "message": "Currency pair currently not available"}
    ]


# -- ticks ------------------------------------------------------------------------------------


async def test_tick_sample_matches_spec_and_store(client: httpx.AsyncClient, node: Node) -> None:
    """Ticks in [start, end): spec shape, ``time`` in epoch ms, values from the store."""
    body = await get(
        client, "/api/v1/tick_historical_sample/EURUSD/2026-01-05 08:30/2026-01-05 09:00"
    )
    assert shape(body) == shape(SPEC_TICKS)
    assert (body["start_date"], body["end_date"]) == ("2026-01-05 08:30", "2026-01-05 09:00")
    stored = await node.store.ticks(
        "EURUSD", ns("2026-01-05T08:30"), ns("2026-01-05T09:00"), limit=10**6
    )
    assert len(body["quotes"]) == len(stored) > 0
    first = body["quotes"][0]
    assert first["time"] == int(stored.ts[0]) // 10**6
    assert (first["bid"], first["ask"], first["inst"]) == (stored.bid[0], stored.ask[0], "EURUSD")


async def test_tick_historical_inverse_csv_and_dash_dates(client: httpx.AsyncClient) -> None:
    """CSV has time,inst,bid,ask with pandas-style times; a reversed code inverts; dashes work."""
    direct = await get(client, "/api/v1/tick_historical/EURUSD/2026-01-05-08:30/2026-01-05-08:40")
    csv = await client.get(
        "/api/v1/tick_historical/USDEUR/2026-01-05%2008:30/2026-01-05%2008:40?format=csv"
    )
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0] == "time,inst,bid,ask" and len(lines) == len(direct["quotes"]) + 1
    stamp, inst, bid, ask = lines[1].split(",")
    assert re.fullmatch(r"2026-01-05 08:[34]\d:\d{2}\.\d{6}\+00:00", stamp) and inst == "USDEUR"
    assert float(bid) == pytest.approx(1 / direct["quotes"][0]["ask"], rel=1e-5)
    assert float(ask) == pytest.approx(1 / direct["quotes"][0]["bid"], rel=1e-5)


@pytest.mark.parametrize(
    ("path", "param", "pattern"),
    [
        ("tick_historical_sample/EURUSD/2026-01-05 08:00/2026-01-05 08:31", "end_date", "30 min"),
        ("tick_historical/EURUSD/2026-01-05 08:00/2026-01-05 09:01", "end_date", "60 min"),
        ("tick_historical/EURUSD/2026-01-05 08:00/2026-01-05 08:00", "end_date", "after"),
        ("tick_historical/EURUSD/2026-01-05 09:50/2026-01-05 10:30", "end_date", "future"),
        ("tick_historical/EURUSD/2026-01-05 8h/2026-01-05 09:00", "start_date", "YYYY"),
        ("tick_historical/UK100/2026-01-05 08:00/2026-01-05 08:10", "symbol", "not available"),
        ("tick_historical/EURUSD/" + "2" * 80 + "/2026-01-05 08:10", "start_date", "longer"),
        ("tick_historical/EURUSD/2026-01-05 08:00/2026-01-05 08:10?format=xml", "format", "json"),
    ],
)
async def test_ticks_reject(client: httpx.AsyncClient, path: str, param: str, pattern: str) -> None:
    """Chunks over the limit, empty or future ranges, bad dates, codes or formats → 400."""
    assert_400(await get(client, f"/api/v1/{path}", 400), param, pattern)


async def test_ticks_cap_refuses_instead_of_truncating(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More ticks than MAX_TICKS in the range → 400, never a silently cut answer."""
    monkeypatch.setattr(tradermade, "MAX_TICKS", 3)
    body = await get(
        client, "/api/v1/tick_historical/EURUSD/2026-01-05 08:00/2026-01-05 09:00", 400
    )
    assert_400(body, "end_date", "more than 3 ticks")


# -- lists, market hours, plumbing ------------------------------------------------------------


async def test_lists(client: httpx.AsyncClient, node: Node) -> None:
    """Currency lists: spec shape, sorted codes; crypto apart; no CFDs in our catalogue."""
    live = await get(client, "/api/v1/live_currencies_list")
    assert shape(live)[1] == shape(SPEC_CURRENCIES)[1] and live["endpoint"] == "live_currencies"
    assert_sorted_keys(live)
    assert {"EUR", "USD", "XAU"} <= set(live["available_currencies"])
    assert "BTC" not in live["available_currencies"]
    crypto = await get(client, "/api/v1/live_crypto_list")
    assert crypto == {
        "available_currencies": {"BTC": "Bitcoin", "ETH": "Ethereum"},
        "endpoint": "live_crypto",
    }
    assert await get(client, "/api/v1/cfd_list") == {"available_cfds": {}}
    history = await get(client, "/api/v1/historical_currencies_list")
    assert {"EURUSD", "USDEUR"} <= set(history["available_currencies"])
    stream = await get(client, "/api/v1/streaming_currencies_list")
    assert set(stream["available_currencies"]) == set(node.catalog)


async def test_market_hours(client: httpx.AsyncClient) -> None:
    """Open status per class (Monday: all open) and the weekly schedule."""
    status = await get(client, "/api/v1/market_open_status")
    assert_sorted_keys(status)
    assert status["markets"]["fx"] == {
        "is_open": True,
        "next_close": "Fri, 09 Jan 2026 22:00:00 GMT",
        "next_open": "Sun, 11 Jan 2026 22:00:00 GMT",
        "status": "open",
    }
    assert status["markets"]["crypto"]["next_close"] is None
    times = await get(client, "/api/v1/market_opening_times")
    assert_sorted_keys(times)
    assert times["markets"]["fx"]["sessions"] == [{"close": "Friday 22:00", "open": "Sunday 22:00"}]


async def test_double_slash(client: httpx.AsyncClient) -> None:
    """``//api/v1/...`` as in TraderMade's docs examples is served like ``/api/v1/...``."""
    body = await get(client, "http://tm//api/v1/live?currency=EURUSD")
    assert body["endpoint"] == "live"
    ticks = await client.get(
        "http://tm//api/v1/tick_historical_sample/EURUSD/2026-01-05 08:30/2026-01-05 08:31"
    )
    assert ticks.status_code == 200


async def test_store_failure_is_503_not_500(
    client: httpx.AsyncClient, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing store answers 503 in TraderMade's error shape."""

    async def broken(*args: object, **kwargs: object) -> None:
        raise StoreError("disk on fire")

    monkeypatch.setattr(node.store, "bars", broken)
    body = await get(
        client, "/api/v1/hour_historical?currency=EURUSD&date_time=2026-01-05-09:00", 503
    )
    assert list(body) == ["error", "message"] and body["error"] == 503


FUZZ = [
    "/api/v1/live?currency=%00%ff",
    "/api/v1/live?currency=EURUSD&currency=GBPUSD",
    "/api/v1/historical?date=%00",
    "/api/v1/historical?date=2026-01-02&currency=" + "%2C" * 500,
    "/api/v1/minute_historical?currency=EURUSD&date_time=0000-00-00-00:00",
    "/api/v1/hour_historical?currency=EURUSD&date_time=2026-02-30-10:00",
    "/api/v1/timeseries?currency=EURUSD&start_date=0001-01-01&end_date=9999-12-31",
    "/api/v1/timeseries?currency=EURUSD&start_date=2026-01-01&end_date=2026-01-02&period=1e309",
    "/api/v1/timeseries?currency=&start_date=2026-01-01&end_date=2026-01-02",
    "/api/v1/pandasDF?currency=EURUSD&start_date=x&end_date=y",
    "/api/v1/convert?from=EUR&to=GBP&amount=1e309",
    "/api/v1/convert?from=EUR&to=GBP&amount=" + "9" * 5000,
    "/api/v1/tick_historical/%20/%20/%20",
    "/api/v1/tick_historical/EURUSD/1970-01-01 00:00/1970-01-01 00:30",
    "/api/v1/tick_historical/EURUSD/2262-04-11 23:00/2262-04-11 23:30",
    "/api/v1/tick_historical_sample/" + "E" * 300 + "/a/b",
]


@pytest.mark.parametrize("url", FUZZ)
async def test_hostile_input_never_500(client: httpx.AsyncClient, url: str) -> None:
    """Odd input gets a TraderMade-shaped answer below 500."""
    response = await client.get(url)
    assert response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body, dict) and ("errors" in body or "error" in body or "quotes" in body)


async def test_every_price_is_a_finite_float(client: httpx.AsyncClient) -> None:
    """Prices are JSON floats (never strings, never null) across endpoints."""
    live = await get(client, f"/api/v1/live?currency={MAJORS}")
    prices = [q[k] for q in live["quotes"] for k in ("bid", "ask", "mid")]
    series = await get(
        client, "/api/v1/timeseries?currency=USDEUR&start_date=2026-01-01&end_date=2026-01-05"
    )
    prices += [q[k] for q in series["quotes"] for k in ("open", "high", "low", "close")]
    assert prices and all(isinstance(p, float) and math.isfinite(p) for p in prices)
