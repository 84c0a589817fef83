"""The ``tickwire`` data commands: ``quote``, ``bars``, ``ticks``, ``convert`` and ``stream``.

They talk to a running server through the SDK (:mod:`tickwire.client`). The server and the key
come from ``--url`` / ``--key`` (and ``--stream-url`` for the stream), else from the
environment (``TICKWIRE_URL``, ``TICKWIRE_KEY``, ``TICKWIRE_STREAM_URL``), read when the command
runs. Output for people is a rich table; ``--format`` gives JSON, CSV or JSON lines for scripts.

Errors print one line on standard error and exit with code 2 for bad input (an unknown symbol, a
bad time, a refused parameter) and 1 for server and network errors; Ctrl-C exits with 130.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Final, NoReturn

import click
import httpx
import msgspec

from .client import (
    ApiError,
    AuthenticationError,
    Backoff,
    Bar,
    Client,
    ClientError,
    Conversion,
    InvalidRequestError,
    Position,
    PositionTooOldError,
    Quote,
    StreamError,
    SubscriptionError,
    Symbol,
    Tick,
    TicksPage,
    TickStream,
    TransportError,
)
from .client._base import ENV_KEY, ENV_STREAM_URL, ENV_URL, Request, TimeLike
from .client._models import _RawTicksPage, ticks_page
from .errors import TickwireError

__all__ = ["bars", "convert", "quote", "register", "stream", "ticks"]

_CONTEXT: Final[dict[str, Any]] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}
_BAD_INPUT_CODES: Final = frozenset(
    {"unknown_symbol", "unknown_currency", "invalid_parameter", "missing_parameter"}
)
_UNITS: Final = ("second", "minute", "hour", "day", "week")
_RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)$", re.IGNORECASE)
_SECONDS: Final = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86_400, "w": 604_800}
_TIME_HELP: Final = (
    "UTC: ISO 8601 (2026-11-27, 2026-11-27T10:15, ...Z), epoch milliseconds, 'now', "
    "or an age such as 90s, 15m, 6h, 2d, 1w (that long ago)."
)
_json: Final = msgspec.json.Encoder()


# -- shared options and helpers ------------------------------------------------------------


def _connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--key",
        metavar="KEY",
        default=None,
        help=f"API key. [env {ENV_KEY}]",
    )(func)
    return click.option(
        "--url",
        metavar="URL",
        default=None,
        help=f"Server REST URL. [env {ENV_URL}; default: http://127.0.0.1:8000]",
    )(func)


def _format_option(
    choices: Sequence[str], help_text: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help=help_text,
    )


def _client(url: str | None, key: str | None, stream_url: str | None = None) -> Client:
    """A client; arguments left out come from the environment, read now."""
    env = os.environ
    return Client(
        url or env.get(ENV_URL) or None,
        key if key is not None else env.get(ENV_KEY),
        stream_url=stream_url or env.get(ENV_STREAM_URL) or None,
    )


def _fail(command: str, message: str, code: int) -> NoReturn:
    line = " ".join(str(message).split())
    click.echo(f"tickwire {command}: {line}", err=True)
    sys.exit(code)


def _api_message(exc: ApiError) -> str:
    text = exc.message or exc.code
    if isinstance(exc, AuthenticationError) and exc.status == 401:
        text += f" (pass --key or set {ENV_KEY})"
    return text


@contextlib.contextmanager
def _cli_errors(command: str) -> Iterator[None]:
    """Turn every expected failure into one line on stderr and an exit code; no traceback."""
    try:
        yield
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining
        # about the unflushable stdout at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except (InvalidRequestError, SubscriptionError) as exc:
        message = _api_message(exc) if isinstance(exc, ApiError) else str(exc)
        _fail(command, message, 2)
    except ApiError as exc:
        bad_input = exc.code in _BAD_INPUT_CODES
        _fail(command, _api_message(exc), 2 if bad_input else 1)
    except PositionTooOldError as exc:
        oldest = f" (the oldest resumable position is {exc.oldest})" if exc.oldest else ""
        _fail(command, f"cannot resume: {exc}{oldest}", 2)
    except TransportError as exc:
        cause = str(exc.__cause__ or "") or str(exc)
        _fail(command, f"cannot reach the server: {cause}", 1)
    except (ClientError, StreamError, TickwireError) as exc:
        _fail(command, str(exc), 1)
    except httpx.HTTPError as exc:
        _fail(command, f"network error: {exc}", 1)
    except ValueError as exc:  # the SDK's own argument checks
        _fail(command, str(exc), 2)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _fail(command, f"I/O error{where}: {exc.strerror or exc}", 1)


def _split_symbols(values: Iterable[str]) -> list[str]:
    """Symbols given as one or more arguments, each comma separated; upper-case, no repeats."""
    out = [s.strip().upper() for value in values for s in value.split(",") if s.strip()]
    if not out:
        raise click.BadParameter("give at least one symbol", param_hint="SYMBOLS")
    return list(dict.fromkeys(out))


def _time_option(ctx: click.Context, param: click.Parameter, value: str | None) -> TimeLike | None:
    """A time: 'now', an age (15m, 6h, 2d), or passed to the server (ISO 8601, epoch ms)."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() == "now":
        return datetime.now(UTC)
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _SECONDS[match.group(2).lower()]
        try:
            return datetime.now(UTC) - timedelta(seconds=seconds)
        except OverflowError:
            raise click.BadParameter(f"{text!r} reaches before year 1") from None
    if not text:
        raise click.BadParameter("empty time")
    return text


