"""The SDK's stream: the sans-I/O core fed messages, then against a real server that is killed,
frozen and restarted mid-stream."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tickwire.client import (
    AsyncClient,
    AsyncTickStream,
    AuthenticationError,
    Backoff,
    Client,
    Position,
    PositionTooOldError,
    SeqGap,
    SeqGapError,
    StallError,
    StreamCore,
    StreamState,
    SubscriptionError,
    Tick,
    TransportError,
    process_exception,
)
from tickwire.protocol.messages import Welcome, decode_server_message

from .conftest import TIMEOUT_SCALE
from .serverproc import ServerProcess

ARGS = ("--backfill-days", "1", "--no-weekend-closed", "--load-rate", "500", "--sync", "none")
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "EURGBP"]
FAST = Backoff(initial=0.1, minimum=0.1, factor=2.0, maximum=0.5)

WELCOME = {
    "type": "welcome",
    "session": "s",
    "protocol": 1,
    "key": "k",
    "encoding": "json",
    "encodings": ["json"],
    "channels": ["ticks"],
    "intervals": ["1s"],
    "epoch": 7,
    "offset": 100,
    "heartbeat": 5.0,
    "limits": {
        "max_subscriptions": 200,
        "max_message_bytes": 65536,
        "messages_per_second": 20.0,
        "burst": 40,
        "max_quote_rate": 50.0,
        "send_buffer_bytes": 2097152,
        "idle_timeout": 60.0,
    },
    "budget": {"messages_left": 39, "subscriptions_left": 200},
}


def msg(**fields: object) -> object:
    """A server message decoded from its JSON form."""
    return decode_server_message(msgspec.json.encode(fields), binary=False)


def welcome() -> Welcome:
    """The welcome of a server at position 7:100."""
    return msgspec.convert(WELCOME, Welcome)


def wire(symbol: str, offset: int, seq: int, epoch: int = 7) -> dict[str, object]:
    """One wire tick."""
    return {"s": symbol, "b": 1.0, "a": 1.1, "t": offset * 1000, "e": epoch, "o": offset, "q": seq}


def assert_no_gap_no_duplicate(ticks: list[Tick]) -> None:
    """Offsets strictly grow; per symbol, seqs are consecutive."""
    offsets = [t.offset for t in ticks]
    assert offsets == sorted(set(offsets)), "duplicate or out-of-order offsets"
    by_symbol: dict[str, list[int]] = {}
    for tick in ticks:
        by_symbol.setdefault(tick.symbol, []).append(tick.seq)
    for symbol, seqs in by_symbol.items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), symbol


# -- the sans-I/O core ------------------------------------------------------------------------


def test_core_subscribes_from_the_welcome_position_then_the_delivered_one() -> None:
    """The first subscribe resumes from the welcome position; later ones from the last delivered."""
    core = StreamCore(["eurusd"])
    first = msgspec.json.decode(core.subscribe(welcome()))  # type: ignore[arg-type]
    assert first["from"] == "7:100" and first["symbols"] == ["EURUSD"]
    ticks = core.receive(msg(type="ticks", ticks=[wire("EURUSD", 102, 5), wire("EURUSD", 101, 4)]))
    assert [t.offset for t in ticks] == [101, 102]  # offset order
    for tick in ticks:
        core.delivered(tick)
    again = msgspec.json.decode(core.subscribe(welcome()))
    assert again["from"] == "7:102" and core.position == Position(7, 102)


def test_core_drops_replayed_duplicates_and_checks_seqs() -> None:
    """Ticks at or before the position are dropped; a seq jump raises or is reported."""
    core = StreamCore(["EURUSD"], position=Position(7, 100))
    core.subscribe(welcome())
    frame = [wire("EURUSD", 99, 1), wire("EURUSD", 100, 2), wire("EURUSD", 101, 3)]
    assert [t.offset for t in core.receive(msg(type="ticks", ticks=frame))] == [101]
    with pytest.raises(SeqGapError) as caught:
        core.receive(msg(type="ticks", ticks=[wire("EURUSD", 105, 9)]))
    assert (caught.value.expected, caught.value.got) == (4, 9)
    gaps: list[SeqGap] = []
    reporting = StreamCore(["EURUSD"], position=Position(7, 100), on_gap=gaps.append)
    reporting.subscribe(welcome())
    reporting.receive(msg(type="ticks", ticks=[wire("EURUSD", 101, 3)]))
    assert len(reporting.receive(msg(type="ticks", ticks=[wire("EURUSD", 105, 9)]))) == 1
    assert gaps == [SeqGap("EURUSD", 7, 4, 9)]


def test_core_states_heartbeats_and_resume_answers() -> None:
    """resume drives the state; a live heartbeat advances the position; too_old raises."""
    core = StreamCore(["EURUSD"])
    core.subscribe(welcome())
    common = {
        "type": "resume",
        "symbols": ["EURUSD"],
        "from": "7:100",
        "position": "7:150",
        "id": 1,
    }
    core.receive(msg(**common, status="replaying"))
    assert core.state is StreamState.REPLAYING
    core.receive(msg(type="heartbeat", epoch=7, offset=120, time=0))
    assert core.position == Position(7, 100)  # not while replaying
    core.receive(msg(**common, status="live"))
    core.receive(msg(type="heartbeat", epoch=7, offset=160, time=0))
    assert core.state is StreamState.LIVE and core.position == Position(7, 160)
    with pytest.raises(PositionTooOldError) as caught:
        core.receive(msg(**common, status="too_old", oldest="7:140"))
    assert (caught.value.reason, caught.value.position, caught.value.oldest) == (
        "too_old",
        "7:150",
        "7:140",
    )
    refused = [{"symbol": "EURUSD", "status": "refused", "reason": "not_entitled"}]
    with pytest.raises(SubscriptionError) as sub:
        core.receive(
            msg(type="ack", action="subscribe", channel="ticks", results=refused,
                subscriptions_left=0, id=1)
        )  # fmt: skip
    assert sub.value.refused == {"EURUSD": "not_entitled"}


def test_process_exception_separates_fatal_from_retryable() -> None:
    """Auth failures, refusals and too-old positions end the stream; drops and stalls retry."""
    auth = AuthenticationError("no", status=401, code="unauthorized")
    assert process_exception(auth) is auth
    old = PositionTooOldError("old", reason="too_old", position="1:2")
    assert process_exception(old) is old
    assert process_exception(TransportError("dropped")) is None
    assert process_exception(StallError("quiet")) is None
    bug = KeyError("bug")
    assert process_exception(bug) is bug


# -- against a real server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server ticking at 500 ticks/s."""
    data: Path = tmp_path_factory.mktemp("client-stream") / "data"
    with ServerProcess(data, *ARGS) as proc:
        yield proc


