"""The dashboard at ``/``: served offline from the package, and working in real headless Chromium.

The browser tests drive the system ``chromium`` (``make test`` installs it) with Playwright,
against a real server process, logged in with the demo key as the link ``make run`` prints.
A screenshot lands in ``test-artifacts/`` (or ``$TICKWIRE_ARTIFACTS``); set
``TICKWIRE_SCREENSHOT=docs/images/dashboard.png`` to refresh the README's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tickwire.dashboard import STATIC_DIR

from .conftest import TIMEOUT_SCALE
from .serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("TICKWIRE_ARTIFACTS", ROOT / "test-artifacts"))


def test_vendored_chart_library_is_the_pinned_version() -> None:
    """The file the page loads is the version ``web/package.json`` pins (``make vendor-js``)."""
    pinned = json.loads((ROOT / "web" / "package.json").read_text())["dependencies"]
    bundle = STATIC_DIR / "vendor" / "lightweight-charts.standalone.production.js"
    banner = bundle.read_text(encoding="utf-8")[:300]
    assert f"Lightweight Charts™ v{pinned['lightweight-charts']}" in banner
    lock = json.loads((ROOT / "web" / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/lightweight-charts"]["version"]
    assert locked == pinned["lightweight-charts"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server with an open market (whatever the weekday) and a few hours of history."""
    data = tmp_path_factory.mktemp("dashboard") / "data"
    args = ("--no-weekend-closed", "--rate", "200", "--sim-step-ms", "50", "--sync", "none")
    with ServerProcess(data, *args, "--backfill-days", "0.1") as proc:
        yield proc


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Script errors and console errors the page logged; a test may remove the expected ones."""
    return []


@pytest.fixture
def page(browser: Browser, page_errors: list[str]) -> Iterator[Page]:
    """A fresh page that must log no script error and no console error."""
    context = browser.new_context(viewport={"width": 1360, "height": 720})
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(f"page error: {error}"))
    page.on("console", lambda message: _keep_console_error(page_errors, message))
    yield page
    context.close()
    assert page_errors == [], page_errors


def _keep_console_error(errors: list[str], message: ConsoleMessage) -> None:
    # While the server is down Chromium logs each refused reconnect; that is the test's point.
    if message.type == "error" and "WebSocket connection to" not in message.text:
        errors.append(f"console: {message.text}")


def summary(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("window.tickwireDashboard.summary()")
    return result


def wait_for(page: Page, what: str, check: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
    """Poll the page's state until ``check`` holds; fail with the last state if it never does."""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    state = summary(page)
    while not check(state):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; dashboard state: {state}")
        page.wait_for_timeout(200)
        state = summary(page)
    return state


def test_page_is_served_with_the_stream_port(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f'content="{server.stream_port}"' in response.text
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "connect-src 'self' ws://127.0.0.1:* wss://127.0.0.1:*;" in policy
    for path in ("app.js", "style.css", "vendor/lightweight-charts.standalone.production.js"):
        asset = httpx.get(f"{server.url}/static/dashboard/{path}", timeout=10)
        assert asset.status_code == 200, path
    assert httpx.get(f"{server.url}/static/dashboard/nope.js", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("[::1]", "[::1]"),
        ("[0:0::1]", "[::1]"),  # as the browser's URL parser writes it
        ("localhost", "localhost"),
        ("bad_host", None),  # not a name a CSP source may hold: no stream entry at all
    ],
)
def test_the_policy_lets_the_page_reach_its_own_host(
    server: ServerProcess, host: str, source: str | None
) -> None:
    """Reached by an IPv6 address (``request.url.hostname`` drops its brackets) or a name."""
    response = httpx.get(f"{server.url}/", headers={"Host": f"{host}:{server.port}"}, timeout=10)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    if source is None:
        assert "connect-src 'self' ;" in policy
    else:
        assert f"connect-src 'self' ws://{source}:* wss://{source}:*;" in policy