def _position_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> Position | None:
    if value is None:
        return None
    try:
        return Position.parse(value.strip())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _clock(ts_ns: int) -> str:
    moment = datetime.fromtimestamp(ts_ns / 1e9, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _price(value: float, decimals: int | None) -> str:
    return f"{value:.{decimals}f}" if decimals is not None else f"{value:g}"


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 160  # files and pipes: no wrapping of wide tables
    return Console(file=stream, soft_wrap=False, width=wide, highlight=False)


def _catalogue(client: Client) -> dict[str, Symbol]:
    """The server's catalogue by code (pip sizes and decimals for display)."""
    return {s.code: s for s in client.symbols()}


# -- quote -----------------------------------------------------------------------------------


@click.command(context_settings=_CONTEXT)
@click.argument("symbols", nargs=-1, required=True)
@_format_option(["table", "json"], "A table for people, or JSON for scripts.")
@_connection_options
def quote(symbols: tuple[str, ...], fmt: str, url: str | None, key: str | None) -> None:
    """Live quotes: bid, ask, spread in pips, time (UTC) and stream offset.

    SYMBOLS are separated by commas or spaces: `tickwire quote EURUSD,GBPUSD USDJPY`. Symbols
    that have not ticked yet are named on stderr. JSON is a list of quotes, each with
    `spread_pips` added.
    """
    codes = _split_symbols(symbols)
    with _cli_errors("quote"), _client(url, key) as client:
        page = client.quotes_page(codes)
        catalogue = _catalogue(client)
        if fmt == "json":
            items = [_quote_dict(q, catalogue.get(q.symbol)) for q in page.quotes]
            click.echo(msgspec.json.format(_json.encode(items)).decode())
        else:
            _quote_table(page.quotes, catalogue)
        if page.missing:
            click.echo(f"no quote yet for {', '.join(page.missing)}", err=True)
        if not page.quotes:
            sys.exit(1)


def _spread_pips(bid: float, ask: float, symbol: Symbol | None) -> float | None:
    if symbol is None or symbol.pip <= 0:
        return None
    return round((ask - bid) / symbol.pip, 1)


def _quote_dict(q: Quote, symbol: Symbol | None) -> dict[str, Any]:
    item: dict[str, Any] = msgspec.to_builtins(q)
    item["spread_pips"] = _spread_pips(q.bid, q.ask, symbol)
    return item


def _quote_table(quotes: list[Quote], catalogue: dict[str, Symbol]) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("SYMBOL", "BID", "ASK", "SPREAD", "TIME (UTC)", "OFFSET"):
        table.add_column(column, justify="left" if column in ("SYMBOL", "TIME (UTC)") else "right")
    for q in quotes:
        symbol = catalogue.get(q.symbol)
        decimals = symbol.decimals if symbol else None
        spread = _spread_pips(q.bid, q.ask, symbol)
        table.add_row(
            q.symbol,
            _price(q.bid, decimals),
            _price(q.ask, decimals),
            "" if spread is None else f"{spread:.1f}",
            _clock(q.ts),
            str(q.offset),
        )
    _console().print(table)


# -- bars ------------------------------------------------------------------------------------

_BAR_COLUMNS: Final = ("time", "ts", "open", "high", "low", "close", "ticks", "complete")


@click.command(context_settings=_CONTEXT)
@click.argument("symbol")
@click.option(
    "--unit",
    type=click.Choice(_UNITS),
    default="minute",
    show_default=True,
    help="The bar unit; second bars cover at most 31 days.",
)
@click.option(
    "--multiplier",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="Bars of MULTIPLIER units, e.g. --unit minute --multiplier 15.",
)
@click.option(
    "--from",
    "start",
    metavar="TIME",
    callback=_time_option,
    help=f"First bar start (inclusive). {_TIME_HELP} [default: TO - LIMIT bars]",
)
@click.option(
    "--to",
    "end",
    metavar="TIME",
    callback=_time_option,
    help="Last bar start (exclusive); same forms as --from. [default: now]",
)
@click.option(
    "--side",
    type=click.Choice(["mid", "bid", "ask"]),
    default="mid",
    show_default=True,
    help="Which price the bars are built from.",
)
@click.option(
    "--daily-cut",
    type=click.Choice(["0", "22"]),
    default="0",
    show_default=True,
    help="Day and week bars start at 00:00 UTC (0) or 22:00 UTC (22, the FX convention).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many bars. [default: the range given, else the server's 1000]",
)
@_format_option(
    ["table", "csv", "json"],
    "table for people; csv (time,ts,open,high,low,close,ticks,complete) or json for scripts.",
)
@_connection_options
def bars(
    symbol: str,
    unit: str,
    multiplier: int,
    start: TimeLike | None,
    end: TimeLike | None,
    side: str,
    daily_cut: str,
    limit: int | None,
    fmt: str,
    url: str | None,
    key: str | None,
) -> None:
    """OHLC bars of SYMBOL, oldest first; the forming bar is marked (complete: false).

    Example: `tickwire bars EURUSD --unit minute --multiplier 15 --from 6h --format csv`.
    """
    code = symbol.strip().upper()
    with _cli_errors("bars"), _client(url, key) as client:
        rows = client.bars(
            code,
            unit=unit,
            multiplier=multiplier,
            start=start,
            end=end,
            side=side,
            daily_cut=int(daily_cut),
            limit=limit,
        )
        if fmt == "json":
            click.echo(msgspec.json.format(_json.encode(rows)).decode())
        elif fmt == "csv":
            _bars_csv(rows, sys.stdout)
        else:
            info = _catalogue(client).get(code)
            title = f"{code} {multiplier} {unit} {side} bars"
            _bars_table(rows, info.decimals if info else None, title)
        if not rows:
            click.echo(f"no {code} bars in that range", err=True)


def _bars_csv(rows: list[Bar], out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_BAR_COLUMNS)
    for b in rows:
        prices = (repr(b.open), repr(b.high), repr(b.low), repr(b.close))
        writer.writerow((_iso(b.time), b.ts, *prices, b.ticks, "true" if b.complete else "false"))


def _bars_table(rows: list[Bar], decimals: int | None, title: str) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title=title, title_justify="left")
    for column in ("TIME (UTC)", "OPEN", "HIGH", "LOW", "CLOSE", "TICKS", ""):
        table.add_column(column, justify="left" if column.startswith("TIME") else "right")
    for b in rows:
        table.add_row(
            b.time.strftime("%Y-%m-%d %H:%M:%S"),
            _price(b.open, decimals),
            _price(b.high, decimals),
            _price(b.low, decimals),
            _price(b.close, decimals),
            str(b.ticks),
            "" if b.complete else "forming",
        )
    _console().print(table)


