"""``tickwire bench rest-vs-ws``: its wire parsers, and a tiny grid against a real server.

The parsers are fed bytes split at every position (no event loop). The end-to-end test runs the
command as a user would, on a tiny grid (one rate, clients 1 and 2, every method, 1 s cells):
it spawns a real ``tickwire serve``, and must write every report file, one CSV row per cell,
lose no tick on the lossless stream, and derive "What this means" from the figures it wrote.
"""

from __future__ import annotations

import csv
import itertools
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from tickwire.benchmarks import cli as bench_cli
from tickwire.benchmarks import rest_vs_ws, target
from tickwire.benchmarks.clients import METHODS, Endpoint, Method, StreamClient
from tickwire.benchmarks.report import (
    num,
    pct,
    read_results_csv,
    what_this_means,
    write_results_csv,
)
from tickwire.benchmarks.rest_vs_ws import BenchConfig, CellResult, UnknownSymbolsError
from tickwire.benchmarks.wire import (
    MAX_HEAD,
    OP_TEXT,
    ChunkedDecoder,
    FrameReader,
    HttpResponseReader,
    MarkerCounter,
    SseReader,
    ws_client_frame,
)
from tickwire.cli import cli
from tickwire.client import AuthenticationError, TransportError
from tickwire.protocol.messages import (
    JSON_ENCODER,
    Budget,
    Channel,
    Encoding,
    SubscribeRequest,
    Welcome,
    WelcomeLimits,
    decode_client_message,
)

from .conftest import TIMEOUT_SCALE

RATES = (10,)
CLIENTS = (1, 2)


def _splits(data: bytes) -> list[list[bytes]]:
    """``data`` in two pieces at every position, and one byte at a time."""
    cuts = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    return [*cuts, [data[i : i + 1] for i in range(len(data))]]


def test_frame_reader_splits_anywhere() -> None:
    """Server frames (short, 16-bit length, masked) come out whole wherever the bytes split."""
    big = b"x" * 300
    frames = bytes((0x81, 5)) + b"hello" + bytes((0x81, 126)) + len(big).to_bytes(2, "big") + big
    masked = ws_client_frame(OP_TEXT, b"masked payload", mask=b"abcd")
    for pieces in _splits(frames + masked):
        reader, got = FrameReader(), []
        for piece in pieces:
            reader.feed(piece)
            while (frame := reader.next_frame()) is not None:
                got.append(frame.payload)
        assert got == [b"hello", big, b"masked payload"]
        assert reader.take_buffer() == b""


def test_http_reader_content_length_and_chunked() -> None:
    """Keep-alive responses with Content-Length and chunked bodies parse at any split."""
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    for pieces in _splits(data):
        reader, got = HttpResponseReader(), []
        for piece in pieces:
            got += [(r.status, r.body) for r in reader.feed(piece)]
        assert got == [(200, b"hello"), (429, b"abcde")]


def test_chunked_sse_and_marker_counting() -> None:
    """SSE events survive chunking, and markers split across reads are counted once."""
    events = [
        b'event: ticks\nid: 1:2\ndata: {"s":"A"},{"s":"B"}\n\n',
        b"event: heartbeat\ndata: {}\n\n",
    ]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    for pieces in _splits(chunked):
        decoder, sse, counter, got = ChunkedDecoder(), SseReader(), MarkerCounter(b'{"s":'), []
        for piece in pieces:
            counter.feed(piece)
            got += sse.feed(decoder.feed(piece))
        assert counter.count == 2
        assert decoder.done
        assert [(e.event, e.id, e.data) for e in got] == [
            ("ticks", "1:2", b'{"s":"A"},{"s":"B"}'),
            ("heartbeat", None, b"{}"),
        ]


