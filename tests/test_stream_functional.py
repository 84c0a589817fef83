"""The native WebSocket stream against a real server: ticks, resume, slow readers, bad input."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import TIMEOUT_SCALE
from .serverproc import ServerProcess

pytestmark = pytest.mark.slow

ARGS = ("--backfill-days", "0", "--no-weekend-closed", "--load-rate", "2000", "--sync", "none")
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server ticking at 2,000 ticks/s."""
    data: Path = tmp_path_factory.mktemp("stream") / "data"
    with ServerProcess(data, *ARGS) as proc:
        yield proc


def url(server: ServerProcess, key: str | None = None, **query: str) -> str:
    """The native stream URL, with the test key unless another is given."""
    params = {"api_key": server.key if key is None else key, **query}
    return f"{server.ws_url}/v1/stream?" + "&".join(f"{k}={v}" for k, v in params.items() if v)


async def recv_json(ws: Any) -> dict[str, Any]:
    """The next message, decoded (within 10 s, scaled)."""
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIMEOUT_SCALE))
    return message


async def collect(ws: Any, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read until ``count`` ticks arrived; return (ticks, other messages)."""
    ticks: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    while len(ticks) < count:
        message = await recv_json(ws)
        if message["type"] == "ticks":
            ticks.extend(message["ticks"])
        else:
            other.append(message)
    return ticks, other


def assert_contiguous(ticks: list[dict[str, Any]]) -> None:
    """Per symbol, seqs have no gap and no duplicate; offsets only grow across symbols' ticks."""
    by_symbol: dict[str, list[int]] = {}
    for tick in ticks:
        by_symbol.setdefault(tick["s"], []).append(tick["q"])
    for symbol, seqs in by_symbol.items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), symbol


async def subscribe(ws: Any, symbols: list[str], **extra: Any) -> list[dict[str, Any]]:
    """Subscribe to ticks; return the ack and whatever came before the first ticks."""
    await ws.send(
        json.dumps(
            {"action": "subscribe", "id": 1, "channel": "ticks", "symbols": symbols, **extra}
        )
    )
    messages = []
    while True:
        message = await recv_json(ws)
        messages.append(message)
        if message["type"] == "ack":
            return messages


async def test_welcome_ack_snapshot_then_ordered_ticks(server: ServerProcess) -> None:
    """welcome, then ack per symbol, then the snapshot, then ticks in order with positions."""
    async with websockets.connect(url(server)) as ws:
        welcome = await recv_json(ws)
        assert welcome["type"] == "welcome" and welcome["epoch"] > 0
        await ws.send(
            json.dumps(
                {"action": "subscribe", "id": 7, "channel": "ticks", "symbols": [*SYMBOLS, "NOPE"]}
            )
        )
        ack = await recv_json(ws)
        assert ack["type"] == "ack" and ack["id"] == 7
        statuses = {r["symbol"]: r["status"] for r in ack["results"]}
        assert statuses == {**dict.fromkeys(SYMBOLS, "accepted"), "NOPE": "refused"}
        snapshot = await recv_json(ws)
        assert snapshot["type"] == "snapshot" and snapshot["id"] == 7
        snap_offsets = {q["s"]: q["o"] for q in snapshot["quotes"]}
        ticks, _ = await collect(ws, 200)
        assert {t["s"] for t in ticks} <= set(SYMBOLS)
        assert all(t["e"] == welcome["epoch"] for t in ticks)
        assert_contiguous(ticks)
        first = {}
        for t in ticks:
            first.setdefault(t["s"], t)
        for symbol, tick in first.items():
            assert tick["o"] > snap_offsets.get(symbol, 0)  # updates follow the snapshot