# -- ticks -----------------------------------------------------------------------------------

_TICK_COLUMNS: Final = ("time", "ts", "bid", "ask", "epoch", "offset", "seq")


@click.command(context_settings=_CONTEXT)
@click.argument("symbol")
@click.option(
    "--from",
    "start",
    metavar="TIME",
    callback=_time_option,
    help=f"First tick time (inclusive). {_TIME_HELP} [default: TO - 1h]",
)
@click.option(
    "--to",
    "end",
    metavar="TIME",
    callback=_time_option,
    help="End time (exclusive); same forms as --from. [default: now]",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many ticks. [default: every tick in the range]",
)
@_format_option(
    ["table", "csv", "json", "jsonl"],
    "table for people; csv (time,ts,bid,ask,epoch,offset,seq), json (a list) or jsonl (one "
    "tick a line, as `stream --format jsonl` prints) for scripts.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="A progress bar on stderr. [default: if stdout is a file or pipe, stderr a terminal]",
)
@_connection_options
def ticks(
    symbol: str,
    start: TimeLike | None,
    end: TimeLike | None,
    limit: int | None,
    fmt: str,
    progress: bool | None,
    url: str | None,
    key: str | None,
) -> None:
    """Raw ticks of SYMBOL, oldest first, paged from the server and written as they arrive.

    Export example: `tickwire ticks EURUSD --from 1d --format csv > eurusd.csv` (with a
    progress bar on the terminal).
    """
    code = symbol.strip().upper()
    if progress is None:
        progress = not sys.stdout.isatty() and sys.stderr.isatty()
    out = sys.stdout
    with _cli_errors("ticks"), _client(url, key) as client:
        pages = _tick_pages(client, code, start, end, limit)
        bar = _ExportProgress(code, limit) if progress else None
        total = 0
        try:
            if fmt == "table":
                rows: list[Tick] = []
                for page in pages:
                    rows.extend(page.ticks)
                    if bar is not None:
                        bar.update(page, len(rows))
                info = _catalogue(client).get(code)
                _ticks_table(rows, info.decimals if info else None, code)
                total = len(rows)
            else:
                writer = _TickWriter(fmt, out)
                for page in pages:
                    writer.write(page.ticks)
                    total += len(page.ticks)
                    if bar is not None:
                        bar.update(page, total)
                writer.close()
        finally:
            if bar is not None:
                bar.close()
        if total == 0:
            click.echo(f"no {code} ticks in that range", err=True)