def test_dashboard_streams_charts_and_survives_a_server_restart(
    server: ServerProcess, page: Page
) -> None:
    """Candles load, quotes tick, and a SIGKILLed server is resumed from without a gap."""
    page.goto(f"{server.url}/?api_key={server.demo_key}&symbol=EURUSD&interval=1m")
    state = wait_for(page, "candles and live ticks", lambda s: s["candles"] > 0, 20)
    state = wait_for(page, "the stream", lambda s: s["connection"] == "live" and s["ticks"], 20)
    assert page.locator("#chart canvas").count() > 0

    # quotes update within a few seconds: the board's cells change, not just the counters
    board = page.locator("#board tbody")
    before = board.inner_text()
    ticks = state["ticks"]
    wait_for(page, "more ticks", lambda s: s["ticks"] > ticks + 20, 10)
    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
    while board.inner_text() == before and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert board.inner_text() != before
    assert re.search(r"EURUSD\s+\d+\.\d{5}\s+\d+\.\d{5}", board.inner_text())

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait_for(page, "live bars", lambda s: s["liveBars"] > 0 and s["rttMs"] is not None, 10)
    page.wait_for_timeout(1200)  # the figures in the header refresh every second
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    if readme_shot := os.environ.get("TICKWIRE_SCREENSHOT"):
        page.screenshot(path=readme_shot)

    # the server dies without warning and comes back on the same ports
    server.kill()
    wait_for(page, "the disconnect to be seen", lambda s: s["connection"] != "live", 15)
    server.start()
    resumed = wait_for(
        page,
        "a resumed live stream",
        lambda s: s["connection"] == "live" and (s["lastResume"] or {}).get("status") == "live",
        40,
    )
    assert resumed["reconnects"] >= 1
    ticks = resumed["ticks"]
    after = wait_for(page, "ticks after the restart", lambda s: s["ticks"] > ticks + 20, 15)
    # every tick of the board's symbols arrived once: the seqs are gap-free and never repeat
    assert after["gaps"] == 0 and after["duplicates"] == 0, after
    assert after["candles"] > 0
    page.screenshot(path=str(ARTIFACTS / "dashboard-after-restart.png"))


def test_a_page_without_a_key_asks_for_one(
    server: ServerProcess, page: Page, page_errors: list[str]
) -> None:
    page.goto(f"{server.url}/")
    assert not page.locator("#main").is_visible()
    form = page.locator("#key-form")
    form.wait_for(state="visible")
    page.fill("#key-input", "tw_not-a-real-key")
    page.click("#key-form button")
    page.locator("#key-error").filter(has_text="refused").wait_for()
    refused = [e for e in page_errors if "status of 401" in e]
    assert refused, page_errors  # the browser logs the refused request; that one is expected
    page_errors[:] = [e for e in page_errors if e not in refused]
    page.fill("#key-input", server.demo_key)
    page.click("#key-form button")
    wait_for(page, "the board", lambda s: s["connection"] == "live", 20)
    assert page.locator("#main").is_visible()


def test_a_link_cannot_send_the_key_to_another_host(server: ServerProcess, page: Page) -> None:
    """``?stream=`` may only point at this page's host: the key travels to the stream URL."""
    page.goto(f"{server.url}/?api_key={server.demo_key}&stream=ws://192.0.2.1:9/v1/stream")
    wait_for(page, "the stream", lambda s: s["connection"] == "live", 20)
    stream_url = page.evaluate("window.tickwireDashboard.state.streamUrl")
    assert stream_url == f"ws://127.0.0.1:{server.stream_port}/v1/stream"


