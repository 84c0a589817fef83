"""The report of ``tickwire bench rest-vs-ws``: Markdown, HTML, ``results.csv`` and plots.

The Markdown and HTML files are rendered from one list of blocks (:func:`build_document`), so
they say the same thing. Every statement of "What this means" is computed from the rows of the
run (:func:`what_this_means`); nothing in it is fixed prose about results. Plots need
matplotlib (the ``plots`` extra); without it the report says that they were skipped.
"""

from __future__ import annotations

import base64
import csv
import html
import math
import os
import platform
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from .. import __version__
from .rest_vs_ws import MIN_TICKS_FOR_CPU, BenchConfig, CellResult

__all__ = [
    "CSV_COLUMNS",
    "RunInfo",
    "build_document",
    "machine_info",
    "make_plots",
    "read_results_csv",
    "render_html",
    "render_markdown",
    "what_this_means",
    "write_report",
    "write_results_csv",
]

CSV_COLUMNS: Final[tuple[str, ...]] = (
    "method",
    "rate",
    "clients",
    "connected",
    "observers",
    "duration_s",
    "published",
    "measured_rate",
    "missed_fraction",
    "staleness_p50_ms",
    "staleness_p99_ms",
    "delivered_ticks",
    "bytes_in",
    "bytes_out",
    "bytes_per_tick",
    "messages",
    "messages_per_s",
    "server_cpu_s",
    "server_idle_cpu_s",
    "server_cpu_s_per_1k",
    "loadgen_cpu_s",
    "loadgen_cpu_frac",
    "setup_s",
    "cell_s",
    "errors",
    "failed",
)
"""The columns of ``results.csv``, one row per cell (empty: not measurable)."""

SATURATED: Final = 0.9
"""Load generator CPU (fraction of a core) above which a cell's figures are flagged."""


@dataclass(frozen=True)
class RunInfo:
    """Where, when and how the run was made."""

    command: str
    started: datetime
    finished: datetime
    config: BenchConfig
    target: str
    """What was measured: the spawned servers' settings, or the URL."""
    machine: dict[str, str] = field(default_factory=dict)


