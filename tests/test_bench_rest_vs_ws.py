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
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tickwire.benchmarks.clients import METHODS
from tickwire.benchmarks.report import num, pct, read_results_csv, what_this_means
from tickwire.benchmarks.wire import (
    OP_TEXT,
    ChunkedDecoder,
    FrameReader,
    HttpResponseReader,
    MarkerCounter,
    SseReader,
    ws_client_frame,
)
from tickwire.cli import cli

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
