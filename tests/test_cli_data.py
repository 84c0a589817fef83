"""The data commands (quote, bars, ticks, convert, stream) against a real server.

Most tests go through click's CliRunner; the stream's script form is also run as a real
``python -m tickwire`` subprocess, exactly as scripts call it.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from tickwire.cli_data import register

from .conftest import TIMEOUT_SCALE
from .serverproc import ServerProcess, free_port

pytestmark = pytest.mark.slow

ARGS = ("--backfill-days", "1", "--no-weekend-closed", "--load-rate", "500", "--sync", "none")
TICK_FIELDS = {"symbol", "ts", "bid", "ask", "epoch", "offset", "seq"}


def _adjacent_ports() -> int:
    """A port P such that P and P + 1 were both free: the server's default layout."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server, with its stream on the REST port + 1 (so --url alone finds the stream)."""
    proc = ServerProcess(tmp_path_factory.mktemp("cli-data") / "data", *ARGS)
    proc.port = _adjacent_ports()
    proc.stream_port = proc.port + 1
    proc.url = f"http://127.0.0.1:{proc.port}"
    proc.ws_url = f"ws://127.0.0.1:{proc.stream_port}"
    with proc:
        yield proc


def group() -> click.Group:
    """A ``tickwire``-like group with the data commands registered."""
    cli = click.Group("tickwire")
    register(cli)
    return cli


def run(
    *args: str, server: ServerProcess | None = None, env: dict[str, str] | None = None
) -> Result:
    """Invoke a command; with ``server``, its URL and key come from the environment."""
    full_env = dict(env or {})
    if server is not None:
        full_env.setdefault("TICKWIRE_URL", server.url)
        full_env.setdefault("TICKWIRE_KEY", server.key)
        full_env.setdefault("TICKWIRE_STREAM_URL", server.ws_url)
    return CliRunner().invoke(group(), list(args), env=full_env, catch_exceptions=False)