def _tick_pages(
    client: Client,
    symbol: str,
    start: TimeLike | None,
    end: TimeLike | None,
    limit: int | None,
) -> Iterator[TicksPage]:
    """Each page of ``GET /v1/ticks`` in turn (the last one trimmed to ``limit``).

    ``Client.ticks`` collects the whole range in memory; an export writes page by page.
    """
    request: Request | None = client.ticks_request(symbol, start=start, end=end, limit=limit)
    got = 0
    while request is not None:
        page = ticks_page(client._call(_RawTicksPage, request))
        if limit is not None and got + len(page.ticks) > limit:
            page = msgspec.structs.replace(page, ticks=page.ticks[: limit - got])
        got += len(page.ticks)
        yield page
        request = client.next_page(request, page.next_cursor, got, limit)


class _TickWriter:
    """Writes ticks as CSV, a JSON list or JSON lines, page by page."""

    def __init__(self, fmt: str, out: IO[str]) -> None:
        self.fmt = fmt
        self.out = out
        self.first = True
        self.csv = csv.writer(out, lineterminator="\n")
        if fmt == "csv":
            self.csv.writerow(_TICK_COLUMNS)
        elif fmt == "json":
            out.write("[")

    def write(self, rows: list[Tick]) -> None:
        if self.fmt == "csv":
            self.csv.writerows(
                (_iso(t.time), t.ts, repr(t.bid), repr(t.ask), t.epoch, t.offset, t.seq)
                for t in rows
            )
        elif self.fmt == "jsonl":
            self.out.write("".join(_json.encode(t).decode() + "\n" for t in rows))
        else:
            for t in rows:
                self.out.write(("\n  " if self.first else ",\n  ") + _json.encode(t).decode())
                self.first = False
        self.out.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("]\n" if self.first else "\n]\n")
        self.out.flush()


