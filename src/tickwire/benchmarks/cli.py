"""``tickwire bench``: benchmarks against a real server, with a written report.

``tickwire bench rest-vs-ws`` answers "REST polling or a WebSocket stream?" with measurements:
see :mod:`.rest_vs_ws` for what a cell measures and :mod:`.report` for what is written.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NoReturn, TypeVar, cast
from urllib.parse import urlsplit

import click
import httpx

from ..client import ApiError, ClientError, TransportError
from ..client._base import ENV_KEY, derive_stream_url
from .clients import METHODS, Endpoint, Method
from .report import RunInfo, command_line, machine_info, what_this_means, write_report
from .rest_vs_ws import QUICK, BenchConfig, UnknownSymbolsError, run_grid

__all__ = ["bench", "register", "rest_vs_ws"]

_DEFAULTS: Final = BenchConfig()
_COMMAND: Final = "bench rest-vs-ws"

T = TypeVar("T")


@click.group()
def bench() -> None:
    """Benchmarks against a real tickwire server, written up as a report."""


def _unique(values: Iterable[T]) -> tuple[T, ...]:
    """``values`` without repeats, in first-seen order."""
    return tuple(dict.fromkeys(values))


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = _unique(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {text!r}") from None
    if not values or not all(0 < v < math.inf for v in values):  # also refuses NaN
        raise click.BadParameter("expected positive, finite numbers")
    return values


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = _unique(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected integers separated by commas, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise click.BadParameter("expected positive integers")
    return values


def _methods(text: str) -> tuple[Method, ...]:
    names = _unique(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise click.BadParameter(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    return tuple(cast(Method, n) for n in names)


def _symbols(text: str) -> tuple[str, ...]:
    return _unique(s.strip().upper() for s in text.split(",") if s.strip())


def _join(values: tuple[float, ...] | tuple[int, ...] | tuple[str, ...]) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _host_port(url: str, scheme: str, default_port: int) -> tuple[str, int]:
    """Host and port of a ``scheme://HOST[:PORT]`` URL (the benchmark speaks no TLS)."""
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port  # .port raises for a bad port
    except ValueError as exc:
        raise click.UsageError(f"not a URL: {url!r} ({exc})") from None
    if not hostname:
        raise click.UsageError(f"not a URL: {url!r}")
    if parts.scheme != scheme:
        raise click.UsageError(f"{url!r}: only {scheme}:// URLs can be measured")
    return hostname, port or default_port


def _prepare_out(out: Path) -> None:
    """Create ``out`` and check that a file can be written in it, before a long run."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise click.UsageError(f"--out {out}: {exc.strerror or exc}") from None


def _fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and exit ``code``, as the other ``tickwire`` commands do."""
    line = " ".join(str(message).split())
    click.echo(f"tickwire {_COMMAND}: {line}", err=True)
    sys.exit(code)


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, TransportError):
        return f"cannot reach the server: {exc.__cause__ or exc}"
    if isinstance(exc, ApiError):
        text = f"{exc.status} {exc.message or exc.code} ({exc.method} {exc.url})"
        return text + (f" (pass --key or set {ENV_KEY})" if exc.status in (401, 403) else "")
    if isinstance(exc, httpx.HTTPError):
        return f"network error: {exc}"
    return str(exc) or type(exc).__name__


_RUN_ERRORS: Final = (
    ClientError,
    httpx.HTTPError,
    subprocess.SubprocessError,
    OSError,
    RuntimeError,
    TimeoutError,
    UnknownSymbolsError,
)
"""What a run can end with besides a bug: each is reported in one line, without a traceback."""