def _bullets(report: str) -> list[str]:
    section = report.split("## What this means", 1)[1].split("\n## ", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


@pytest.mark.slow
def test_tiny_grid_writes_a_report_computed_from_its_figures(tmp_path: Path) -> None:
    """Every file, a row per method × cell, no tick lost by ws-ticks, text from the CSV."""
    out = tmp_path / "report"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tickwire",
            "bench",
            "rest-vs-ws",
            "--rates",
            ",".join(map(str, RATES)),
            "--clients",
            ",".join(map(str, CLIENTS)),
            "--duration",
            "1",
            "--warmup",
            "0.3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180 * TIMEOUT_SCALE,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "cell 12/12" in run.stderr  # the progress names each cell

    for name in ("report.md", "report.html", "results.csv", "missed.png", "staleness.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "bytes_per_tick.png").exists() and (out / "server_cpu.png").exists()

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cells = {(r["method"], float(r["rate"]), int(r["clients"])) for r in rows}
    assert len(rows) == len(cells) == len(METHODS) * len(RATES) * len(CLIENTS)
    assert cells == set(itertools.product(METHODS, map(float, RATES), CLIENTS))
    for row in rows:
        assert int(row["connected"]) == int(row["clients"]), row
        assert int(row["published"]) > 0, row
        assert int(row["bytes_in"]) > 0, row
        if row["method"] == "ws-ticks":
            assert float(row["missed_fraction"]) == 0.0, row
            assert float(row["staleness_p99_ms"]) > 0, row

    report = (out / "report.md").read_text()
    results = read_results_csv(out / "results.csv")
    bullets = _bullets(report)
    assert bullets == what_this_means(results)  # computed from exactly these figures

    by_cell = {(r.method, r.clients): r for r in results}
    ws = [r for r in results if r.method == "ws-ticks"]
    assert f"`ws-ticks` missed no tick in {len(ws)} of {len(ws)} cells" in report
    rest = by_cell[("rest-1s", 1)]
    assert f"REST polling every second missed {pct(rest.missed_fraction)} at 10 ticks/s" in report
    fast, stream = by_cell[("rest-fast", 1)], by_cell[("ws-ticks", 1)]
    assert fast.bytes_per_tick is not None and stream.bytes_per_tick is not None
    assert f"moved {num(fast.bytes_per_tick)} bytes per delivered tick" in report
    assert f"`ws-ticks` {num(stream.bytes_per_tick)}" in report

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert re.search(r"<h2>What this means</h2>\s*<ul>", html)
    assert "python" in report.lower() and "cores" in report
    assert "tickwire bench rest-vs-ws --rates 10 --clients 1,2" in report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rates", "nan"], "positive, finite"),
        (["--rates", "inf"], "positive, finite"),
        (["--clients", "0"], "positive integers"),
        (["--methods", "carrier-pigeon"], "unknown method"),
        (["--url", "http://h:99999", "--key", "k"], "not a URL"),
        (["--url", "http://[::1", "--key", "k"], "not a URL"),
    ],
)
def test_bad_options_are_one_line_usage_errors(args: list[str], message: str) -> None:
    """Bad option values exit 2 with one line naming the problem, never a traceback."""
    result = CliRunner().invoke(cli, ["bench", "rest-vs-ws", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


# -- review fixes: each test fails without its fix -----------------------------------------------


def test_http_reader_keeps_the_response_after_a_chunked_one() -> None:
    """Bytes after a chunked body (trailers included) are the next response, at any split."""
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
    )
    for pieces in _splits(data):
        reader, got = HttpResponseReader(), []
        for piece in pieces:
            got += [(r.status, r.body) for r in reader.feed(piece)]
        assert got == [(200, b"abc"), (200, b"de"), (404, b"no")], pieces


def test_chunked_decoder_hands_back_what_follows_the_body() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"1\r\na\r\n0\r\n") == b"a"
    assert not decoder.done  # the final CRLF is still to come
    assert decoder.feed(b"\r\nnext") == b""
    assert decoder.done and decoder.take_rest() == b"next"