@pytest.mark.slow
async def test_async_stream_delivers_ordered_ticks(server: ServerProcess) -> None:
    """Ticks arrive typed, in offset order, contiguous per symbol, with state, position, lag."""
    async with AsyncClient(server.url, server.key, stream_url=server.ws_url) as client:
        async with client.stream(SYMBOLS) as stream:
            ticks: list[Tick] = []
            async for tick in stream:
                ticks.append(tick)
                if len(ticks) == 100:
                    break
            assert stream.state is StreamState.LIVE
            assert stream.position == ticks[-1].position
            assert stream.lag is not None and stream.lag < 5
        assert stream.state is StreamState.CLOSED
    assert {t.symbol for t in ticks} <= set(SYMBOLS)
    assert_no_gap_no_duplicate(ticks)


@pytest.mark.slow
async def test_a_later_stream_continues_from_a_position(server: ServerProcess) -> None:
    """from_=position of a closed stream continues every symbol's seq exactly."""
    async with AsyncClient(server.url, server.key, stream_url=server.ws_url) as client:
        first: list[Tick] = []
        async with client.stream(SYMBOLS) as stream:
            async for tick in stream:
                first.append(tick)
                if len(first) == 50:
                    break
            position = stream.position
        await asyncio.sleep(0.5)  # ticks go by meanwhile
        second: list[Tick] = []
        async with client.stream(SYMBOLS, from_=position) as stream:
            async for tick in stream:
                second.append(tick)
                if len(second) == 100:
                    break
    assert_no_gap_no_duplicate(first + second)