async def test_resume_has_no_gap_and_no_duplicate(server: ServerProcess) -> None:
    """Reconnecting with from=position continues every symbol's seq exactly."""
    async with websockets.connect(url(server)) as ws:
        await recv_json(ws)
        await subscribe(ws, SYMBOLS, snapshot=False)
        first, _ = await collect(ws, 300)
    position = f"{first[0]['e']}:{max(t['o'] for t in first)}"
    await asyncio.sleep(0.5)  # ticks go by while the client is away
    async with websockets.connect(url(server)) as ws:
        await recv_json(ws)
        before = await subscribe(ws, SYMBOLS, **{"from": position})
        assert before[-1]["type"] == "ack"
        second, other = await collect(ws, 1500)
    statuses = [m["status"] for m in other if m["type"] == "resume"]
    assert statuses[:1] == ["replaying"] and "live" in statuses
    assert_contiguous(first + second)
    assert second[0]["o"] > max(t["o"] for t in first)


async def test_bad_positions_get_explicit_answers(server: ServerProcess) -> None:
    """A position from another epoch or ahead of the stream is answered, not served."""
    async with websockets.connect(url(server)) as ws:
        welcome = await recv_json(ws)
        epoch = welcome["epoch"]
        for position, status in (
            (f"{epoch - 1}:5", "epoch_changed"),
            (f"{epoch}:999999999999", "ahead"),
        ):
            await ws.send(
                json.dumps(
                    {
                        "action": "subscribe",
                        "id": position,
                        "channel": "ticks",
                        "symbols": ["EURUSD"],
                        "from": position,
                    }
                )
            )
            seen = []
            while not any(m.get("type") == "resume" for m in seen):
                message = await recv_json(ws)
                if message["type"] != "ticks":
                    seen.append(message)
            resume = next(m for m in seen if m["type"] == "resume")
            assert resume["status"] == status
            await ws.send(
                json.dumps(
                    {"action": "unsubscribe", "id": 9, "channel": "ticks", "symbols": ["EURUSD"]}
                )
            )