class _ExportProgress:
    """A rich progress bar on stderr: the share of the time range (or of --limit) done."""

    def __init__(self, symbol: str, limit: int | None) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.limit = limit
        self.progress = Progress(
            TextColumn(symbol),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%  {task.fields[ticks]:,} ticks"),
            TimeElapsedColumn(),
            console=_console(stderr=True),
            transient=True,
        )
        self.task: Any = None

    def update(self, page: TicksPage, count: int) -> None:
        span = (page.to - page.from_).total_seconds()
        done = 1.0 if page.next_cursor is None else 0.0
        if page.ticks and span > 0:
            done = max(done, (page.ticks[-1].time - page.from_).total_seconds() / span)
        if self.limit:
            done = max(done, count / self.limit)
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("ticks", total=1.0, ticks=0)
        self.progress.update(self.task, completed=min(done, 1.0), ticks=count)

    def close(self) -> None:
        self.progress.stop()


def _ticks_table(rows: list[Tick], decimals: int | None, symbol: str) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title=f"{symbol} ticks", title_justify="left")
    for column in ("TIME (UTC)", "BID", "ASK", "EPOCH", "OFFSET", "SEQ"):
        table.add_column(column, justify="left" if column.startswith("TIME") else "right")
    for t in rows:
        table.add_row(
            _clock(t.ts),
            _price(t.bid, decimals),
            _price(t.ask, decimals),
            str(t.epoch),
            str(t.offset),
            str(t.seq),
        )
    _console().print(table)


# -- convert ---------------------------------------------------------------------------------


@click.command(context_settings=_CONTEXT)
@click.argument("amount", type=float)
@click.argument("from_currency", metavar="FROM")
@click.argument("to_currency", metavar="TO")
@_format_option(["text", "json"], "Text for people, or the server's JSON answer.")
@_connection_options
def convert(
    amount: float,
    from_currency: str,
    to_currency: str,
    fmt: str,
    url: str | None,
    key: str | None,
) -> None:
    """Convert AMOUNT of currency FROM into TO at the live mid; prints total, rate and path.

    The rate comes from the direct pair, its inverse, or a cross (through USD, then EUR, GBP,
    JPY). Example: `tickwire convert 100 EUR JPY`.
    """
    with _cli_errors("convert"), _client(url, key) as client:
        result = client.convert(amount, from_currency.strip().upper(), to_currency.strip().upper())
    if fmt == "json":
        click.echo(msgspec.json.format(_json.encode(result)).decode())
        return
    click.echo(_conversion_text(result))


def _amount(value: float) -> str:
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.6g}"


def _conversion_text(c: Conversion) -> str:
    legs = " → ".join(f"{leg.symbol}{' (inverted)' if leg.inverted else ''}" for leg in c.path)
    return (
        f"{_amount(c.amount)} {c.from_} = {_amount(c.total)} {c.to}\n"
        f"rate  {c.rate:.6g}  (bid {c.bid:.6g}, ask {c.ask:.6g}) at {_iso(c.time)}\n"
        f"path  {legs or '-'}  ({c.method})"
    )