def _bench(args: list[str]) -> Result:
    return CliRunner().invoke(cli, ["bench", "rest-vs-ws", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "https://h:1", "--key", "k"], "only http://"),
        (["--url", "ws://h:1", "--key", "k"], "only http://"),
        (["--url", "http://h:1", "--stream-url", "wss://h:2", "--key", "k"], "only ws://"),
        (["--key", "k"], "--key can only be used with --url"),
        (
            ["--stream-url", "ws://h:2", "--server-pid", "5"],
            "--stream-url, --server-pid can only be used with --url",
        ),
        (["--url", "http://h:1", "--key", "k", "--server-pid", "0"], "--server-pid"),
    ],
)
def test_url_options_are_checked(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Options that need --url, TLS URLs (spoken to as plain HTTP) and pid 0 are refused."""
    monkeypatch.setattr(bench_cli, "run_grid", _stop_run)
    result = _bench([*args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_key_from_the_environment_needs_no_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """TICKWIRE_KEY set for the other commands does not make a spawned-server run an error."""
    monkeypatch.setenv("TICKWIRE_KEY", "tw_x")
    monkeypatch.setattr(bench_cli, "run_grid", _stop_run)
    result = _bench(["--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "stopped here" in result.output, result.output


class _Stop(RuntimeError):
    pass


def _stop_run(config: BenchConfig, **kwargs: object) -> list[CellResult]:
    raise _Stop("stopped here")


def test_options_are_deduplicated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Repeats count once (a doubled symbol doubled `published`), in the order given."""
    seen: list[BenchConfig] = []

    def fake(config: BenchConfig, **kwargs: object) -> list[CellResult]:
        seen.append(config)
        return _stop_run(config)

    monkeypatch.setattr(bench_cli, "run_grid", fake)
    args = ["--rates", "10,5,10", "--clients", "2,1,2", "--methods", "sse,ws-ticks,sse"]
    result = _bench([*args, "--symbols", "eurusd,GBPUSD,EURUSD", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    (config,) = seen
    assert config.rates == (10.0, 5.0) and config.clients == (2, 1)
    assert config.methods == ("sse", "ws-ticks") and config.symbols == ("EURUSD", "GBPUSD")


def test_unwritable_out_is_refused_before_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--out is created and checked first: a bad one must not cost a 10-minute run."""
    monkeypatch.setattr(bench_cli, "run_grid", _stop_run)
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = _bench(["--out", str(blocker / "report")])
    assert result.exit_code == 2, result.output
    assert "--out" in result.output and "stopped here" not in result.output
    good = tmp_path / "a" / "b"
    assert "stopped here" in _bench(["--out", str(good)]).output and good.is_dir()


@pytest.mark.parametrize(
    ("error", "message", "code"),
    [
        (httpx.ConnectError("refused"), "network error: refused", 1),
        (
            AuthenticationError("bad key", status=401, code="unauthorized", url="http://h/x"),
            "401 bad key",
            1,
        ),
        (subprocess.CalledProcessError(1, ["tickwire", "keys"]), "returned non-zero", 1),
        (RuntimeError("the server exited with 1: see [/tmp/x] [bold]"), "[/tmp/x] [bold]", 1),
        (UnknownSymbolsError("unknown symbol(s) NOPE"), "unknown symbol(s) NOPE", 2),
    ],
)
def test_run_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    error: Exception,
    message: str,
    code: int,
) -> None:
    """A failed run ends in one line on stderr, never a traceback (nor a rich MarkupError)."""

    def fail(config: BenchConfig, **kwargs: object) -> list[CellResult]:
        raise error

    monkeypatch.setattr(bench_cli, "run_grid", fail)
    result = _bench(["--out", str(tmp_path / "out")])
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.startswith("tickwire bench")]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_unreachable_url_is_one_line(tmp_path: Path) -> None:
    """A refused connection (a real one, to port 1) is reported, not raised."""
    result = _bench(["--url", "http://127.0.0.1:1", "--key", "x", "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "cannot reach the server" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


class _FakeControl:
    """Stands in for :class:`Control`: a catalogue, and a ``/health`` that never answers."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.calls = 0

    async def aclose(self) -> None:
        pass

    async def symbols(self) -> list[str]:
        return ["EURUSD", "GBPUSD"]

    async def health(self) -> object:
        self.calls += 1
        raise TransportError("GET /health: refused")


_ENDPOINT = Endpoint("127.0.0.1", 1, "127.0.0.1", 2, "k")


async def test_unknown_symbols_fail_before_any_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest_vs_ws, "Control", _FakeControl)
    config = BenchConfig(symbols=("EURUSD", "NOPE"), idle_seconds=0)
    cells: list[object] = []
    with pytest.raises(UnknownSymbolsError, match="NOPE"):
        await rest_vs_ws.run_target(
            rest_vs_ws.Target(_ENDPOINT, None, 10.0), config, on_cell=lambda *a: cells.append(a)
        )
    assert cells == []


async def test_settle_sleeps_and_stops_when_the_server_is_gone() -> None:
    """An unreachable server is retried with pauses, not in a busy loop; a dead one ends it."""
    control = _FakeControl(_ENDPOINT)
    await rest_vs_ws._settle(control, 0.5)  # type: ignore[arg-type]
    assert 2 <= control.calls <= 0.5 / rest_vs_ws.SETTLE_RETRY_S + 1

    control.calls = 0
    states = iter([None, None, "the server exited with -9: killed"])
    with pytest.raises(RuntimeError, match="exited with -9"):
        await rest_vs_ws._settle(control, 60, lambda: next(states))  # type: ignore[arg-type]
    assert control.calls == 2


def _cell(method: Method, subscribed_rate: float) -> Any:
    target = rest_vs_ws.Target(_ENDPOINT, None, 10.0)
    control = _FakeControl(_ENDPOINT)
    return rest_vs_ws._Cell(
        target,
        BenchConfig(),
        control,
        ["EURUSD"],
        method,
        3,
        None,
        subscribed_rate,  # type: ignore[arg-type]
    )


def test_rest_fast_never_polls_slower_than_rest_1s() -> None:
    assert _cell("rest-fast", 0.2).interval == 1.0  # one symbol of 49 at 10 ticks/s
    assert _cell("rest-fast", 50).interval == 0.02
    assert _cell("rest-1s", 50).interval == 1.0


async def test_a_cell_that_fails_to_connect_closes_its_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connections opened before setup failed must not leak into the next cells."""
    closed: list[int] = []

    class Client:
        def close(self) -> None:
            closed.append(1)

    cell = _cell("ws-ticks", 10)

    async def connect() -> list[Any]:
        cell.streams = [Client(), Client()]
        raise OSError("connect failed halfway")

    monkeypatch.setattr(cell, "_connect", connect)
    with pytest.raises(OSError, match="halfway"):
        await cell.run()
    assert closed == [1, 1]


def test_failed_cell_is_flagged_and_round_trips(tmp_path: Path) -> None:
    """A failed row says so in its own column; the report reads the flag, not duration 0."""
    failed = _cell("sse", 10).failed(TimeoutError())
    assert failed.failed and failed.duration_s == 0 and failed.errors
    ok = CellResult(method="sse", rate=10.0, clients=3, connected=3, duration_s=0.0)
    write_results_csv([failed, ok], tmp_path / "r.csv")
    back = read_results_csv(tmp_path / "r.csv")
    assert [r.failed for r in back] == [True, False]
    bullets = what_this_means(back)
    assert sum("could not be measured" in b for b in bullets) == 1


def test_spawned_server_removes_its_directory_when_start_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A key that cannot be created is a one-line RuntimeError, and leaves no temporary
    directory."""
    monkeypatch.setattr(target, "BENCH_KEY_LIMITS", {"plan": "no-such-plan"})
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server = target.SpawnedServer(10)
    with pytest.raises(RuntimeError, match="cannot create the benchmark's key"):
        server.start()
    assert list(tmp_path.iterdir()) == []


def test_open_files_limit_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: calls.append(limits))
    rest_vs_ws.raise_open_files_limit()
    assert calls == [(4096, 4096)]
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, resource.RLIM_INFINITY))
    rest_vs_ws.raise_open_files_limit()
    assert calls[-1] == (65_536, resource.RLIM_INFINITY)