def machine_info() -> dict[str, str]:
    """Cores, CPU model, memory, OS, Python and tickwire versions of this machine."""
    info = {
        "cores": str(os.cpu_count() or "?"),
        "cpu": "?",
        "memory": "?",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "tickwire": __version__,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory"] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    return info


# -- CSV ----------------------------------------------------------------------------------------


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # exact: reading the file back gives the same report
    return str(value)


def write_results_csv(results: Sequence[CellResult], path: Path) -> None:
    """One row per cell, columns :data:`CSV_COLUMNS`; floats written exactly (``repr``)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            row = [
                r.errors_text() if name == "errors" else _csv_value(getattr(r, name))
                for name in CSV_COLUMNS
            ]
            writer.writerow(row)


def read_results_csv(path: Path) -> list[CellResult]:
    """The rows of a ``results.csv`` written by :func:`write_results_csv`."""
    ints = {"clients", "connected", "observers", "published", "delivered_ticks"}
    ints |= {"bytes_in", "bytes_out", "messages"}
    results = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            values: dict[str, object] = {}
            if "failed" not in row:  # written before the column: a failed cell had no window
                row["failed"] = str(not float(row["duration_s"] or 0))
            for name in CSV_COLUMNS:
                raw = row[name]
                if name == "method":
                    values[name] = raw
                elif name == "errors":
                    pairs = (p.rsplit(":", 1) for p in raw.split(";") if p)
                    values[name] = {k: int(v) for k, v in pairs}
                elif name == "failed":
                    values[name] = raw == "True"
                elif name in ints:
                    values[name] = int(raw)
                else:
                    values[name] = float(raw) if raw else None
            results.append(CellResult(**values))  # type: ignore[arg-type]
    return results


# -- numbers as text ----------------------------------------------------------------------------


def pct(fraction: float | None) -> str:
    """A fraction as a percentage: ``0%``, ``0.4%``, ``50%``, ``n/a``."""
    if fraction is None or math.isnan(fraction):
        return "n/a"
    value = fraction * 100
    if value == 0:
        return "0%"
    if abs(value) < 0.1:
        return f"{value:.2f}%"
    if abs(value) < 10:
        return f"{value:.1f}%"
    return f"{value:.0f}%"


def num(value: float | None, unit: str = "") -> str:
    """A figure with about three significant digits and thousands separators."""
    if value is None or math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    elif magnitude == 0:
        text = "0"
    else:
        text = f"{value:.2g}"
    return text + unit


def rate_text(rate: float) -> str:
    """A tick rate: ``1,000``."""
    return f"{rate:,.0f}" if rate == int(rate) else f"{rate:,.1f}"


def per_second(rate: float) -> str:
    """A tick rate with its unit: ``1 tick/s``, ``1,000 ticks/s``."""
    return f"{rate_text(rate)} tick{'' if rate == 1 else 's'}/s"


def ms_per_1k(result: CellResult) -> float | None:
    """Server CPU milliseconds per 1,000 delivered ticks, above the idle server."""
    return None if result.server_cpu_s_per_1k is None else result.server_cpu_s_per_1k * 1000


# -- what this means ----------------------------------------------------------------------------


class _Grid:
    def __init__(self, results: Sequence[CellResult]) -> None:
        self.results = list(results)
        self.cells = {(r.method, r.rate, r.clients): r for r in results}
        self.rates = sorted({r.rate for r in results})
        self.clients = sorted({r.clients for r in results})
        self.methods = list(dict.fromkeys(r.method for r in results))

    def get(self, method: str, rate: float, clients: int) -> CellResult | None:
        return self.cells.get((method, rate, clients))

    def of(self, method: str) -> list[CellResult]:
        return [r for r in self.results if r.method == method]


def _where(r: CellResult) -> str:
    return f"{r.clients:,} client{'s' if r.clients != 1 else ''} × {per_second(r.rate)}"


def what_this_means(results: Sequence[CellResult]) -> list[str]:
    """Statements computed from the rows; each one is left out when its data is missing."""
    grid = _Grid(results)
    if not grid.results:
        return ["No cell was measured."]
    out: list[str] = []
    first_clients = grid.clients[0]
    ref_rate = 100.0 if 100.0 in grid.rates else grid.rates[len(grid.rates) // 2]
    who = f"{first_clients:,} client{'s' if first_clients != 1 else ''}"

    rest1 = [grid.get("rest-1s", rate, first_clients) for rate in grid.rates]
    rest1_rows = [r for r in rest1 if r is not None and r.missed_fraction is not None]
    if rest1_rows:
        parts = [f"{pct(r.missed_fraction)} at {per_second(r.rate)}" for r in rest1_rows]
        ref = next((r for r in rest1_rows if r.rate == ref_rate), rest1_rows[-1])
        out.append(
            f"With {who}, REST polling every second missed {_join(parts)} (of the ticks "
            f"published); at {per_second(ref.rate)} the quotes it did get were "
            f"{num(ref.staleness_p50_ms)} ms old at the median and {num(ref.staleness_p99_ms)} ms "
            f"at p99."
        )

    for method in ("ws-ticks", "sse", "feedadv"):
        rows = [r for r in grid.of(method) if r.missed_fraction is not None]
        if not rows:
            continue
        clean = [r for r in rows if r.missed_fraction == 0]
        p99s = [r for r in rows if r.staleness_p99_ms is not None]
        text = f"`{method}` missed no tick in {len(clean)} of {_cells(len(rows))}"
        lossy = [r for r in rows if r.missed_fraction]
        if lossy:
            worst = max(lossy, key=lambda r: r.missed_fraction or 0)
            text += f" (worst: {pct(worst.missed_fraction)} at {_where(worst)})"
        if len(p99s) == 1:
            text += f"; its p99 staleness was {num(p99s[0].staleness_p99_ms)} ms"
        elif p99s:
            low = min(p99s, key=lambda r: r.staleness_p99_ms or 0)
            high = max(p99s, key=lambda r: r.staleness_p99_ms or 0)
            text += (
                f"; its p99 staleness ranged from {num(low.staleness_p99_ms)} ms "
                f"({_where(low)}) to {num(high.staleness_p99_ms)} ms ({_where(high)})"
            )
        out.append(text + ".")

    fast = grid.get("rest-fast", ref_rate, first_clients)
    ws = grid.get("ws-ticks", ref_rate, first_clients)
    if fast is not None and ws is not None and fast.bytes_per_tick and ws.bytes_per_tick:
        ratio = fast.bytes_per_tick / ws.bytes_per_tick
        per_client = fast.messages_per_s / max(1, fast.connected)
        out.append(
            f"Polling as fast as needed (`rest-fast`) at {per_second(ref_rate)} with "
            f"{who} took {num(per_client)} requests/s per client, missed "
            f"{pct(fast.missed_fraction)} and moved {num(fast.bytes_per_tick)} bytes per "
            f"delivered tick: {num(ratio)}× the {num(ws.bytes_per_tick)} bytes per tick of "
            f"`ws-ticks`."
        )

    top_rate, top_clients = grid.rates[-1], grid.clients[-1]
    fast_top = grid.get("rest-fast", top_rate, top_clients)
    ws_top = grid.get("ws-ticks", top_rate, top_clients)
    if fast_top is not None and (top_rate, top_clients) != (ref_rate, first_clients):
        per_client = fast_top.messages_per_s / max(1, fast_top.connected)
        text = (
            f"At {_where(fast_top)}, fast polling got {num(fast_top.messages_per_s)} answers/s "
            f"in all ({num(per_client)} per client per second), missed "
            f"{pct(fast_top.missed_fraction)} and its p99 staleness was "
            f"{num(fast_top.staleness_p99_ms)} ms"
        )
        if ws_top is not None:
            text += (
                f"; `ws-ticks` missed {pct(ws_top.missed_fraction)} with p99 "
                f"{num(ws_top.staleness_p99_ms)} ms"
            )
        out.append(text + ".")

    cpu = _cpu_statement(grid)
    if cpu:
        out.append(cpu)

    quotes = [r for r in grid.of("ws-quotes") if r.missed_fraction is not None]
    if quotes:
        worst = max(quotes, key=lambda r: r.missed_fraction or 0)
        out.append(
            f"The conflated `ws-quotes` channel skipped up to {pct(worst.missed_fraction)} of the "
            f"ticks ({_where(worst)}), by design: it sends each symbol's latest quote at most "
            f"max_rate times per second; its p99 staleness there was "
            f"{num(worst.staleness_p99_ms)} ms."
        )

    costs = [
        r
        for m in grid.methods
        if (r := grid.get(m, ref_rate, first_clients)) is not None and r.bytes_per_tick
    ]
    if len(costs) >= 2:
        costs.sort(key=lambda r: r.bytes_per_tick or 0)
        parts = [f"`{r.method}` {num(r.bytes_per_tick)}" for r in costs]
        out.append(
            f"Bytes on the wire per delivered tick at {per_second(ref_rate)} with "
            f"{who}, both directions, headers and framing included: {', '.join(parts)}."
        )

    failed = [r for r in grid.results if r.failed]
    for r in failed:
        out.append(
            f"`{r.method}` could not be measured at {_where(r)}: "
            f"{', '.join(sorted(r.errors)) or 'no figures'}, with {r.connected:,} of "
            f"{r.clients:,} clients connected after {num(r.cell_s)} s."
        )
    busy = [r for r in grid.results if r.loadgen_cpu_frac > SATURATED]
    behind = _fell_behind(grid)
    errors = [r for r in grid.results if r.errors and not r.failed]
    short = [r for r in grid.results if r.connected < r.clients and not r.failed]
    caveats = []
    if busy:
        caveats.append(
            f"the load generator used more than {SATURATED:.0%} of a core in {len(busy)} of "
            f"{_cells(len(grid.results))} (e.g. `{busy[0].method}` at {_where(busy[0])}), so "
            f"receipt times there include its own queueing"
        )
    if behind:
        worst = min(behind, key=lambda r: r.measured_rate / max(r.rate, 1e-9))
        caveats.append(
            f"the server's own feed fell behind in {_cells(len(behind))}: it published "
            f"{num(worst.measured_rate)} ticks/s instead of about {rate_text(worst.rate)} "
            f"during `{worst.method}` at {_where(worst)}, because serving the clients took its "
            "event loop"
        )
    if short:
        caveats.append(f"not every client connected in {_cells(len(short))}")
    if errors:
        kinds = sorted({k for r in errors for k in r.errors})
        caveats.append(
            f"{_cells(len(errors))} had errors or flags ({', '.join(kinds)}; see the "
            "`errors` column)"
        )
    if caveats:
        out.append("Caveats from this run: " + "; ".join(caveats) + ".")
    else:
        out.append(
            "No cell had an error or a missing client, and the load generator stayed under "
            f"{SATURATED:.0%} of a core in every cell."
        )
    return out


def _fell_behind(grid: _Grid) -> list[CellResult]:
    """Cells whose published rate was under 80% of the median of the cells at the same rate."""
    measured = [r for r in grid.results if not r.failed]
    typical = {
        rate: statistics.median([r.measured_rate for r in measured if r.rate == rate] or [0.0])
        for rate in grid.rates
    }
    return [r for r in measured if r.measured_rate < 0.8 * typical[r.rate]]


def _cpu_statement(grid: _Grid) -> str | None:
    """Server CPU per delivered tick, REST fast polling against ws-ticks, at the busiest pair."""
    pairs = [
        (f, w)
        for rate in grid.rates
        for n in grid.clients
        if (f := grid.get("rest-fast", rate, n)) is not None
        and (w := grid.get("ws-ticks", rate, n)) is not None
        and f.server_cpu_s_per_1k is not None
        and w.server_cpu_s_per_1k is not None
    ]
    if not pairs:
        return None
    fast, ws = max(pairs, key=lambda p: p[1].delivered_ticks)

    def cost(r: CellResult) -> str:
        value = ms_per_1k(r)
        if value is None or value <= 0:
            return "~0 ms (not above idle: within the noise)"
        return f"{num(value)} ms"

    text = (
        f"At {_where(ws)} the server spent, per 1,000 delivered ticks, {cost(fast)} of CPU on "
        f"`rest-fast` and {cost(ws)} on `ws-ticks`"
    )
    a, b = ms_per_1k(fast), ms_per_1k(ws)
    if a is not None and b is not None and a > 0 and b > 0:
        text += f" ({num(a / b)}×)"
    return text + "."


def _cells(n: int) -> str:
    return f"{n:,} cell" + ("" if n == 1 else "s")


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# -- documents ----------------------------------------------------------------------------------


@dataclass
class Heading:
    """A heading."""

    level: int
    text: str


@dataclass
class Paragraph:
    """A paragraph; inline code in backticks."""

    text: str


@dataclass
class Bullets:
    """A bulleted list."""

    items: list[str]


@dataclass
class Table:
    """A table: header row and body rows, the first column left-aligned, the others right."""

    header: list[str]
    rows: list[list[str]]


@dataclass
class Code:
    """A code block."""

    text: str


@dataclass
class Image:
    """A picture, by file name relative to the report."""

    path: Path
    alt: str


Block = Heading | Paragraph | Bullets | Table | Code | Image


def _pivot(grid: _Grid, cell: Callable[[CellResult], str]) -> Table:
    header = ["clients", "method", *(f"{rate_text(rate)}/s" for rate in grid.rates)]
    rows = []
    for n in grid.clients:
        for method in grid.methods:
            values = [
                cell(r) if (r := grid.get(method, rate, n)) is not None else ""
                for rate in grid.rates
            ]
            if any(values):
                rows.append([f"{n:,}", f"`{method}`", *values])
    return Table(header, rows)


def _staleness(r: CellResult) -> str:
    if r.staleness_p50_ms is None:
        return "n/a"
    return f"{num(r.staleness_p50_ms)} / {num(r.staleness_p99_ms)}"


def _cpu_cell(r: CellResult) -> str:
    value = ms_per_1k(r)
    if value is None:
        return "n/a"
    return "~0" if value <= 0 else num(value)


def _cpu_total(r: CellResult) -> str:
    if r.server_cpu_s is None or not r.duration_s:
        return "n/a"
    text = f"{r.server_cpu_s / r.duration_s:.0%}"
    if r.server_idle_cpu_s is not None:
        text += f" ({r.server_idle_cpu_s / r.duration_s:.0%})"
    return text


def _errors(r: CellResult) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items())) or "none"


def build_document(
    results: Sequence[CellResult], info: RunInfo, plots: Sequence[Path] | None
) -> list[Block]:
    """The report as blocks (rendered by :func:`render_markdown` and :func:`render_html`)."""
    grid = _Grid(results)
    config = info.config
    m = info.machine
    blocks: list[Block] = [
        Heading(1, "REST polling vs WebSocket streaming, measured"),
        Paragraph(
            f"Generated by `tickwire bench rest-vs-ws` on {info.started:%Y-%m-%d %H:%M} UTC "
            f"({(info.finished - info.started).total_seconds():.0f} s). Every figure below comes "
            "from this run; `results.csv` has the raw figures of every cell."
        ),
        Code(info.command),
        Paragraph(
            f"Machine: {m.get('cores', '?')} cores ({m.get('cpu', '?')}), "
            f"{m.get('memory', '?')} of memory, {m.get('os', '?')}, {m.get('python', '?')}, "
            f"tickwire {m.get('tickwire', '?')}. Server: {info.target}. The server and the load "
            "generator share the machine and talk over loopback."
        ),
        Paragraph(
            "Reproduce with `tickwire bench rest-vs-ws` (add `--quick` for a one-minute subset, "
            "`--help` for the options); `--url`, `--stream-url` and `--key` measure a server "
            "that is already running."
        ),
        Heading(2, "What this means"),
        Bullets(what_this_means(results)),
        Heading(2, "How it was measured"),
        Bullets(
            [
                "`rest-1s`: `GET /v1/quotes?symbols=…` every "
                f"{config.rest_interval:g} s per client, the clients' polls spread evenly "
                "over the interval; a quote whose `seq` the client had not seen is a delivered "
                "tick.",
                "`rest-fast`: the same request every 1/rate seconds (the subscribed symbols' "
                "tick rate), one request in flight per client: back-to-back when answers take "
                "longer than that.",
                "`ws-ticks`: the native stream's lossless `ticks` channel "
                "(`ws://HOST:STREAM_PORT/v1/stream`).",
                f"`ws-quotes`: the native `quotes` channel, conflated to max_rate "
                f"{config.quotes_max_rate:g} updates per second per symbol.",
                "`sse`: Server-Sent Events, `GET /v1/sse?symbols=…&channel=ticks`.",
                "`feedadv`: the TraderMade-compatible legacy stream `/feedadv`, one tick per "
                "frame, without positions: its ticks are placed by (symbol, ms time, bid, ask) "
                "among the journaled ticks read back from `GET /v1/ticks/{symbol}`.",
                f"Every client asks for the same {_symbols_text(config)}. A cell runs "
                f"{config.duration:g} s of window after {config.warmup:g} s of warm-up, on "
                "fresh connections. The ticks published in the window are those whose per-symbol "
                "`seq` lies between two readings of `/v1/quotes` at its start and end.",
                "Missed = 1 − distinct published ticks seen / ticks published, over the observing "
                "clients (every REST client; the first "
                f"{config.sample} clients of a stream, which decode every tick; the others count "
                "ticks by searching the raw bytes). A tick counts as seen if it arrives before "
                "the end of a grace period after the window (one more poll, one more conflated "
                "update, or, for lossless streams, until the ticks are in, at most "
                f"{config.max_grace:g} s).",
                "Staleness = receipt time (client wall clock) − the tick's own time `t`, for the "
                "first sight of each published tick. "
                + (
                    "The spawned server's simulator wakes every "
                    f"{config.sim_step_ms:g} ms and stamps the ticks due evenly over the step "
                    f"just ended, so {config.sim_step_ms / 2:g} to {config.sim_step_ms:g} ms of "
                    "every figure is the feed's pacing (the whole step at low rates, where a step "
                    "holds one tick stamped at its start)."
                    if config.rates
                    else "Whatever lies between the feed's time stamp and the publication (the "
                    "server's feed pacing) is part of every figure."
                ),
                "Bytes are counted on the client sockets, both directions: HTTP heads, chunked "
                "framing, WebSocket frame headers and masks, payloads; not TCP/IP headers. Bytes, "
                "delivered ticks, messages and CPU cover the window only (steady state: no "
                "connection setup, no subscription).",
                "Server CPU is user + system time of the server process (`/proc/PID/stat`) over "
                "the window, minus what the same server used with no client (its simulator, "
                "journal and store), per 1,000 ticks delivered to all clients. Small differences "
                "are within the noise of a 10 ms clock tick and a shared machine.",
                "The load generator is one uvloop process with hand-written clients on raw "
                "asyncio connections; its CPU is reported per cell.",
            ]
        ),
        Heading(2, "Results"),
        Paragraph(
            "Rows are client counts and methods, columns are tick rates over all symbols. "
            "`n/a`: nothing to measure (no tick published or none delivered)."
        ),
        Heading(3, "Missed ticks (% of published)"),
        _pivot(grid, lambda r: pct(r.missed_fraction)),
        Heading(3, "Staleness, p50 / p99 (ms)"),
        _pivot(grid, _staleness),
        Heading(3, "Bytes on the wire per delivered tick (both directions)"),
        _pivot(grid, lambda r: num(r.bytes_per_tick)),
        Heading(3, "Server CPU per 1,000 delivered ticks, above idle (ms)"),
        Paragraph(
            "`~0`: not above the idle server's own use (noise); `n/a`: fewer than "
            f"{MIN_TICKS_FOR_CPU:,} ticks delivered in the window, too few for a 10 ms CPU clock."
        ),
        _pivot(grid, _cpu_cell),
        Heading(3, "Server CPU during the window (% of one core, idle server in brackets)"),
        _pivot(grid, _cpu_total),
        Heading(3, "Requests (REST) or messages (streams) per second, all clients"),
        _pivot(grid, lambda r: num(r.messages_per_s)),
        Heading(3, "Load generator CPU (% of one core) and errors"),
        _pivot(grid, lambda r: f"{r.loadgen_cpu_frac:.0%}; {_errors(r)}"),
    ]
    blocks.append(Heading(2, "Plots"))
    if plots is None:
        blocks.append(
            Paragraph(
                "Plots were skipped: matplotlib is not installed (`pip install 'tickwire[plots]'`)."
            )
        )
    else:
        blocks += [Image(p, p.stem) for p in plots]
    return blocks


def _symbols_text(config: BenchConfig) -> str:
    if not config.symbols:
        return "symbols: every symbol of the catalogue, which the load-mode simulator ticks in turn"
    return f"{len(config.symbols)} symbol(s): {', '.join(config.symbols)}"


# -- rendering ----------------------------------------------------------------------------------


def render_markdown(blocks: Iterable[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown."""
    out: list[str] = []
    for block in blocks:
        match block:
            case Heading(level, text):
                out.append("#" * level + " " + text)
            case Paragraph(text):
                out.append(text)
            case Bullets(items):
                out.append("\n".join(f"- {item}" for item in items))
            case Table(header, rows):
                lines = ["| " + " | ".join(header) + " |"]
                lines.append("|" + "|".join([":--", *["--:"] * (len(header) - 1)]) + "|")
                lines += ["| " + " | ".join(row) + " |" for row in rows]
                out.append("\n".join(lines))
            case Code(text):
                out.append(f"```console\n$ {text}\n```")
            case Image(path, alt):
                out.append(f"![{alt}]({path.name})")
    return "\n\n".join(out) + "\n"


_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    return _CODE.sub(r"<code>\1</code>", html.escape(text, quote=False))


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #1b1b1b; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; }
td:not(:first-child), th:not(:first-child) { text-align: right; }
td:nth-child(2), th:nth-child(2) { text-align: left; }
th { background: #f2f2f2; }
code { background: #f4f4f4; padding: 0 0.2rem; }
pre { background: #f4f4f4; padding: 0.6rem; overflow-x: auto; }
img { max-width: 100%; }
"""


def render_html(blocks: Iterable[Block], base: Path) -> str:
    """The blocks as one self-contained HTML page (pictures inlined from ``base``)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>REST polling vs WebSocket streaming</title>",
        f"<style>{_STYLE}</style></head><body>",
    ]
    for block in blocks:
        match block:
            case Heading(level, text):
                out.append(f"<h{level}>{_inline(text)}</h{level}>")
            case Paragraph(text):
                out.append(f"<p>{_inline(text)}</p>")
            case Bullets(items):
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            case Table(header, rows):
                head = "".join(f"<th>{_inline(h)}</th>" for h in header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                    for row in rows
                )
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            case Code(text):
                out.append(f"<pre><code>$ {html.escape(text)}</code></pre>")
            case Image(path, alt):
                data = base64.b64encode((base / path.name).read_bytes()).decode()
                out.append(
                    f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'
                )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- plots --------------------------------------------------------------------------------------


def make_plots(results: Sequence[CellResult], out_dir: Path) -> list[Path] | None:
    """Missed, staleness and cost against the tick rate, one panel per client count.

    Returns the PNG files written, or None when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    grid = _Grid(results)
    if not grid.results:
        return []
    panels: list[tuple[str, str, list[tuple[str, Callable[[CellResult], float | None], str]]]] = [
        ("missed", "missed (% of published)", [("", _missed_pct, "-")]),
        (
            "staleness",
            "staleness (ms, log): p50 dashed, p99 solid",
            [
                ("p50", lambda r: r.staleness_p50_ms, "--"),
                ("p99", lambda r: r.staleness_p99_ms, "-"),
            ],
        ),
        (
            "bytes_per_tick",
            "bytes per delivered tick (log)",
            [("", lambda r: r.bytes_per_tick, "-")],
        ),
        (
            "server_cpu",
            "server CPU ms per 1,000 delivered ticks (log)",
            [("", ms_per_1k, "-")],
        ),
    ]
    colors = dict(
        zip(grid.methods, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False)
    )
    written = []
    for name, label, series in panels:
        fig, axes = plt.subplots(
            1,
            len(grid.clients),
            figsize=(3.6 * len(grid.clients) + 1, 3.4),
            squeeze=False,
            sharey=True,
        )
        for ax, n in zip(axes[0], grid.clients, strict=True):
            for method in grid.methods:
                for _, value, style in series:
                    points = [
                        (rate, v)
                        for rate in grid.rates
                        if (r := grid.get(method, rate, n)) is not None
                        and (v := value(r)) is not None
                        and math.isfinite(v)
                        and (name == "missed" or v > 0)
                    ]
                    if points:
                        xs, ys = zip(*points, strict=True)
                        ax.plot(
                            xs,
                            ys,
                            style,
                            marker="o",
                            ms=3,
                            color=colors.get(method),
                            label=method if style == "-" else None,
                        )
            ax.set_xscale("log")
            if name != "missed":
                ax.set_yscale("log")
            ax.set_title(f"{n:,} client{'s' if n != 1 else ''}")
            ax.set_xlabel("ticks per second")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel(label)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", fontsize=8)
        fig.tight_layout(rect=(0, 0, 0.88, 1))
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _missed_pct(r: CellResult) -> float | None:
    return None if r.missed_fraction is None else r.missed_fraction * 100


# -- all of it ----------------------------------------------------------------------------------


def write_report(results: Sequence[CellResult], info: RunInfo, out_dir: Path) -> list[Path]:
    """Write ``results.csv``, the plots, ``report.md`` and ``report.html``; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    write_results_csv(results, csv_path)
    plots = make_plots(results, out_dir)
    blocks = build_document(results, info, plots)
    md_path = out_dir / "report.md"
    md_path.write_text(render_markdown(blocks))
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(blocks, out_dir))
    return [md_path, html_path, csv_path, *(plots or [])]


def command_line() -> str:
    """This process's command line, as typed (program name shortened to ``tickwire``)."""
    import shlex

    args = sys.argv[1:]
    prog = Path(sys.argv[0]).name
    if prog in ("__main__.py", "tickwire") or prog.startswith("python"):
        prog = "tickwire"
    return shlex.join([prog, *args])