@pytest.mark.slow
async def test_quotes_channel(server: ServerProcess) -> None:
    """channel='quotes' streams conflated quotes as ticks."""
    async with AsyncClient(server.url, server.key, stream_url=server.ws_url) as client:
        async with client.stream(["EURUSD", "GBPUSD"], channel="quotes") as stream:
            quote = await anext(stream)
            assert quote.symbol in {"EURUSD", "GBPUSD"} and stream.state is StreamState.LIVE


@pytest.mark.slow
async def test_bad_key_is_fatal_at_once(server: ServerProcess) -> None:
    """An unknown key raises AuthenticationError without any reconnect."""
    async with AsyncClient(server.url, "tw_nope", stream_url=server.ws_url) as client:
        stream = client.stream(["EURUSD"])
        with pytest.raises(AuthenticationError):
            await asyncio.wait_for(anext(stream), 10 * TIMEOUT_SCALE)
        assert stream.reconnects == 0 and stream.state is StreamState.CLOSED


@pytest.mark.slow
def test_position_from_another_epoch_raises(server: ServerProcess) -> None:
    """resume epoch_changed raises PositionTooOldError with the live position."""
    with Client(server.url, server.key, stream_url=server.ws_url) as client:
        with client.stream(["EURUSD"], from_="1:5") as stream:
            with pytest.raises(PositionTooOldError) as caught:
                next(stream)
    assert caught.value.reason == "epoch_changed"
    assert Position.parse(caught.value.position).epoch == server.health()["epoch"]


@pytest.mark.slow
def test_stall_is_detected_and_healed(server: ServerProcess) -> None:
    """A frozen server (SIGSTOP) is a stall: the stream reconnects and loses nothing."""
    assert server.proc is not None
    with Client(server.url, server.key, stream_url=server.ws_url) as client:
        with client.stream(SYMBOLS, stall_timeout=0.5, backoff=FAST) as stream:
            ticks = [next(stream) for _ in range(30)]
            os.kill(server.proc.pid, signal.SIGSTOP)
            timer = threading.Timer(1.5, os.kill, (server.proc.pid, signal.SIGCONT))
            timer.start()
            try:
                ticks += [next(stream) for _ in range(150)]
            finally:
                timer.join()
            assert stream.reconnects >= 1
    assert_no_gap_no_duplicate(ticks)


@pytest.mark.slow
def test_sigkill_and_restart_mid_stream_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """The server is SIGKILLed and restarted on the same ports: the stream resumes seamlessly."""
    server = ServerProcess(tmp_path / "data", *ARGS).start()
    try:
        with Client(server.url, server.key, stream_url=server.ws_url) as client:
            with client.stream(SYMBOLS, backoff=FAST) as stream:
                ticks = [next(stream) for _ in range(100)]
                epoch = ticks[-1].epoch
                server.kill()
                restart = threading.Thread(target=server.start)
                restart.start()
                try:
                    deadline = time.monotonic() + 30 * TIMEOUT_SCALE
                    while len(ticks) < 400 and time.monotonic() < deadline:
                        ticks.append(next(stream))
                finally:
                    restart.join()
                assert stream.reconnects >= 1
    finally:
        server.__exit__()
    assert len(ticks) == 400
    assert {t.epoch for t in ticks} == {epoch}  # the journal kept its generation
    assert_no_gap_no_duplicate(ticks)


@pytest.mark.slow
def test_epoch_change_is_bridged_with_rest_ticks(tmp_path: Path) -> None:
    """With fill_gaps=True a lost journal (new epoch) does not end the stream nor leave a gap.

    The old epoch's ticks stay contiguous up to the last one the store kept, then the stream
    goes on in the new epoch.
    """
    server = ServerProcess(tmp_path / "data", *ARGS).start()
    try:
        with Client(server.url, server.key, stream_url=server.ws_url) as client:
            with client.stream(["EURUSD"], fill_gaps=True, backoff=FAST) as stream:
                ticks = [next(stream) for _ in range(20)]
                server.kill()
                shutil.rmtree(server.data_dir / "journal")
                restart = threading.Thread(target=server.start)
                restart.start()
                try:
                    while len({t.epoch for t in ticks}) < 2 or len(ticks) < 60:
                        ticks.append(next(stream))
                finally:
                    restart.join()
                assert stream.reconnects >= 1
    finally:
        server.__exit__()
    old, new = sorted({t.epoch for t in ticks})
    epochs = [t.epoch for t in ticks]
    assert epochs == sorted(epochs)
    assert_no_gap_no_duplicate([t for t in ticks if t.epoch == old])
    assert_no_gap_no_duplicate([t for t in ticks if t.epoch == new])