async def test_sse_setup_buffer_is_capped() -> None:
    """A stream that never sends its hello event fails instead of buffering without end."""

    class Transport:
        def write(self, data: bytes) -> None:
            pass

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            pass

    client = StreamClient("sse", _ENDPOINT, ["EURUSD"], observer=False)
    client.connection_made(Transport())  # type: ignore[arg-type]
    client.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(MAX_HEAD // 1000 + 2):
        client.data_received(b"x" * 1000)
    assert client.ready.done() and isinstance(client.ready.exception(), ConnectionError)
    assert client.closed is not None and client.closed.startswith("protocol")


async def test_ws_setup_uses_the_protocol_messages() -> None:
    """The subscribe sent after the welcome decodes as the server's SubscribeRequest."""
    sent: list[bytes] = []

    class Transport:
        def write(self, data: bytes) -> None:
            sent.append(data)

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            pass

    client = StreamClient("ws-quotes", _ENDPOINT, ["EURUSD"], observer=False, max_rate=2.0)
    client.connection_made(Transport())  # type: ignore[arg-type]
    client._setup_message(b'{"type":"error","code":"invalid_request","message":"no"}')
    assert client.closed == "error: invalid_request"
    client = StreamClient("ws-quotes", _ENDPOINT, ["EURUSD"], observer=False, max_rate=2.0)
    client.connection_made(Transport())  # type: ignore[arg-type]
    sent.clear()
    welcome = JSON_ENCODER.encode(
        Welcome(
            session="s",
            protocol=1,
            key="k",
            encoding=Encoding.JSON,
            encodings=[Encoding.JSON],
            channels=[Channel.TICKS],
            intervals=[],
            epoch=1,
            offset=0,
            heartbeat=5,
            limits=WelcomeLimits(10, 1000, 10, 10, 50, 1000, 60),
            budget=Budget(10, 10),
        )
    )
    client._setup_message(welcome)
    frames = FrameReader()
    frames.feed(sent[0])
    frame = frames.next_frame()
    assert frame is not None
    request = decode_client_message(frame.payload, binary=False)
    assert request == SubscribeRequest(
        channel=Channel.QUOTES, symbols=["EURUSD"], id=1, snapshot=False, max_rate=2.0
    )
