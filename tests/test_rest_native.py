"""The native REST API against a running node: shapes, paging, agreement, and bad input."""

from __future__ import annotations

import csv
import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from tickwire.api import native
from tickwire.api.errors import ApiError, handle_api_error
from tickwire.catalog import default_catalog
from tickwire.config import Settings
from tickwire.server.app import create_app

from .serverproc import ServerProcess

EUR_ONLY_KEY_NAME = "eur-only"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server with two days of history and a steady load, and a key for EUR* only."""
    data: Path = tmp_path_factory.mktemp("rest") / "data"
    proc = ServerProcess(
        data,
        "--backfill-days",
        "2",
        "--no-weekend-closed",
        "--load-rate",
        "200",
        "--sync",
        "none",
        "--store-flush-ms",
        "20",
    )
    data.mkdir(parents=True)
    proc.eur_only_key = proc.create_key(EUR_ONLY_KEY_NAME, "--symbols", "EUR*")
    with proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-API-Key": server.key}) as http:
        yield http


def get(client: httpx.Client, path: str, status: int = 200, **params: Any) -> Any:
    """GET and check the status; return the decoded JSON."""
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    return response.json()


def assert_error(body: dict[str, Any], code: str, param: str | None) -> None:
    """An error body has the stable code, a message and the offending parameter."""
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["param"] == param


def test_quotes_carry_positions(client: httpx.Client) -> None:
    """Quotes for many symbols come in request order with bid, ask, mid, time and position."""
    body = get(client, "/v1/quotes", symbols="eurusd,USDJPY,XAUUSD")
    assert [q["symbol"] for q in body["quotes"]] == ["EURUSD", "USDJPY", "XAUUSD"]
    for q in body["quotes"]:
        assert q["ask"] >= q["bid"] > 0 and q["mid"] == (q["bid"] + q["ask"]) / 2
        assert q["time"].endswith("Z") and q["epoch"] > 0 and q["offset"] > 0 and q["seq"] > 0
    everything = get(client, "/v1/quotes")
    assert len(everything["quotes"]) + len(everything["missing"]) >= 40


def test_quote_is_the_journaled_tick(client: httpx.Client) -> None:
    """A quote's position names the stored tick with the same prices (REST agrees with stream)."""
    quote = get(client, "/v1/quotes", symbols="EURUSD")["quotes"][0]
    deadline = time.monotonic() + 10
    while True:
        ticks = get(
            client,
            "/v1/ticks/EURUSD",
            **{"from": quote["ts"] // 10**6, "to": quote["ts"] // 10**6 + 1},
        )["ticks"]
        match = [t for t in ticks if t["offset"] == quote["offset"]]
        if match or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert match, "the quoted tick never reached the store"
    tick = match[0]
    assert (tick["bid"], tick["ask"], tick["seq"], tick["ts"]) == (
        quote["bid"],
        quote["ask"],
        quote["seq"],
        quote["ts"],
    )


def test_bars_page_without_gap_or_duplicate(client: httpx.Client) -> None:
    """Paging with next_cursor returns exactly the bars of one large request."""
    now_ms = int(time.time() * 1000)
    window = {"unit": "minute", "multiplier": 5, "from": now_ms - 6 * 3_600_000, "to": now_ms}
    whole = get(client, "/v1/bars/EURUSD", limit=10_000, **window)["bars"]
    assert len(whole) > 20
    pages, cursor = [], None
    while True:
        params = {**window, "limit": 7, **({"cursor": cursor} if cursor else {})}
        body = get(client, "/v1/bars/EURUSD", **params)
        pages.extend(body["bars"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [b["ts"] for b in pages] == [b["ts"] for b in whole]
    starts = [b["ts"] for b in whole]
    assert starts == sorted(set(starts))
    assert all(b["complete"] for b in whole[:-1])


def test_bars_agree_with_ticks(client: httpx.Client) -> None:
    """A closed minute bar equals the OHLC of that minute's raw ticks."""
    now_ms = int(time.time() * 1000)
    minute = (now_ms - 10 * 60_000) // 60_000 * 60_000
    bars = get(
        client,
        "/v1/bars/EURUSD",
        unit="minute",
        side="bid",
        **{"from": minute, "to": minute + 60_000},
    )["bars"]
    ticks = get(
        client, "/v1/ticks/EURUSD", limit=10_000, **{"from": minute, "to": minute + 60_000}
    )["ticks"]
    assert len(bars) == 1 and ticks
    bar, bids = bars[0], [t["bid"] for t in ticks]
    assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["ticks"]) == (
        bids[0],
        max(bids),
        min(bids),
        bids[-1],
        len(bids),
    )


def test_bar_options(client: httpx.Client) -> None:
    """Sides, daily cut 22, weeks and CSV output all answer."""
    now_ms = int(time.time() * 1000)
    for side in ("bid", "ask", "mid"):
        assert get(client, "/v1/bars/GBPUSD", unit="hour", side=side)["side"] == side
    days = get(
        client, "/v1/bars/GBPUSD", unit="day", daily_cut="22", **{"from": now_ms - 5 * 86_400_000}
    )["bars"]
    assert days and all(b["time"].endswith("T22:00:00.000Z") for b in days)
    response = client.get("/v1/bars/GBPUSD", params={"unit": "hour", "format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["time", "ts", "open", "high", "low", "close", "ticks", "complete"]
    assert len(rows) > 2


def test_ticks_page_without_gap_or_duplicate(client: httpx.Client) -> None:
    """Tick pages chain through next_cursor with every offset exactly once."""
    now_ms = int(time.time() * 1000)
    window = {"from": now_ms - 3_600_000, "to": now_ms - 60_000}
    whole = get(client, "/v1/ticks/USDJPY", limit=10_000, **window)["ticks"]
    assert len(whole) > 50
    seen, cursor = [], None
    for _ in range(1000):
        body = get(
            client,
            "/v1/ticks/USDJPY",
            limit=97,
            **{**window, **({"cursor": cursor} if cursor else {})},
        )
        seen.extend(t["offset"] for t in body["ticks"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [t["offset"] for t in whole]
    seqs = [t["seq"] for t in whole]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    response = client.get("/v1/ticks/USDJPY", params={"format": "csv", "limit": 5})
    assert response.text.splitlines()[0] == "time,ts,bid,ask,epoch,offset,seq"


def test_convert_direct_inverse_and_cross(client: httpx.Client) -> None:
    """Conversion shows its method and legs: direct, inverse, or a cross through USD."""
    direct = get(client, "/v1/convert", **{"from": "EUR", "to": "USD", "amount": "100"})
    assert direct["method"] == "direct" and [p["symbol"] for p in direct["path"]] == ["EURUSD"]
    assert direct["total"] == pytest.approx(100 * direct["rate"])
    inverse = get(client, "/v1/convert", **{"from": "USD", "to": "EUR", "amount": "100"})
    assert inverse["method"] == "inverse" and inverse["path"][0]["inverted"]
    assert inverse["rate"] == pytest.approx(1 / direct["rate"], rel=1e-3)
    cross = get(client, "/v1/convert", **{"from": "SEK", "to": "NZD", "amount": "1000"})
    assert cross["method"] == "cross" and len(cross["path"]) == 2
    assert cross["bid"] <= cross["rate"] <= cross["ask"]


def test_catalogue_and_market(client: httpx.Client) -> None:
    """The catalogue lists 40+ symbols with metadata; market status covers every kind."""
    symbols = get(client, "/v1/symbols")["symbols"]
    assert len(symbols) >= 40
    eurusd = next(s for s in symbols if s["code"] == "EURUSD")
    assert eurusd == {
        "code": "EURUSD",
        "base": "EUR",
        "quote": "USD",
        "kind": "fx",
        "pip": 0.0001,
        "decimals": 5,
        "name": "Euro / US Dollar",
    }
    metals = get(client, "/v1/symbols", kind="metal")["symbols"]
    assert {"XAUUSD", "XAGUSD"} <= {s["code"] for s in metals}
    detail = get(client, "/v1/symbols/xauusd")
    assert detail["code"] == "XAUUSD" and "open" in detail["market"]
    market = get(client, "/v1/market")["markets"]
    assert set(market) >= {"fx", "metal", "crypto"} and market["crypto"]["open"] is True


@pytest.mark.parametrize(
    ("path", "params", "status", "code", "param"),
    [
        ("/v1/quotes", {"symbols": "EURUSD,NOPE"}, 400, "unknown_symbol", "symbols"),
        (
            "/v1/quotes",
            {"symbols": ",".join(["EURUSD"] * 101)},
            400,
            "invalid_parameter",
            "symbols",
        ),
        ("/v1/bars/NOPE", {}, 404, "unknown_symbol", "symbol"),
        ("/v1/bars/EURUSD", {"unit": "fortnight"}, 400, "invalid_parameter", "unit"),
        ("/v1/bars/EURUSD", {"multiplier": "0"}, 400, "invalid_parameter", "multiplier"),
        ("/v1/bars/EURUSD", {"multiplier": "x"}, 400, "invalid_parameter", "multiplier"),
        ("/v1/bars/EURUSD", {"side": "last"}, 400, "invalid_parameter", "side"),
        ("/v1/bars/EURUSD", {"daily_cut": "5"}, 400, "invalid_parameter", "daily_cut"),
        ("/v1/bars/EURUSD", {"from": "2026-02-30"}, 400, "invalid_parameter", "from"),
        (
            "/v1/bars/EURUSD",
            {"from": "2026-01-02", "to": "2026-01-01"},
            400,
            "invalid_parameter",
            "from",
        ),
        (
            "/v1/bars/EURUSD",
            {"unit": "second", "from": "2020-01-01"},
            400,
            "range_too_large",
            "from",
        ),
        ("/v1/bars/EURUSD", {"limit": "100000"}, 400, "invalid_parameter", "limit"),
        ("/v1/bars/EURUSD", {"cursor": "!!"}, 400, "invalid_parameter", "cursor"),
        ("/v1/ticks/EURUSD", {"from": "1990-01-01"}, 400, "range_too_large", "from"),
        ("/v1/ticks/EURUSD", {"to": "' OR 1=1 --"}, 400, "invalid_parameter", "to"),
        ("/v1/ticks/EURUSD", {"from": "9" * 2000}, 400, "invalid_parameter", "from"),
        ("/v1/convert", {"from": "EUR", "to": "USD"}, 400, "missing_parameter", "amount"),
        (
            "/v1/convert",
            {"from": " ", "to": "USD", "amount": "1"},
            400,
            "missing_parameter",
            "from",
        ),
        ("/v1/convert", {"to": "USD", "amount": "1"}, 400, "missing_parameter", "from"),
        ("/v1/convert", {"from": "EUR", "to": "", "amount": "1"}, 400, "missing_parameter", "to"),
        (
            "/v1/convert",
            {"from": "E" * 2000, "to": "USD", "amount": "1"},
            400,
            "invalid_parameter",
            "from",
        ),
        (
            "/v1/convert",
            {"from": "EUR", "to": "U" * 2000, "amount": "1"},
            400,
            "invalid_parameter",
            "to",
        ),
        (
            "/v1/convert",
            {"from": "EURUSD", "to": "JPY", "amount": "1"},
            400,
            "unknown_currency",
            "from",
        ),
        ("/v1/ticks/EURUSD", {"from": "²"}, 400, "invalid_parameter", "from"),  # a digit, not 0-9
        (
            "/v1/convert",
            {"from": "XYZ", "to": "USD", "amount": "1"},
            400,
            "unknown_currency",
            "from",
        ),
        (
            "/v1/convert",
            {"from": "EUR", "to": "EUR", "amount": "1"},
            400,
            "invalid_parameter",
            "to",
        ),
        ("/v1/symbols", {"kind": "bond"}, 400, "invalid_parameter", "kind"),
        ("/v1/nothing", {}, 404, "not_found", None),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: httpx.Client,
    path: str,
    params: dict[str, str],
    status: int,
    code: str,
    param: str | None,
) -> None:
    """Every bad parameter answers a 4xx JSON error with a code and the parameter's name."""
    assert_error(get(client, path, status, **params), code, param)


@pytest.mark.parametrize(
    "amount",
    [
        "-5",
        "nan",
        "inf",
        "1e16",  # over the cap of 1e15
        "1_000",  # float() takes digit-group underscores; the API does not
        "\uff11\uff10",  # fullwidth "10": float() takes non-ASCII digits too
        "\u0663",  # Arabic-Indic 3
        "ten",
    ],
)
def test_convert_refuses_a_bad_amount(client: httpx.Client, amount: str) -> None:
    body = get(client, "/v1/convert", 400, **{"from": "EUR", "to": "USD", "amount": amount})
    assert_error(body, "invalid_parameter", "amount")


def test_convert_amount_bounds(client: httpx.Client) -> None:
    """The cap itself converts (on a pair that trades every day), and -0 is a plain 0."""
    top = get(client, "/v1/convert", **{"from": "BTC", "to": "USD", "amount": "1e15"})
    assert top["amount"] == 1e15 and top["total"] == pytest.approx(1e15 * top["rate"])
    response = client.get("/v1/convert", params={"from": "EUR", "to": "USD", "amount": "-0"})
    assert response.status_code == 200, response.text
    assert '"amount":0.0,' in response.text and '"total":0.0,' in response.text


async def test_convert_without_a_live_rate_is_404_no_rate() -> None:
    """Known currencies with no quote yet (none has ticked): 404 no_rate, not unknown_currency."""
    node = SimpleNamespace(catalog=default_catalog(), live=SimpleNamespace(quote=lambda _: None))
    app = Starlette(routes=native.routes, exception_handlers={ApiError: handle_api_error})
    app.state.node = node
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://native") as http:
        response = await http.get("/v1/convert", params={"from": "SEK", "to": "NZD", "amount": "1"})
        assert response.status_code == 404
        assert_error(response.json(), "no_rate", "to")
        response = await http.get("/v1/convert", params={"from": "SEK", "to": "XYZ", "amount": "1"})
        assert response.status_code == 400
        assert_error(response.json(), "unknown_currency", "to")


def test_bars_without_a_range_are_never_refused_as_too_large(client: httpx.Client) -> None:
    """The default range (limit bars back) is capped like an explicit one, not refused."""
    for params in ({"unit": "day", "multiplier": "10"}, {"unit": "second", "multiplier": "3000"}):
        body = get(client, "/v1/bars/EURUSD", **params)
        assert body["bars"], params


def test_symbol_detail_respects_entitlements(server: ServerProcess) -> None:
    """/v1/symbols/{symbol} carries the live quote, so a key must be entitled to the symbol."""
    headers = {"X-API-Key": server.eur_only_key}
    allowed = httpx.get(f"{server.url}/v1/symbols/EURUSD", headers=headers, timeout=30)
    assert allowed.status_code == 200 and allowed.json()["code"] == "EURUSD"
    refused = httpx.get(f"{server.url}/v1/symbols/GBPUSD", headers=headers, timeout=30)
    assert refused.status_code == 403
    assert_error(refused.json(), "not_entitled", "symbol")


def test_wrong_method_is_405(client: httpx.Client) -> None:
    """A POST to a GET endpoint is a JSON 405."""
    response = client.post("/v1/quotes")
    assert response.status_code == 405
    assert_error(response.json(), "method_not_allowed", None)


def test_operations_endpoints(client: httpx.Client) -> None:
    """/health, /ready and /metrics report the node; /metrics counts requests by route."""
    health = get(client, "/health")
    assert health["status"] == "ok" and health["offset"] > 0
    assert get(client, "/ready")["ready"] is True
    get(client, "/v1/symbols")
    text = client.get("/metrics").text
    assert 'tickwire_http_requests_total{method="GET",route="/v1/symbols",status="200"}' in text
    assert "tickwire_journal_offset " in text and "tickwire_store_lag_ticks " in text


def test_openapi_covers_every_route(client: httpx.Client) -> None:
    """Every GET API route is in /openapi.json, and /docs serves Swagger UI.

    ``/`` is the dashboard page (HTML for people, not part of the API).
    """
    document = get(client, "/openapi.json")
    paths = set(document["paths"])
    for route in create_app(Settings()).routes:
        if isinstance(route, Route) and route.path not in ("/openapi.json", "/docs", "/"):
            assert route.path in paths, route.path
        assert isinstance(route, Route | Mount)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    assert client.get("/docs/static/swagger-ui-bundle.js").status_code == 200


def test_requests_need_a_valid_key(client: httpx.Client) -> None:
    """Without a valid key the API answers 401 and reveals nothing; with one, limit headers."""
    for headers in ({}, {"X-API-Key": "tw_not-a-key"}, {"Authorization": "Bearer nope"}):
        response = httpx.get(f"{client.base_url}/v1/quotes", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert "X-RateLimit-Limit" not in response.headers
    response = client.get("/v1/quotes", params={"symbols": "EURUSD"})
    assert response.status_code == 200
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert int(response.headers[name]) >= 0
    key = client.headers["X-API-Key"]
    by_query = httpx.get(f"{client.base_url}/v1/symbols", params={"api_key": key})
    by_bearer = httpx.get(
        f"{client.base_url}/v1/symbols", headers={"Authorization": f"Bearer {key}"}
    )
    assert by_query.status_code == by_bearer.status_code == 200
    assert httpx.get(f"{client.base_url}/health").status_code == 200  # public


def test_oversized_requests_are_refused(client: httpx.Client) -> None:
    """Long URLs are a JSON 414 (a 4xx from the HTTP parser beyond its own limit), large bodies a
    JSON 413; the server keeps serving."""
    host, port = client.base_url.host, client.base_url.port
    assert port is not None
    for size, expected in ((20_000, b" 414 "), (1_000_000, b" 400 ")):
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(
                b"GET /v1/quotes?x=" + b"a" * size + b" HTTP/1.1\r\nHost: x\r\n"
                b"Connection: close\r\n\r\n"
            )
            head = b""
            while chunk := sock.recv(65536):  # until the server closes: headers and body
                head += chunk
        assert expected in head.split(b"\r\n")[0], head[:200]
        if expected == b" 414 ":
            assert b"uri_too_long" in head
    response = client.request("GET", "/v1/symbols", content=b"x" * 100_000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert client.get("/v1/symbols").status_code == 200