async def test_bad_input_is_answered_and_harms_nobody(server: ServerProcess) -> None:
    """Garbage, unknown actions and oversized frames get errors or close codes; others go on."""
    async with websockets.connect(url(server)) as healthy:
        await recv_json(healthy)
        await subscribe(healthy, ["EURUSD"])
        async with websockets.connect(url(server)) as ws:
            await recv_json(ws)
            await ws.send("{not json")
            assert (await recv_json(ws))["type"] == "error"
            await ws.send(b"\x00\xffgarbage")
            assert (await recv_json(ws))["type"] == "error"
            await ws.send(json.dumps({"action": "teleport", "id": 3}))
            error = await recv_json(ws)
            assert error["type"] == "error" and error["id"] == 3
        async with websockets.connect(url(server), max_size=None) as ws:
            await recv_json(ws)
            await ws.send("x" * 200_000)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await recv_json(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        ticks, _ = await collect(healthy, 20)
        assert ticks


async def test_keys_are_checked_at_upgrade_and_by_login(server: ServerProcess) -> None:
    """A bad key is refused with 401 at upgrade; a login message authenticates instead."""
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url(server, key="tw_wrong")):
            pass
    assert refused.value.response.status_code == 401
    async with websockets.connect(f"{server.ws_url}/v1/stream") as ws:
        await ws.send(json.dumps({"action": "login", "key": server.key, "id": "l"}))
        welcome = await recv_json(ws)
        assert welcome["type"] == "welcome" and welcome["id"] == "l"
    async with websockets.connect(f"{server.ws_url}/v1/stream") as ws:
        await ws.send(json.dumps({"action": "login", "key": "tw_nope"}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await recv_json(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


async def test_connection_limit_answers_429_with_retry_after(server: ServerProcess) -> None:
    """Over the key's connection limit, the upgrade is refused with 429 and Retry-After."""
    key = server.create_key(f"one-{time.monotonic_ns()}", "--plan", "basic")  # 1 connection
    await asyncio.sleep(2.5)  # the server picks up new keys within 2 s
    async with websockets.connect(url(server, key=key)) as ws:
        await recv_json(ws)
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url(server, key=key)):
                pass
        assert refused.value.response.status_code == 429
        assert int(refused.value.response.headers["Retry-After"]) >= 1


async def test_quotes_are_conflated_to_max_rate(server: ServerProcess) -> None:
    """The quotes channel sends each symbol at most max_rate times a second."""
    async with websockets.connect(url(server)) as ws:
        await recv_json(ws)
        await ws.send(
            json.dumps(
                {
                    "action": "subscribe",
                    "id": 1,
                    "channel": "quotes",
                    "symbols": ["EURUSD"],
                    "max_rate": 4,
                    "snapshot": False,
                }
            )
        )
        started, updates = time.monotonic(), 0
        while time.monotonic() - started < 2.0:
            message = await recv_json(ws)
            if message["type"] == "quotes":
                updates += sum(1 for q in message["quotes"] if q["s"] == "EURUSD")
        assert 2 <= updates <= 4 * 2 + 2


async def test_msgpack_encoding(server: ServerProcess) -> None:
    """encoding=msgpack sends binary MessagePack messages with the same content."""
    import msgspec

    async with websockets.connect(url(server, encoding="msgpack")) as ws:
        welcome = msgspec.msgpack.decode(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["encoding"] == "msgpack"
        await ws.send(
            msgspec.msgpack.encode(
                {"action": "subscribe", "id": 1, "channel": "ticks", "symbols": ["EURUSD"]}
            )
        )
        while True:
            message = msgspec.msgpack.decode(await ws.recv())
            if message["type"] == "ticks":
                assert message["ticks"][0]["s"] == "EURUSD"
                break


def raw_upgrade(server: ServerProcess) -> tuple[socket.socket, str]:
    """A WebSocket connection opened by hand, whose reader we control, and its session id."""
    sock = socket.create_connection(("127.0.0.1", server.stream_port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /v1/stream?api_key={server.key} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"welcome" not in answer:
        answer += sock.recv(4096)
    assert b" 101 " in answer.split(b"\r\n")[0]
    session = answer.split(b'"session":"', 1)[1].split(b'"', 1)[0].decode()
    return sock, session


def masked_text(text: str) -> bytes:
    """A client text frame (masked, as clients must send)."""
    payload, mask = text.encode(), os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        return bytes([0x81, 0x80 | len(payload)]) + mask + body
    assert len(payload) < 1 << 16
    return bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask + body


def read_slowly(sock: socket.socket, rate: int, seconds: float, hurry: threading.Event) -> bytes:
    """Read at most ``rate`` bytes a second until ``hurry`` is set, then as fast as possible,
    until the peer closes or ``seconds`` pass."""
    sock.settimeout(1)
    data = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20 if hurry.is_set() else rate // 10)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if not hurry.is_set():
            time.sleep(0.1)
    return bytes(data)


SLOW_SYMBOLS = [
    "EURUSD",
    "GBPUSD",
    "USDJPY",
    "XAUUSD",
    "AUDUSD",
    "USDCAD",
    "NZDUSD",
    "EURJPY",
    "GBPJPY",
    "EURGBP",
    "USDCHF",
    "BTCUSD",
]


async def test_slow_reader_is_warned_then_closed_with_its_position(tmp_path: Path) -> None:
    """A reader slower than the stream gets lag, then close 4009 with its resume position; a
    fast client keeps receiving meanwhile; then a reader that never reads is dropped too."""
    args = ("--backfill-days", "0", "--no-weekend-closed", "--load-rate", "30000", "--sync", "none")
    with ServerProcess(tmp_path / "data", *args) as server:
        slow, slow_session = raw_upgrade(server)
        stuck: socket.socket | None = None
        try:
            request = json.dumps(
                {"action": "subscribe", "channel": "ticks", "symbols": SLOW_SYMBOLS}
            )
            slow.sendall(masked_text(request))
            hurry = threading.Event()
            reader = asyncio.create_task(
                asyncio.to_thread(read_slowly, slow, 50_000, 90 * TIMEOUT_SCALE, hurry)
            )
            async with websockets.connect(url(server)) as fast:
                await recv_json(fast)
                await subscribe(fast, ["EURUSD"])
                received = 0
                while not reader.done():
                    ticks, _ = await collect(fast, 20)
                    received += len(ticks)
                    if f"session {slow_session}: closing 4009" in server.log():
                        hurry.set()  # the slow reader catches up and must find lag and close
                assert received > 0
                data = await reader
                stuck, stuck_session = raw_upgrade(server)
                stuck.sendall(masked_text(request))
                deadline = time.monotonic() + 60 * TIMEOUT_SCALE
                while f"session {stuck_session}: closing 4009" not in server.log():
                    assert time.monotonic() < deadline, "the stuck reader was never dropped"
                    await collect(fast, 20)  # and the fast client is served all along
                await collect(fast, 20)
        finally:
            slow.close()
            if stuck is not None:
                stuck.close()
        assert b'"type":"lag"' in data
        close_at = data.rfind(b"\x88")
        assert close_at > 0
        code = int.from_bytes(data[close_at + 2 : close_at + 4], "big")
        reason = data[close_at + 4 :]
        assert code == 4009 and b"resume from " in reason, data[-200:]


async def test_resume_across_a_sigkill_of_the_server(tmp_path: Path) -> None:
    """A client resumes after the server is killed with SIGKILL and restarted: no gap, no dup."""
    data = tmp_path / "data"
    server = ServerProcess(data, *ARGS).start()
    try:
        async with websockets.connect(url(server)) as ws:
            await recv_json(ws)
            await subscribe(ws, SYMBOLS, snapshot=False)
            first, _ = await collect(ws, 400)
        position = f"{first[0]['e']}:{max(t['o'] for t in first)}"
        await asyncio.sleep(0.3)
        server.kill()
    finally:
        server.__exit__()
    restarted = ServerProcess(data, *ARGS)
    restarted.key = server.key
    with restarted:
        async with websockets.connect(url(restarted)) as ws:
            welcome = await recv_json(ws)
            assert welcome["epoch"] == first[0]["e"]
            await subscribe(ws, SYMBOLS, **{"from": position})
            second, other = await collect(ws, 2000)
    assert [m["status"] for m in other if m["type"] == "resume"][:1] == ["replaying"]
    assert_contiguous(first + second)
    assert second[0]["o"] > max(t["o"] for t in first)


async def test_streamed_bars_agree_with_rest_bars(server: ServerProcess) -> None:
    """Closed 1 s bars from the stream equal the REST bars over the same range, side by side."""
    import httpx

    closed: list[dict[str, Any]] = []
    forming = 0
    async with websockets.connect(url(server)) as ws:
        await recv_json(ws)
        await ws.send(
            json.dumps(
                {
                    "action": "subscribe",
                    "id": 1,
                    "channel": "bars",
                    "symbols": ["EURUSD"],
                    "interval": "1s",
                    "side": "bid",
                }
            )
        )
        while len(closed) < 4:
            message = await recv_json(ws)
            if message["type"] == "bar":
                assert message["s"] == "EURUSD" and message["i"] == "1s"
                if message["state"] == "closed":
                    closed.append(message)
                else:
                    forming += 1
    assert forming > 0
    starts = [b["t"] for b in closed]
    assert starts == sorted(set(starts))
    closed = closed[1:]  # the first closed bar may predate the subscription's first flush
    params = {
        "unit": "second",
        "side": "bid",
        "from": str(closed[0]["t"] // 10**6),
        "to": str(closed[-1]["t"] // 10**6 + 1000),
    }
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": server.key}) as http:
        while True:
            response = await http.get("/v1/bars/EURUSD", params=params)
            rest = {b["ts"]: b for b in response.json()["bars"]}
            if all(b["t"] in rest and rest[b["t"]]["ticks"] == b["n"] for b in closed):
                break
            assert time.monotonic() < deadline, (closed, rest)
            await asyncio.sleep(0.2)
    for bar in closed:
        stored = rest[bar["t"]]
        assert (bar["o"], bar["h"], bar["l"], bar["c"], bar["n"]) == (
            stored["open"],
            stored["high"],
            stored["low"],
            stored["close"],
            stored["ticks"],
        )


async def test_flush_interval_setting_paces_the_frames(tmp_path: Path) -> None:
    """--stream-flush-ms bounds how often a connection gets a ticks frame; nothing is lost."""
    args = ("--backfill-days", "0", "--no-weekend-closed", "--sync", "none")
    pacing = ("--load-rate", "1000", "--sim-step-ms", "5", "--stream-flush-ms", "400")
    with ServerProcess(tmp_path / "data", *args, *pacing) as proc:
        async with websockets.connect(url(proc)) as ws:
            await recv_json(ws)  # welcome
            await subscribe(ws, ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "USDCHF", "AUDUSD"])
            frames: list[int] = []
            ticks: list[dict[str, Any]] = []
            started = time.monotonic()
            while time.monotonic() - started < 2.0:
                message = await recv_json(ws)
                if message["type"] == "ticks":
                    frames.append(len(message["ticks"]))
                    ticks.extend(message["ticks"])
            elapsed = time.monotonic() - started
        # TraderMade's legacy stream sends a tick per frame, but writes them in bursts, at most
        # one per 400 ms: the receipts form a few groups separated by quiet gaps
        async with websockets.connect(f"{proc.ws_url}/feedadv") as legacy:
            assert await legacy.recv() == "Connected"
            await legacy.send(json.dumps({"userKey": proc.key, "symbol": "EURUSD,GBPUSD"}))
            receipts: list[float] = []
            while len(receipts) < 2 or receipts[-1] - receipts[0] < 2.0:
                await asyncio.wait_for(legacy.recv(), 10 * TIMEOUT_SCALE)
                receipts.append(time.monotonic())
    # the feed emits every 5 ms; the gateway may flush at most every 400 ms
    assert len(frames) <= elapsed / 0.4 + 2, frames
    assert sum(frames) / len(frames) > 10  # each frame carries many feed steps' ticks
    assert_contiguous(ticks)
    gaps = [b - a for a, b in itertools.pairwise(receipts)]
    assert sum(1 for g in gaps if g > 0.2) >= 3, gaps


def read_frames(sock: socket.socket, seconds: float = 5.0) -> list[tuple[int, bytes]]:
    """Server frames (opcode, payload) until the peer closes the socket or ``seconds`` pass."""
    sock.settimeout(seconds * TIMEOUT_SCALE)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while chunk := sock.recv(65536):
            data += chunk
    frames, pos = [], 0
    while pos + 2 <= len(data):
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif length == 127:
            length, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        frames.append((opcode, data[pos : pos + length]))
        pos += length
    return frames


def masked_close(payload: bytes = b"") -> bytes:
    """A client CLOSE frame (masked)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x88, 0x80 | len(payload)]) + mask + body


def test_a_close_without_a_code_is_answered_with_1000(server: ServerProcess) -> None:
    """RFC 6455: the server answers a CLOSE without a status code with one valid CLOSE (1000),
    never with the code 0, and then closes the socket."""
    sock, _ = raw_upgrade(server)
    with sock:
        sock.sendall(masked_close())
        closes = [payload for opcode, payload in read_frames(sock) if opcode == 0x8]
    assert closes == [(1000).to_bytes(2, "big")]


def test_a_server_close_is_sent_once(server: ServerProcess) -> None:
    """After its own CLOSE (a failed login: 4001) the server sends nothing more, not even a
    second CLOSE when the client answers."""
    sock, _ = raw_upgrade(server)
    with sock:
        sock.sendall(masked_text(json.dumps({"action": "login", "key": "tw_nope"})))
        time.sleep(0.5)
        sock.sendall(masked_close((4001).to_bytes(2, "big")))
        frames = read_frames(sock)
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    assert len(closes) == 1 and closes[0][:2] == (4001).to_bytes(2, "big"), frames
    assert frames[-1][0] == 0x8  # nothing after it


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        (1001, 1001),
        (4321, 4321),
        (1006, 1000),  # "abnormal closure" may not be sent: answered with 1000
        (5000, 1000),
        (1015, 1002),  # picows itself answers this invalid code as a protocol error
    ],
)
def test_a_close_is_echoed_only_with_a_code_that_may_be_sent(
    server: ServerProcess, sent: int, answered: int
) -> None:
    """The server echoes the client's close code, unless it may not be sent (then 1000)."""
    sock, _ = raw_upgrade(server)
    with sock:
        sock.sendall(masked_close(sent.to_bytes(2, "big")))
        closes = [payload for opcode, payload in read_frames(sock) if opcode == 0x8]
    assert [c[:2] for c in closes] == [answered.to_bytes(2, "big")]
