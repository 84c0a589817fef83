"""Server-Sent Events against a real server: batches with positions, resume, bad input."""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tickwire.gateway.sse import MAX_TICKS_PER_EVENT

from .serverproc import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server ticking steadily."""
    data: Path = tmp_path_factory.mktemp("sse") / "data"
    with ServerProcess(
        data, "--backfill-days", "0", "--no-weekend-closed", "--load-rate", "500", "--sync", "none"
    ) as proc:
        yield proc


def read_events(server: ServerProcess, count: int, **params: str) -> list[tuple[str, str, Any]]:
    """Read ``count`` tick events (kind, id, data) from /v1/sse."""
    headers = {"X-API-Key": server.key}
    if "last_event_id" in params:
        headers["Last-Event-ID"] = params.pop("last_event_id")
    events: list[tuple[str, str, Any]] = []
    with httpx.stream(
        "GET", f"{server.url}/v1/sse", params=params, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind, event_id = "", ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                events.append((kind, event_id, json.loads(line[6:])))
                kind, event_id = "", ""
                if sum(1 for e in events if e[0] in ("ticks", "resume")) >= count:
                    break
    return events


def test_ticks_carry_positions_and_resume_without_gap(server: ServerProcess) -> None:
    """Two consecutive sessions joined by Last-Event-ID give every seq exactly once."""
    first = [e for e in read_events(server, 5, symbols="EURUSD,GBPUSD") if e[0] == "ticks"]
    last_id = first[-1][1]
    second = [
        e
        for e in read_events(server, 5, symbols="EURUSD,GBPUSD", last_event_id=last_id)
        if e[0] == "ticks"
    ]
    ticks = [t for _, _, data in first + second for t in data["ticks"]]
    assert {t["s"] for t in ticks} <= {"EURUSD", "GBPUSD"}
    offsets = [t["o"] for t in ticks]
    assert len(offsets) == len(set(offsets))
    # grouped by symbol within an event; every tick of an event is after the earlier events'
    events = [[t["o"] for t in data["ticks"]] for _, _, data in first + second]
    for before, after in itertools.pairwise(events):
        assert min(after) > max(before)
    for symbol in ("EURUSD", "GBPUSD"):
        seqs = [t["q"] for t in ticks if t["s"] == symbol]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    epoch, offset = map(int, last_id.split(":"))
    assert second[0][2]["ticks"][0]["o"] > offset and all(t["e"] == epoch for t in ticks)


def test_quotes_channel_conflates(server: ServerProcess) -> None:
    """The quotes channel sends at most one tick per symbol per event."""
    for _, _, data in [e for e in read_events(server, 5, channel="quotes") if e[0] == "ticks"]:
        symbols = [t["s"] for t in data["ticks"]]
        assert len(symbols) == len(set(symbols))


def test_bad_positions_get_an_explicit_answer(server: ServerProcess) -> None:
    """A position from another epoch or ahead of the stream gets a resume event, then ends."""
    epoch = server.health()["epoch"]
    for position, status in (
        (f"{epoch - 1}:10", "epoch_changed"),
        (f"{epoch}:10000000000", "ahead"),
    ):
        events = read_events(server, 1, symbols="EURUSD", **{"from": position})
        assert events[-1][0] == "resume" and events[-1][2]["status"] == status


def test_bad_input_is_rejected(server: ServerProcess) -> None:
    """Malformed positions and unknown symbols are 400s before any stream starts."""
    headers = {"X-API-Key": server.key}
    for params in ({"from": "yesterday"}, {"symbols": "NOPE"}, {"channel": "bars"}):
        response = httpx.get(f"{server.url}/v1/sse", params=params, headers=headers)
        assert response.status_code == 400, response.text
    assert httpx.get(f"{server.url}/v1/sse").status_code == 401


def test_a_slow_quotes_reader_jumps_to_the_latest_quotes(tmp_path: Path) -> None:
    """A quotes reader that stalls far behind gets one event with the latest quotes and goes on
    from there, instead of a walk through every missed tick."""
    args = ("--backfill-days", "0", "--no-weekend-closed", "--sync", "none")
    with ServerProcess(
        tmp_path / "data", *args, "--load-rate", "20000", "--sim-step-ms", "1"
    ) as proc:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", proc.port))
        with sock:
            # HTTP/1.0: the body comes unchunked, so event lines can be read from the bytes
            sock.sendall(
                f"GET /v1/sse?channel=quotes HTTP/1.0\r\n"  # every symbol: ~5 MB/s of events
                f"X-API-Key: {proc.key}\r\n\r\n".encode()
            )
            sock.settimeout(10)
            data = sock.recv(4096)
            time.sleep(4)  # stall: the buffers fill, the server's writes block, the bus moves on
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                data += sock.recv(65536)
    assert b" 200 " in data.split(b"\r\n", 1)[0]
    ids = [int(line.split(b":")[2]) for line in data.split(b"\n") if line.startswith(b"id: ")]
    jumps = [b - a for a, b in itertools.pairwise(ids)]
    assert jumps and all(j > 0 for j in jumps)
    assert max(jumps) > 4 * MAX_TICKS_PER_EVENT, jumps  # one jump, not a walk of small steps


def test_last_event_id_wins_over_from(server: ServerProcess) -> None:
    """An EventSource opened with ?from= sends Last-Event-ID when it reconnects: the newer
    position is the one resumed, so a reconnect does not replay what it already had."""
    first = [e for e in read_events(server, 3, symbols="EURUSD,GBPUSD") if e[0] == "ticks"]
    old, new = first[0][1], first[-1][1]
    again = read_events(server, 1, symbols="EURUSD,GBPUSD", last_event_id=new, **{"from": old})
    ticks = [t for kind, _, data in again if kind == "ticks" for t in data["ticks"]]
    assert min(t["o"] for t in ticks) > int(new.split(":")[1])