def test_switching_charts_quickly_keeps_one_bars_subscription(
    server: ServerProcess, page: Page
) -> None:
    """Clicks faster than the history loads: the old bars subscription goes before the new one.

    With the unlimited key: the demo key's request rate would answer some of the loads 429.
    """
    page.goto(f"{server.url}/?api_key={server.key}&symbol=EURUSD&interval=1m")
    wait_for(page, "the stream", lambda s: s["connection"] == "live" and s["barsSub"], 20)
    # all in one task, so every load is still on its way when the next click comes
    page.evaluate(
        """() => {
          const row = (s) => document.querySelector(`#board tr[data-symbol="${s}"]`);
          for (const s of ["GBPUSD", "USDJPY", "AUDUSD", "EURUSD", "XAUUSD"]) row(s).click();
          document.querySelector('#intervals button[data-interval="1s"]').click();
          row("BTCUSD").click();
          document.querySelector('#intervals button[data-interval="5m"]').click();
        }"""
    )
    wait_for(page, "the last chart", lambda s: s["candles"] > 0, 20)
    page.evaluate(
        """() => window.tickwireDashboard.state.ws.send(
          JSON.stringify({action: "subscriptions", id: "test"}))"""
    )
    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
    answer = None
    while answer is None and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        answer = page.evaluate("window.tickwireDashboard.state.lastSubscriptions")
    assert answer is not None
    bars = [g for g in answer["subscriptions"] if g["channel"] == "bars"]
    assert bars == [{"channel": "bars", "symbols": ["BTCUSD"], "interval": "1m", "side": "mid"}]
    state = summary(page)
    assert state["refused"] == 0, state  # no unsubscribe of nothing, no double subscribe
    assert state["barsSub"] == "BTCUSD/1m"


def _drop_candles_to_one_at(page: Page, age_s: int) -> int:
    """Leave the chart one candle ``age_s`` ago and drop the connection; its time."""
    at: int = page.evaluate(
        """(age) => {
          const state = window.tickwireDashboard.state;
          const time = Math.floor(Date.now() / 1000) - age;
          const c = state.candles[0];
          state.candles = [{ time, open: c.open, high: c.high, low: c.low, close: c.close }];
          state.series.setData(state.candles);
          state.ws.close();
          return time;
        }""",
        age_s,
    )
    return at


def _candle_times(page: Page) -> list[int]:
    times: list[int] = page.evaluate("window.tickwireDashboard.state.candles.map((c) => c.time)")
    return times


def _settled(state: dict[str, Any]) -> bool:
    """Connected, with candles, and no chart load on its way (a reconnect's refill has landed:
    ``connection`` turns live in the same task that starts it)."""
    return state["connection"] == "live" and state["candles"] > 0 and not state["chartLoading"]


def test_a_reconnect_refills_every_missed_candle(server: ServerProcess, page: Page) -> None:
    """The refill pages through a gap longer than one page; a gap too long reloads the chart."""
    page.goto(f"{server.url}/?api_key={server.key}&symbol=EURUSD&interval=1s")
    # the first connection's refill too: landing after the drop, it would merge a fresh page
    wait_for(page, "the stream and the chart", _settled, 20)
    limit = 900  # the 1s chart's page
    # since nearly the start of the history (0.1 days): more 1s candles than one page holds
    age = 8400
    reconnects = summary(page)["reconnects"]
    gap_start = _drop_candles_to_one_at(page, age)
    refilled = wait_for(
        page, "the refill", lambda s: s["reconnects"] > reconnects and _settled(s), 20
    )
    assert refilled["candles"] > limit + 100, refilled  # more than one page
    times = _candle_times(page)
    assert times == sorted(set(times))
    assert times[0] == gap_start
    now = page.evaluate("Date.now() / 1000")
    assert now - times[-1] < 30, (now, times[-1])  # up to the live candles

    # the same gap, but allowed one page only: the latest page replaces the chart
    page.evaluate("window.tickwireDashboard.state.refillPages = 1")
    reconnects = refilled["reconnects"]
    gap_start = _drop_candles_to_one_at(page, age)
    reloaded = wait_for(
        page, "the reload", lambda s: s["reconnects"] > reconnects and _settled(s), 20
    )
    assert 1 < reloaded["candles"] <= limit + 30, reloaded
    times = _candle_times(page)
    assert times == sorted(set(times))
    assert gap_start not in times
    now = page.evaluate("Date.now() / 1000")
    assert now - times[-1] < 30, (now, times[-1])