@bench.command("rest-vs-ws")
@click.option(
    "--rates",
    default=_join(_DEFAULTS.rates),
    show_default=True,
    help="Tick rates to compare, in ticks per second over all symbols (one server each).",
)
@click.option(
    "--clients",
    "clients_text",
    default=_join(_DEFAULTS.clients),
    show_default=True,
    help="Client counts to compare.",
)
@click.option(
    "--methods",
    "methods_text",
    default=",".join(METHODS),
    show_default=True,
    help="Ways of receiving ticks: rest-1s (poll every second), rest-fast (poll every 1/rate "
    "s), ws-ticks, ws-quotes (conflated), sse, feedadv (TraderMade legacy stream).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.5),
    default=_DEFAULTS.duration,
    show_default=True,
    help="Seconds of measurement window per cell.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0),
    default=_DEFAULTS.warmup,
    show_default=True,
    help="Seconds between the clients being ready and the window.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=_DEFAULTS.sample,
    show_default=True,
    help="Streaming clients per cell that decode every tick (missed and staleness come from "
    "them; the others only count ticks and bytes). Every REST client decodes.",
)
@click.option(
    "--quotes-max-rate",
    type=click.FloatRange(min=0.1, max=50),
    default=_DEFAULTS.quotes_max_rate,
    show_default=True,
    help="max_rate of the ws-quotes subscription (updates per second per symbol).",
)
@click.option(
    "--sim-step-ms",
    type=click.FloatRange(min=1, max=1000),
    default=_DEFAULTS.sim_step_ms,
    show_default=True,
    help="Simulator step of the spawned servers: ticks are stamped over a step and published "
    "at its end, so about half of it is in every staleness figure.",
)
@click.option(
    "--symbols",
    default="",
    help="Comma-separated symbols every client asks for. [default: the whole catalogue]",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("rest-vs-ws-report"),
    show_default=True,
    help="Directory for report.md, report.html, results.csv and the plots.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A subset that runs in under a minute: rates "
    f"{_join(QUICK.rates)}, clients {_join(QUICK.clients)}, methods "
    f"{_join(QUICK.methods)}, {QUICK.duration:g} s cells (options given explicitly still win).",
)
@click.option(
    "--url",
    default=None,
    help="Measure this running server (http://HOST:PORT) instead of spawning servers; its tick "
    "rate is measured and --rates is ignored.",
)
@click.option(
    "--stream-url",
    default=None,
    help="With --url: its stream endpoint (ws://HOST:PORT). [default: --url's port + 1]",
)
@click.option(
    "--key",
    envvar=ENV_KEY,
    default=None,
    help="With --url: the API key (needs REST and stream; its rate and connection limits "
    f"apply, and refusals are reported). [env {ENV_KEY}]",
)
@click.option(
    "--server-pid",
    type=click.IntRange(min=1),
    default=None,
    help="With --url: the server's process id on this machine, to measure its CPU time.",
)
@click.pass_context
def rest_vs_ws(
    ctx: click.Context,
    rates: str,
    clients_text: str,
    methods_text: str,
    duration: float,
    warmup: float,
    sample: int,
    quotes_max_rate: float,
    sim_step_ms: float,
    symbols: str,
    out: Path,
    quick: bool,
    url: str | None,
    stream_url: str | None,
    key: str | None,
    server_pid: int | None,
) -> None:
    """REST polling against WebSocket streaming, measured over loopback.

    For every tick rate × client count × method (a cell) it opens fresh connections, measures a
    window of --duration seconds and records: the ticks missed (from positions), staleness p50
    and p99 (receipt minus tick time), bytes on the wire per delivered tick (both directions,
    headers and framing included), server CPU per 1,000 delivered ticks, and requests or
    messages per second. By default each rate gets its own `tickwire serve` child process with
    the simulator in load mode (exactly RATE ticks per second, round-robin over all symbols);
    the default grid (96 cells) takes about 10 minutes.

    \b
    Examples:
      tickwire bench rest-vs-ws --quick
      tickwire bench rest-vs-ws --rates 100 --clients 1,100 --methods rest-1s,ws-ticks
      tickwire bench rest-vs-ws --url http://127.0.0.1:8000 --key "$KEY" --clients 1,10
    """

    def given(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source not in (click.core.ParameterSource.DEFAULT, None)

    if url is None:
        # --key may come from the environment, set for other commands: only refuse it typed
        typed = [
            f"--{name.replace('_', '-')}"
            for name in ("stream_url", "key", "server_pid")
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if typed:
            raise click.UsageError(f"{', '.join(typed)} can only be used with --url")

    base = QUICK if quick else _DEFAULTS
    try:
        config = BenchConfig(
            rates=_floats(rates) if given("rates") else base.rates,
            clients=_ints(clients_text) if given("clients_text") else base.clients,
            methods=_methods(methods_text) if given("methods_text") else base.methods,
            duration=duration if given("duration") else base.duration,
            warmup=warmup if given("warmup") else base.warmup,
            max_grace=base.max_grace,
            sample=sample,
            quotes_max_rate=quotes_max_rate,
            sim_step_ms=sim_step_ms,
            symbols=_symbols(symbols),
            idle_seconds=base.idle_seconds,
        )
    except click.BadParameter as exc:
        raise click.UsageError(str(exc)) from None

    external: Endpoint | None = None
    if url is not None:
        if not key:
            raise click.UsageError("--url needs --key (or TICKWIRE_KEY)")
        host, port = _host_port(url, "http", 80)
        stream_url = stream_url or derive_stream_url(url)
        stream_host, stream_port = _host_port(stream_url, "ws", 80)
        external = Endpoint(host, port, stream_host, stream_port, key)
        config = dataclasses.replace(config, rates=())
        target = f"{url} (stream {stream_url}), measured as it runs"
        cells = len(config.clients) * len(config.methods)
    else:
        target = (
            "one `tickwire serve` child process per rate: simulator load mode "
            f"(`--load-rate RATE --sim-step-ms {config.sim_step_ms:g}`), `--sync none`, no "
            "backfill, no weekend close, a key with rate and connection limits above the load"
        )
        cells = config.cells

    _prepare_out(out)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    started = datetime.now(UTC)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("starting", total=cells)
        count = 0

        def on_cell(method: Method, rate: float, n: int) -> None:
            nonlocal count
            if count:
                progress.advance(task)
            count += 1
            clients = "client " if n == 1 else "clients"
            text = f"cell {count}/{cells}  {method:<9} {rate:>6g} ticks/s × {n:>5,} {clients}"
            progress.update(task, description=text)
            if not console.is_terminal:  # a log, not a bar: one line per cell
                click.echo(text, err=True)

        try:
            results = run_grid(config, external=external, external_pid=server_pid, on_cell=on_cell)
        except _RUN_ERRORS as exc:
            failure: BaseException | None = exc
        else:
            failure = None
            progress.advance(task)
            progress.update(task, description=f"done: {len(results)} cells")
    if failure is not None:  # reported once the progress display has stopped
        _fail(_error_message(failure), 2 if isinstance(failure, UnknownSymbolsError) else 1)

    info = RunInfo(
        command=command_line(),
        started=started,
        finished=datetime.now(UTC),
        config=config,
        target=target,
        machine=machine_info(),
    )
    try:
        files = write_report(results, info, out)
    except OSError as exc:
        _fail(f"cannot write the report in {out}: {exc.strerror or exc}")
    click.echo("What this means:")
    for line in what_this_means(results):
        click.echo(f"  - {line}")
    click.echo("Wrote " + ", ".join(str(f) for f in files))


def register(cli: click.Group) -> None:
    """Add the ``bench`` group to the ``tickwire`` command."""
    cli.add_command(bench)