# -- stream ----------------------------------------------------------------------------------


@click.command(context_settings=_CONTEXT)
@click.argument("symbols", nargs=-1, required=True)
@click.option(
    "--channel",
    type=click.Choice(["ticks", "quotes"]),
    default="ticks",
    show_default=True,
    help="Every tick (resumable), or conflated quotes (a few per second per symbol).",
)
@click.option(
    "--from",
    "from_",
    metavar="EPOCH:OFFSET",
    callback=_position_option,
    help="Resume after this position (the epoch and offset of the last tick you have); "
    "ticks channel only. [default: live]",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after this many ticks. [default: run until Ctrl-C]",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["board", "jsonl"]),
    default=None,
    help="board: a live-updating quote board; jsonl: one JSON object per tick (symbol, ts, "
    "bid, ask, epoch, offset, seq). [default: board on a terminal, jsonl otherwise]",
)
@click.option(
    "--fill-gaps",
    is_flag=True,
    help="If the server no longer has a position to resume from, fetch the gap over REST.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Failed reconnect attempts in a row before giving up (they back off up to 30 s).",
)
@click.option(
    "--stream-url",
    metavar="URL",
    default=None,
    help=f"Stream WebSocket URL. [env {ENV_STREAM_URL}; default: the REST URL's host, port + 1]",
)
@_connection_options
def stream(
    symbols: tuple[str, ...],
    channel: str,
    from_: Position | None,
    count: int | None,
    fmt: str | None,
    fill_gaps: bool,
    retries: int,
    stream_url: str | None,
    url: str | None,
    key: str | None,
) -> None:
    """Stream live ticks of SYMBOLS (comma or space separated), with no gap and no duplicate.

    The stream reconnects by itself and resumes where it was. On a terminal it shows a board:
    bid, ask, spread in pips and change since the daily open, flashing green on an up-tick and
    red on a down-tick. For scripts, `--format jsonl --count N` prints N ticks, one JSON object
    a line, and exits; pass the last line's `epoch:offset` as `--from` to continue exactly
    after it.
    """
    codes = _split_symbols(symbols)
    if from_ is not None and channel != "ticks":
        raise click.UsageError("--from needs --channel ticks (quotes are not resumable)")
    if fmt is None:
        fmt = "board" if sys.stdout.isatty() else "jsonl"
    with _cli_errors("stream"), _client(url, key, stream_url) as client:
        live = client.stream(
            codes,
            channel="quotes" if channel == "quotes" else "ticks",
            from_=from_,
            fill_gaps=fill_gaps,
            backoff=Backoff(max_attempts=retries),
        )
        with live:
            if fmt == "jsonl":
                _stream_jsonl(live, count, sys.stdout)
            else:
                _stream_board(client, live, codes, count)


def _stream_jsonl(live: TickStream, count: int | None, out: IO[str]) -> None:
    seen = 0
    for tick in live:
        out.write(_json.encode(tick).decode() + "\n")
        out.flush()
        seen += 1
        if count is not None and seen >= count:
            return


def _stream_board(client: Client, live: TickStream, codes: list[str], count: int | None) -> None:
    from rich.live import Live

    board = _Board(codes, live)
    with contextlib.suppress(ClientError, httpx.HTTPError):
        catalogue = _catalogue(client)
        board.symbols = {c: catalogue[c] for c in codes if c in catalogue}
    for code in codes:  # the daily open, for the change column; the first tick otherwise
        with contextlib.suppress(ClientError, httpx.HTTPError):
            day = client.bars(code, unit="day", limit=1)
            if day:
                board.opens[code] = day[-1].open
    seen = 0
    console = _console()
    try:
        with Live(board, console=console, refresh_per_second=10, transient=False):
            for tick in live:
                board.update(tick)
                seen += 1
                if count is not None and seen >= count:
                    break
    except KeyboardInterrupt:
        position = board.position
        if position is not None:
            click.echo(f"stopped at {position}: continue with --from {position}", err=True)
        raise