def assert_one_line_error(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr


# -- quote -----------------------------------------------------------------------------------


def test_quote_table(server: ServerProcess) -> None:
    """Comma and space separated symbols; spread in pips from the catalogue pip size."""
    result = run("quote", "eurusd,GBPUSD", "XAUUSD", server=server)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SYMBOL", "BID", "ASK", "SPREAD", "TIME", "(UTC)", "OFFSET"]
    assert [line.split()[0] for line in lines[1:]] == ["EURUSD", "GBPUSD", "XAUUSD"]
    eurusd = lines[1].split()
    bid, ask, spread = float(eurusd[1]), float(eurusd[2]), float(eurusd[3])
    assert ask >= bid and spread == pytest.approx((ask - bid) / 0.0001, abs=0.06)
    assert len(eurusd[1].split(".")[1]) == 5 and int(eurusd[-1]) > 0


def test_quote_json(server: ServerProcess) -> None:
    """--format json: a list of quotes with positions and spread_pips."""
    result = run("quote", "EURUSD", "USDJPY", "--format", "json", server=server)
    assert result.exit_code == 0, result.output
    quotes = json.loads(result.stdout)
    assert [q["symbol"] for q in quotes] == ["EURUSD", "USDJPY"]
    for q in quotes:
        assert {"bid", "ask", "time", "epoch", "offset", "seq", "spread_pips"} <= q.keys()
    jpy = quotes[1]
    assert jpy["spread_pips"] == pytest.approx((jpy["ask"] - jpy["bid"]) / 0.01, abs=0.06)


def test_url_and_key_options_override_the_environment(server: ServerProcess) -> None:
    """--url and --key win over a wrong environment."""
    env = {"TICKWIRE_URL": "http://127.0.0.1:1", "TICKWIRE_KEY": "tw_wrong"}
    result = run("quote", "EURUSD", "--url", server.url, "--key", server.key, env=env)
    assert result.exit_code == 0, result.output
    assert_one_line_error(run("quote", "EURUSD", env=env), 1, "cannot reach the server")


@pytest.mark.parametrize(
    "args",
    [
        ["quote", "NOPE"],
        ["bars", "NOPE"],
        ["ticks", "NOPE"],
        ["convert", "1", "EUR", "XXX"],
        ["stream", "NOPE", "--count", "1", "--format", "jsonl"],
        ["ticks", "EURUSD", "--from", "garbage"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(server: ServerProcess, args: list[str]) -> None:
    """Unknown symbols and currencies, bad times: one line on stderr, exit code 2."""
    result = run(*args, server=server)
    assert_one_line_error(result, 2, f"tickwire {args[0]}: ")
    assert result.stdout == ""


def test_bad_usage_exits_2(server: ServerProcess) -> None:
    """Option values click refuses, and --from on the quotes channel, are usage errors."""
    assert run("stream", "EURUSD", "--from", "x", server=server).exit_code == 2
    assert run("stream", "EURUSD", "--from", "1:2", "--channel", "quotes").exit_code == 2
    assert run("bars", "EURUSD", "--unit", "fortnight", server=server).exit_code == 2
    for age in ("3000000d", "99999999999w"):  # before year 1: no OverflowError traceback
        result = run("ticks", "EURUSD", "--from", age, server=server)
        assert result.exit_code == 2 and "before year 1" in result.stderr, result.output
    assert run("quote", server=server).exit_code == 2


def test_a_wrong_key_exits_1_with_a_hint(server: ServerProcess) -> None:
    """A refused key is a server answer (exit 1) and says where the key comes from."""
    result = run("quote", "EURUSD", "--key", "tw_wrong", server=server)
    assert_one_line_error(result, 1, "TICKWIRE_KEY")


def test_server_down_exits_1_without_traceback(tmp_path: Path) -> None:
    """Every command, with nothing listening: one line, exit 1."""
    env = {"TICKWIRE_URL": f"http://127.0.0.1:{free_port()}", "TICKWIRE_KEY": "tw_x"}
    env["TICKWIRE_STREAM_URL"] = f"ws://127.0.0.1:{free_port()}"
    for args in (
        ["quote", "EURUSD"],
        ["bars", "EURUSD"],
        ["ticks", "EURUSD", "--format", "csv"],
        ["convert", "1", "EUR", "USD"],
        ["stream", "EURUSD", "--count", "1", "--format", "jsonl", "--retries", "0"],
    ):
        assert_one_line_error(run(*args, env=env), 1, "cannot reach the server")


# -- bars and ticks --------------------------------------------------------------------------


def test_bars_table_csv_json(server: ServerProcess) -> None:
    """The same 15-minute bars as a table, CSV and JSON."""
    common = ["bars", "EURUSD", "--unit", "minute", "--multiplier", "15", "--from", "6h"]
    as_json = run(*common, "--format", "json", server=server)
    assert as_json.exit_code == 0, as_json.output
    bars = json.loads(as_json.stdout)
    assert 20 <= len(bars) <= 26
    assert all(b["ts"] % (15 * 60 * 10**9) == 0 for b in bars)
    assert all(b["low"] <= min(b["open"], b["close"]) for b in bars)
    assert bars[-1]["complete"] is False and all(b["complete"] for b in bars[:-1])
    as_csv = run(*common, "--to", bars[-1]["time"], "--format", "csv", server=server)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == ["time", "ts", "open", "high", "low", "close", "ticks", "complete"]
    assert [int(r["ts"]) for r in rows] == [b["ts"] for b in bars[:-1]]
    assert float(rows[0]["open"]) == bars[0]["open"] and rows[0]["complete"] == "true"
    table = run(*common[:-2], "--limit", "3", "--side", "bid", "--daily-cut", "22", server=server)
    lines = table.stdout.splitlines()
    assert lines[0].startswith("EURUSD 15 minute bid bars")
    assert lines[1].split()[:6] == ["TIME", "(UTC)", "OPEN", "HIGH", "LOW", "CLOSE"]
    assert len(lines) == 5 and lines[-1].rstrip().endswith("forming")


def test_ticks_formats_agree(server: ServerProcess) -> None:
    """table, csv, json and jsonl give the same ticks for a fixed range."""
    # a range known to hold at least 20 ticks, whatever the simulated session's tick density
    first = json.loads(
        run("ticks", "EURUSD", "--limit", "20", "--format", "json", server=server).stdout
    )
    start = first[0]["ts"] // 1_000_000  # epoch milliseconds
    end = first[-1]["ts"] // 1_000_000 + 1
    args = ["ticks", "EURUSD", "--from", str(start), "--to", str(end), "--limit", "50"]
    as_json = json.loads(run(*args, "--format", "json", server=server).stdout)
    assert 20 <= len(as_json) <= 50 and TICK_FIELDS == as_json[0].keys()
    seqs = [t["seq"] for t in as_json]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    lines = run(*args, "--format", "jsonl", server=server).stdout.splitlines()
    assert [json.loads(line) for line in lines] == as_json
    rows = list(csv.DictReader(io.StringIO(run(*args, "--format", "csv", server=server).stdout)))
    assert [int(r["offset"]) for r in rows] == [t["offset"] for t in as_json]
    assert list(rows[0]) == ["time", "ts", "bid", "ask", "epoch", "offset", "seq"]
    table = run(*args, server=server).stdout.splitlines()
    assert table[0].startswith("EURUSD ticks") and len(table) == 2 + len(as_json)
    assert table[2].split()[-1] == str(seqs[0])


def test_a_large_export_pages_and_shows_progress(server: ServerProcess) -> None:
    """An export over several pages is complete and in order; progress never touches stdout."""
    result = run(
        "ticks",
        "EURUSD",
        "--from",
        "1d",
        "--limit",
        "25000",
        "--format",
        "csv",
        "--progress",
        server=server,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "time,ts,bid,ask,epoch,offset,seq" and len(lines) == 25_001
    keys = [(int(r.split(",")[1]), int(r.split(",")[5])) for r in lines[1:]]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


# -- convert ---------------------------------------------------------------------------------


def test_convert_text_and_json(server: ServerProcess) -> None:
    """The total, rate and path; JSON is the server's answer."""
    text = run("convert", "100", "eur", "JPY", server=server)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith("100.00 EUR = ") and lines[0].endswith(" JPY")
    assert lines[1].startswith("rate ") and lines[2].startswith("path  EURJPY")
    answer = json.loads(
        run("convert", "100", "EUR", "JPY", "--format", "json", server=server).stdout
    )
    assert answer["from"] == "EUR" and answer["total"] == pytest.approx(100 * answer["rate"])
    cross = json.loads(run("convert", "2", "GBP", "NZD", "--format", "json", server=server).stdout)
    assert len(cross["path"]) >= 1 and cross["method"]


# -- stream ----------------------------------------------------------------------------------


def _jsonl_ticks(text: str) -> list[dict[str, int | float | str]]:
    return [json.loads(line) for line in text.splitlines()]


def _assert_continuous(ticks: list[dict[str, int | float | str]]) -> None:
    last: dict[str, int] = {}
    for tick in ticks:
        symbol, seq = str(tick["symbol"]), int(tick["seq"])
        if symbol in last:
            assert seq == last[symbol] + 1, (symbol, last[symbol], seq)
        last[symbol] = seq


def test_stream_script_form_in_a_subprocess(server: ServerProcess) -> None:
    """`python -m tickwire stream EURUSD --url URL --key KEY --count 20 --format jsonl`."""
    command = [sys.executable, "-m", "tickwire", "stream", "EURUSD", "--url", server.url]
    command += ["--key", server.key, "--count", "20", "--format", "jsonl"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30 * TIMEOUT_SCALE)
    assert done.returncode == 0, done.stderr
    ticks = _jsonl_ticks(done.stdout)
    assert len(ticks) == 20 and done.stderr == ""
    assert all(TICK_FIELDS <= t.keys() and t["symbol"] == "EURUSD" for t in ticks)
    _assert_continuous(ticks)
    offsets = [int(t["offset"]) for t in ticks]
    assert offsets == sorted(offsets)

    last = ticks[-1]
    resumed = subprocess.run(
        [
            *command[:-4],
            "--count",
            "5",
            "--format",
            "jsonl",
            "--from",
            f"{last['epoch']}:{last['offset']}",
        ],
        capture_output=True,
        text=True,
        timeout=30 * TIMEOUT_SCALE,
    )
    assert resumed.returncode == 0, resumed.stderr
    more = _jsonl_ticks(resumed.stdout)
    assert len(more) == 5 and more[0]["seq"] == int(last["seq"]) + 1
    _assert_continuous(ticks + more)


def test_stream_several_symbols_and_resume_in_process(server: ServerProcess) -> None:
    """Per-symbol seqs are continuous; --from gives exactly the ticks that follow."""
    first = run(
        "stream", "EURUSD,GBPUSD", "USDJPY", "--count", "30", "--format", "jsonl", server=server
    )
    assert first.exit_code == 0, first.output
    ticks = _jsonl_ticks(first.stdout)
    assert len(ticks) == 30 and {t["symbol"] for t in ticks} <= {"EURUSD", "GBPUSD", "USDJPY"}
    _assert_continuous(ticks)
    middle = ticks[9]
    again = run(
        "stream",
        "EURUSD,GBPUSD,USDJPY",
        "--from",
        f"{middle['epoch']}:{middle['offset']}",
        "--count",
        "20",
        "--format",
        "jsonl",
        server=server,
    )
    assert _jsonl_ticks(again.stdout) == ticks[10:]


def test_stream_quotes_channel_and_board(server: ServerProcess) -> None:
    """--channel quotes gives ticks too; the board renders symbols, prices and its status."""
    quotes = run(
        "stream",
        "EURUSD",
        "--channel",
        "quotes",
        "--count",
        "2",
        "--format",
        "jsonl",
        server=server,
    )
    assert quotes.exit_code == 0, quotes.output
    assert len(_jsonl_ticks(quotes.stdout)) == 2
    board = run("stream", "EURUSD", "GBPUSD", "--count", "10", "--format", "board", server=server)
    assert board.exit_code == 0, board.output
    assert "EURUSD" in board.stdout and "GBPUSD" in board.stdout and "SPREAD" in board.stdout
    assert "CHANGE" in board.stdout and "10 ticks" in board.stdout


def test_stream_defaults_to_jsonl_when_stdout_is_not_a_terminal(server: ServerProcess) -> None:
    """Without --format, a pipe gets JSON lines."""
    result = run("stream", "EURUSD", "--count", "3", server=server)
    assert len(_jsonl_ticks(result.stdout)) == 3


def test_help_everywhere() -> None:
    """Every command's --help names its options and the environment variables."""
    for name in ("quote", "bars", "ticks", "convert", "stream"):
        text = run(name, "--help").stdout
        assert "--url" in text and "TICKWIRE_URL" in text and "TICKWIRE_KEY" in text, name
    assert "EPOCH:OFFSET" in run("stream", "--help").stdout
    assert "--daily-cut" in run("bars", "--help").stdout


def test_the_tickwire_command_has_the_data_commands() -> None:
    """``tickwire --help`` lists them (cli.py registers them)."""
    from tickwire.cli import cli

    for name in ("quote", "bars", "ticks", "convert", "stream"):
        assert name in cli.commands, name