async def test_gap_fill_delivers_rest_ticks_then_continues_live() -> None:
    """A fill delivers the filler's ticks after the last delivered one, then the live position."""
    calls: list[tuple[str, Tick, Position, int]] = []
    filled = [Tick("EURUSD", 20, 1.0, 1.1, 7, 11, 3), Tick("EURUSD", 30, 1.0, 1.1, 8, 4, 1)]

    async def filler(symbol: str, last: Tick, until: Position, max_ticks: int) -> list[Tick]:
        calls.append((symbol, last, until, max_ticks))
        return filled

    stream = AsyncTickStream("ws://127.0.0.1:9", ["EURUSD"], fill_gaps=True, gap_filler=filler)
    last = Tick("EURUSD", 10, 1.0, 1.1, 7, 10, 2)
    stream._core.position = last.position
    stream._core.delivered(last)
    await stream._fill(
        PositionTooOldError("gone", reason="epoch_changed", position="8:4", symbols=("EURUSD",))
    )
    assert [await anext(stream), await anext(stream)] == filled
    assert calls == [("EURUSD", last, Position(8, 4), stream._max_fill_ticks)]
    assert stream.position == Position(8, 4) and stream.state is StreamState.LIVE
    assert stream.gaps_filled == 2
    await stream.aclose()


async def test_a_gap_over_the_cap_is_refused_without_loading_it() -> None:
    """The filler is told the cap; a gap it reports as larger (None) raises PositionTooOldError."""
    caps: list[int] = []

    async def filler(symbol: str, last: Tick, until: Position, max_ticks: int) -> None:
        caps.append(max_ticks)
        return None

    stream = AsyncTickStream(
        "ws://127.0.0.1:9", ["EURUSD"], fill_gaps=True, gap_filler=filler, max_fill_ticks=50
    )
    last = Tick("EURUSD", 10, 1.0, 1.1, 7, 10, 2)
    stream._core.position = last.position
    stream._core.delivered(last)
    with pytest.raises(PositionTooOldError, match="over 50 ticks"):
        await stream._fill(
            PositionTooOldError("gone", reason="too_old", position="7:900", symbols=("EURUSD",))
        )
    assert caps == [50]
    await stream.aclose()


async def test_gap_fill_polls_the_store_cheaply_then_fetches_the_gap_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the store is behind ``until`` the fill asks with one-tick requests; the gap (a
    request of the cap's size) is fetched once, after the store has reached ``until``."""
    monkeypatch.setattr("tickwire.client._async.FILL_POLL", 0.01)
    limits: list[int] = []
    gap = [
        {
            "time": "2026-11-27T10:00:00Z",
            "ts": 10 + i,
            "bid": 1.0,
            "ask": 1.1,
            "epoch": 7,
            "offset": 10 + i,
            "seq": 2 + i,
        }
        for i in range(1, 6)
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        limits.append(limit)
        caught_up = len(limits) >= 4  # the store reaches 7:15 at the fourth request
        ticks = gap[:limit]
        return httpx.Response(
            200,
            json={
                "symbol": "EURUSD",
                "from": "2026-11-27T10:00:00Z",
                "to": "2026-11-27T11:00:00Z",
                "ticks": ticks if caught_up else ticks[:1],
                "next_cursor": None,
                "as_of": {"epoch": 7, "offset": 15 if caught_up else 11},
            },
        )

    http = httpx.AsyncClient(base_url="http://test", transport=httpx.MockTransport(answer))
    async with AsyncClient("http://test", "k", http=http) as client:
        last = Tick("EURUSD", 10, 1.0, 1.1, 7, 10, 1)
        got = await client._fill_gap("EURUSD", last, Position(7, 15), 100)
    assert got is not None and [t.offset for t in got] == [11, 12, 13, 14, 15]
    assert limits[:-1] == [1, 1, 1, 1]  # polls: one tick each, until the store caught up
    assert limits[-1] > 100  # then the gap, once