class _Row:
    __slots__ = ("ask", "bid", "direction", "flash_until", "ticks", "ts")

    def __init__(self) -> None:
        self.bid = 0.0
        self.ask = 0.0
        self.ts = 0
        self.ticks = 0
        self.direction = 0
        self.flash_until = 0.0


class _Board:
    """The live quote board: one row per symbol, rendered by rich.Live's refresh thread."""

    flash_seconds: Final = 0.6

    def __init__(self, codes: list[str], live: TickStream) -> None:
        self.codes = codes
        self.live = live
        self.symbols: dict[str, Symbol] = {}
        self.opens: dict[str, float] = {}
        self.rows: dict[str, _Row] = {}
        self.count = 0
        self.position: Position | None = None
        self.last_ts = 0
        self.reconnects = 0
        self._lock = threading.Lock()

    def update(self, tick: Tick) -> None:
        with self._lock:
            row = self.rows.get(tick.symbol)
            if row is None:
                row = self.rows[tick.symbol] = _Row()
                self.opens.setdefault(tick.symbol, tick.mid)
            elif tick.mid != (row.bid + row.ask) / 2:
                row.direction = 1 if tick.mid > (row.bid + row.ask) / 2 else -1
                row.flash_until = time.monotonic() + self.flash_seconds
            row.bid, row.ask, row.ts = tick.bid, tick.ask, tick.ts
            row.ticks += 1
            self.count += 1
            self.position = tick.position
            self.last_ts = tick.ts
            self.reconnects = self.live.reconnects

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, expand=False)
        table.add_column("SYMBOL")
        for column in ("BID", "ASK", "SPREAD", "CHANGE", "CHANGE %", "TICKS"):
            table.add_column(column, justify="right")
        table.add_column("TIME (UTC)")
        now = time.monotonic()
        with self._lock:
            for code in self.codes:
                row = self.rows.get(code)
                if row is None:
                    table.add_row(code, "…", "…", "", "", "", "0", "")
                    continue
                info = self.symbols.get(code)
                decimals = info.decimals if info else None
                mid = (row.bid + row.ask) / 2
                opened = self.opens.get(code, mid)
                change = mid - opened
                pips = change / info.pip if info and info.pip > 0 else None
                trend = "green" if change > 0 else "red" if change < 0 else ""
                flash = ""
                if row.flash_until > now:
                    flash = "bold black on green" if row.direction > 0 else "bold white on red"
                spread = _spread_pips(row.bid, row.ask, info)
                table.add_row(
                    Text(code, style="bold"),
                    Text(_price(row.bid, decimals), style=flash),
                    Text(_price(row.ask, decimals), style=flash),
                    "" if spread is None else f"{spread:.1f}",
                    Text("" if pips is None else f"{pips:+.1f}", style=trend),
                    Text(f"{change / opened * 100:+.3f}%" if opened else "", style=trend),
                    str(row.ticks),
                    _clock(row.ts)[11:],
                )
            count, position = self.count, self.position
        state = self.live.state.value  # safe even once the stream is closed
        lag = (time.time_ns() - self.last_ts) / 1e9 if self.last_ts else None
        status = (
            f"{state} · {count:,} ticks · lag {'-' if lag is None else f'{lag:.2f}s'} · "
            f"{self.reconnects} reconnects · at {position or '-'} · Ctrl-C to stop"
        )
        return Group(table, Text(status, style="dim"))


# -- registration ----------------------------------------------------------------------------


def register(cli: click.Group) -> None:
    """Add ``quote``, ``bars``, ``ticks``, ``convert`` and ``stream`` to the ``tickwire`` group."""
    for command in (quote, bars, ticks, convert, stream):
        cli.add_command(command)
