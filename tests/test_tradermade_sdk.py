"""The official TraderMade Python SDK (PyPI ``tradermade`` 1.0) against a real tickwire server.

Only the host changes. The SDK builds REST URLs from its module variable ``tm.api_url``, which
is pointed at the server. One call, ``currency_list()``, hard-codes
``https://marketdata.tradermade.com/api/v1/live_currencies_list`` and reads it with
``pandas.read_json``; for it, ``pandas.read_json`` is wrapped to swap that scheme and host for
the server's, leaving path and query alone. The SDK's stream client is not covered here.

The server is ``tickwire serve`` in a child process, with five days of backfilled history and
an API key created by ``tickwire keys create``. DataFrames are compared with the JSON the same
server answers to plain HTTP requests.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from .serverproc import ServerProcess

tm: Any = pytest.importorskip("tradermade", reason="the SDK test needs tradermade (dev extra)")

pytestmark = [
    pytest.mark.slow,
    # the SDK's own historical() uses an API that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:Passing a list to DataFrame.from_dict is deprecated"),
]

TRADERMADE = "https://marketdata.tradermade.com"
ARGS = ("--backfill-days", "5", "--backfill-rate", "8", "--log-level", "warning")
OHLC = ["open", "high", "low", "close"]
CLI = (sys.executable, "-m", "tickwire")


class Server:
    """A running server, its API key and a plain HTTP client for reference answers."""

    def __init__(self, process: ServerProcess, key: str) -> None:
        self.process = process
        self.key = key
        self.url = process.url

    def json(self, endpoint: str, **params: str) -> Any:
        """The JSON body of ``GET /api/v1/<endpoint>`` (status 200 asserted)."""
        response = httpx.get(
            f"{self.url}/api/v1/{endpoint}", params={**params, "api_key": self.key}, timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``tickwire serve`` with history, and an unlimited key created with the CLI."""
    data = Path(tmp_path_factory.mktemp("sdk")) / "data"
    created = subprocess.run(
        [*CLI, "keys", "create", "--name", "sdk", "--plan", "unlimited", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    with ServerProcess(data, *ARGS) as process:
        probe = httpx.get(f"{process.url}/api/v1/cfd_list", params={"api_key": key}, timeout=10)
        assert probe.status_code == 200, "tickwire serve does not mount the /api/v1/ routes"
        yield Server(process, key)


@pytest.fixture
def sdk(server: Server, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The SDK module, pointed at the server: only the host changes."""
    monkeypatch.setattr(tm, "api_url", f"{server.url}/api/v1/")
    monkeypatch.setattr(tm, "_api_key", server.key)
    read_json = pd.read_json

    def redirected(path: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(path, str) and path.startswith(TRADERMADE):
            path = server.url + path[len(TRADERMADE) :]
        return read_json(path, *args, **kwargs)

    monkeypatch.setattr(tm.pd, "read_json", redirected)
    return tm


@pytest.fixture(scope="module")
def day(server: Server) -> str:
    """A past trading day with a complete daily bar (the oldest full one in the backfill).

    Five days of backfill hold at least a partial first day, one full day and today's bar,
    whatever the time of the week."""
    today = dt.datetime.now(dt.UTC).date()
    body = server.json(
        "timeseries",
        currency="EURUSD",
        start_date=(today - dt.timedelta(days=7)).isoformat(),
        end_date=today.isoformat(),
    )
    dates = [q["date"] for q in body["quotes"]]
    assert len(dates) >= 3, dates  # first (partial backfill), one full day, today
    return str(dates[1])


def test_live(sdk: Any, server: Server) -> None:
    """live(): instrument, timestamp, bid, mid, ask per pair, inverse included; rate headers."""
    df = sdk.live("EURUSD,GBPUSD,USDJPY,USDEUR")
    assert list(df.columns) == ["instrument", "timestamp", "bid", "mid", "ask"]
    assert list(df["instrument"]) == ["EURUSD", "GBPUSD", "USDJPY", "USDEUR"]
    assert pd.api.types.is_datetime64_any_dtype(df["timestamp"])
    age = pd.Timestamp.now(tz="UTC").tz_localize(None) - df["timestamp"].iloc[0]
    assert abs(age.total_seconds()) < 60
    assert ((df["bid"] <= df["mid"]) & (df["mid"] <= df["ask"])).all()
    reference = server.json("live", currency="EURUSD,USDEUR")["quotes"]
    assert df["mid"].iloc[0] == pytest.approx(reference[0]["mid"], rel=1e-2)
    assert df["mid"].iloc[3] == pytest.approx(reference[1]["mid"], rel=1e-2)
    stats = sdk.get_stats()
    assert stats is not None and set(stats) == {"allowance", "remaining", "resets"}


def test_historical_daily(sdk: Any, server: Server, day: str) -> None:
    """historical(): one daily OHLC row per pair, equal to /historical's answer."""
    df = sdk.historical("EURUSD,GBPUSD,USDEUR", day)
    assert list(df.columns) == ["instrument", "date", *OHLC]
    assert list(df["instrument"]) == ["EURUSD", "GBPUSD", "USDEUR"]
    assert (df["date"] == pd.Timestamp(day)).all()
    quotes = server.json("historical", currency="EURUSD,GBPUSD,USDEUR", date=day)["quotes"]
    assert df[OHLC].to_dict("records") == [{k: q[k] for k in OHLC} for q in quotes]


def test_historical_cfd_error_is_returned(sdk: Any, day: str) -> None:
    """A CFD we do not carry: the SDK returns the per-quote error it finds first."""
    error = sdk.historical("UK100", day)
    assert error["error"] == 204 and error["instrument"] == "UK100USD"


def test_historical_hourly_and_minute(sdk: Any, server: Server, day: str) -> None:
    """historical(interval=hourly|minute) → hour_/minute_historical, one row per pair."""
    hourly = sdk.historical("EURUSD,USDJPY", f"{day}-12:00", interval="hourly")
    assert list(hourly.columns) == ["instrument", "date_time", *OHLC]
    assert list(hourly["instrument"]) == ["EURUSD", "USDJPY"]
    assert list(hourly["date_time"]) == [f"{day}-12:00"] * 2
    reference = server.json("hour_historical", currency="USDJPY", date_time=f"{day}-12:00")
    assert hourly[OHLC].iloc[1].to_dict() == {k: reference[k] for k in OHLC}

    bars = server.json(
        "timeseries",
        currency="EURUSD",
        interval="minute",
        start_date=f"{day}-12:00",
        end_date=f"{day}-12:30",
    )["quotes"]
    stamp = bars[0]["date"][:16].replace(" ", "-")
    minute = sdk.historical("EURUSD", stamp, interval="minute")
    assert list(minute.columns) == ["instrument", "date_time", *OHLC]
    assert minute.iloc[0]["date_time"] == stamp
    assert minute[OHLC].iloc[0].to_dict() == {k: bars[0][k] for k in OHLC}


def test_timeseries_daily_hourly_minute(sdk: Any, server: Server, day: str) -> None:
    """timeseries() sends period=15 always: daily and hourly still answer 1-day/1-hour bars,
    minute answers 15-minute bars; columns date, open, high, low, close."""
    start = (dt.date.fromisoformat(day) - dt.timedelta(days=3)).isoformat()
    daily = sdk.timeseries("EURUSD", start, day)
    assert list(daily.columns) == ["date", *OHLC]
    reference = server.json("timeseries", currency="EURUSD", start_date=start, end_date=day)
    assert daily.to_dict("records") == reference["quotes"]
    assert daily["date"].iloc[-1] == day

    hourly = sdk.timeseries("EURUSD", f"{day}-00:00", f"{day}-21:00", interval="hourly")
    steps = pd.to_datetime(hourly["date"]).diff().dropna()
    assert len(hourly) >= 20 and (steps == pd.Timedelta(hours=1)).all()

    minute = sdk.timeseries("EURUSD", f"{day}-10:00", f"{day}-12:00", interval="minute")
    times = pd.to_datetime(minute["date"])
    assert len(minute) >= 6 and (times.dt.minute % 15 == 0).all()
    assert minute["date"].iloc[0] == f"{day} 10:00:00"


def test_timeseries_several_pairs_close(sdk: Any, day: str) -> None:
    """timeseries() of several pairs with fields=['close']: one close column per pair."""
    start = (dt.date.fromisoformat(day) - dt.timedelta(days=3)).isoformat()
    df = sdk.timeseries("EURUSD,GBPUSD", start, day, fields=["close"])
    assert list(df.columns) == ["date", "EURUSD", "GBPUSD"]
    assert df["date"].iloc[-1] == pd.Timestamp(day)
    assert df[["EURUSD", "GBPUSD"]].notna().all().all()


def test_currency_list(sdk: Any) -> None:
    """currency_list(): the hard-coded URL, with only the host swapped, gives code → name."""
    df = sdk.currency_list()
    assert list(df.columns) == ["index", "available_currencies"]
    names = dict(zip(df["index"], df["available_currencies"], strict=True))
    assert names["EUR"] == "Euro" and names["USD"] == "US Dollar"
