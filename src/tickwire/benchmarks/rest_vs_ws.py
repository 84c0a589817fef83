"""REST polling against WebSocket streaming, measured: the grid, one cell, and its figures.

A **cell** is one way of receiving ticks (:data:`~.clients.METHODS`) at one tick rate with one
number of clients. Each cell runs on fresh connections:

1. connect every client, wait until each one is subscribed (or has its first REST answer), then
   let the cell run for ``warmup`` seconds;
2. the **window**: read each symbol's last ``seq`` over REST, snapshot every client's counters,
   the server's CPU time (``/proc/PID/stat``) and the load generator's; wait ``duration``
   seconds; snapshot again and read the seqs again. The ticks *published* in the cell are the
   ticks ``(symbol, seq)`` with a seq between the two readings;
3. the **grace** period lets ticks published just before the window closed arrive: a REST
   poller makes its next request, a conflated stream its next update, and a lossless stream is
   given until its observers have received as many ticks as were published (at most
   ``max_grace`` seconds);
4. the clients are closed and the observers' records decoded.

Figures (:class:`CellResult`): ``missed`` is ``1 − (ticks seen) / (ticks published)`` summed over
the observing clients (every REST client; ``sample`` clients of a stream), where a tick is seen
when its ``(symbol, seq)`` arrived (REST: as a quote) before the end of the grace period.
Staleness is receipt time minus the tick's own time ``t``, for the first sight of each published
tick. Bytes, messages, delivered ticks and CPU are counted over the window only: steady state,
without connection setup.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import uvloop

from ..client import ClientError
from .clients import (
    METHODS,
    Endpoint,
    Method,
    RestPoller,
    Seen,
    StreamClient,
    StreamKind,
    TickKey,
)
from .target import Control, SpawnedServer, cpu_seconds

__all__ = [
    "DEFAULT_CLIENTS",
    "DEFAULT_RATES",
    "MIN_TICKS_FOR_CPU",
    "QUICK",
    "BenchConfig",
    "CellResult",
    "Target",
    "UnknownSymbolsError",
    "measure_rate",
    "raise_open_files_limit",
    "run_grid",
    "run_target",
]

DEFAULT_RATES: Final[tuple[float, ...]] = (1, 10, 100, 1000)
DEFAULT_CLIENTS: Final[tuple[int, ...]] = (1, 10, 100, 1000)
REST_METHODS: Final = frozenset({"rest-1s", "rest-fast"})
SLOW_READING_NS: Final = 500_000_000
"""A seq reading slower than this is flagged in the cell's errors (the server is overloaded)."""
MIN_TICKS_FOR_CPU: Final = 1000
"""Fewest delivered ticks for a CPU-per-tick figure: the process clock counts in 10 ms steps,
so fewer ticks would give a figure made of rounding."""
OPEN_FILES_WANTED: Final = 65_536
"""The soft open-files limit the grid asks for (a cell opens up to one socket per client)."""


class UnknownSymbolsError(ValueError):
    """``symbols`` names symbols the server's catalogue does not have."""


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What to measure and how long; every field has the default of ``tickwire bench``."""

    rates: tuple[float, ...] = DEFAULT_RATES
    """Tick rates (ticks per second over all symbols) of the spawned servers."""
    clients: tuple[int, ...] = DEFAULT_CLIENTS
    """Client counts."""
    methods: tuple[Method, ...] = METHODS
    """Ways of receiving ticks, in the order they are run in each (rate, clients) pair."""
    duration: float = 3.0
    """Seconds of measurement window per cell."""
    warmup: float = 0.5
    """Seconds between the last client being ready and the window."""
    max_grace: float = 2.0
    """Most seconds a lossless stream is given after the window for in-flight ticks."""
    sample: int = 20
    """Streaming clients per cell that decode every tick (the others only count)."""
    quotes_max_rate: float = 5.0
    """``max_rate`` of the ``ws-quotes`` subscription (updates per second per symbol)."""
    rest_interval: float = 1.0
    """Polling interval of ``rest-1s``."""
    sim_step_ms: float = 20.0
    """Simulator wake-up step of the spawned servers (``--sim-step-ms``)."""
    symbols: tuple[str, ...] = ()
    """Symbols every client asks for; empty means the server's whole catalogue."""
    connect_concurrency: int = 50
    """Connections opened at once (the stream port's listen backlog is 100)."""
    ready_timeout: float = 20.0
    """Seconds from the start of a cell for its clients to be ready (later ones are left out)."""
    idle_seconds: float = 2.0
    """Seconds of the server's CPU use measured with no client, per server."""
    cell_timeout: float = 120.0
    """Most seconds one cell may take; a cell over it is recorded as failed."""

    @property
    def cells(self) -> int:
        """How many cells the grid has."""
        return len(self.rates) * len(self.clients) * len(self.methods)


QUICK: Final = BenchConfig(
    rates=(10, 1000),
    clients=(1, 100),
    methods=("rest-1s", "rest-fast", "ws-ticks", "sse"),
    duration=1.5,
    warmup=0.3,
    max_grace=1.0,
    idle_seconds=1.0,
)
"""``--quick``: 2 rates × 2 client counts × 4 methods, 1.5 s windows (under a minute)."""


@dataclass(frozen=True)
class Target:
    """The server a set of cells runs against."""

    endpoint: Endpoint
    pid: int | None
    """Its process id, for its CPU time (None: not on this machine, CPU not measured)."""
    rate: float
    """The tick rate the grid calls it by (the load rate, or the measured rate by URL)."""
    exited: Callable[[], str | None] | None = None
    """For a spawned server: None while its process runs, else why it is gone."""


@dataclass(kw_only=True)
class CellResult:
    """The figures of one cell (one row of ``results.csv``). None means not measurable.

    A failed cell (``failed``) has only its identity, ``connected``, ``cell_s`` and ``errors``;
    every figure keeps its default.
    """

    method: str
    rate: float
    clients: int
    connected: int
    """Clients that were ready when the window opened."""
    observers: int = 0
    """Clients whose every tick was decoded (missed and staleness come from these)."""
    duration_s: float = 0.0
    published: int = 0
    """Ticks of the subscribed symbols published between the two seq readings."""
    measured_rate: float = 0.0
    missed_fraction: float | None = None
    staleness_p50_ms: float | None = None
    staleness_p99_ms: float | None = None
    delivered_ticks: int = 0
    """Ticks received by all clients in the window (REST: quotes not seen before)."""
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_per_tick: float | None = None
    messages: int = 0
    """REST answers, or stream messages carrying ticks, received by all clients in the window."""
    messages_per_s: float = 0.0
    server_cpu_s: float | None = None
    server_idle_cpu_s: float | None = None
    """The server's CPU time with no client over the same duration (its own work)."""
    server_cpu_s_per_1k: float | None = None
    """(server CPU − idle CPU) per 1,000 delivered ticks; None under
    :data:`MIN_TICKS_FOR_CPU` delivered ticks."""
    loadgen_cpu_s: float = 0.0
    loadgen_cpu_frac: float = 0.0
    """Load generator CPU over the window as a fraction of one core."""
    setup_s: float = 0.0
    """Seconds from the start of the cell until every client was ready (or the deadline)."""
    cell_s: float = 0.0
    """Seconds the whole cell took: setup, warm-up, window, grace, analysis."""
    errors: dict[str, int] = field(default_factory=dict)
    """Per kind: HTTP statuses (``429``), close codes, ``lost`` connections, ``not ready``."""
    failed: bool = False
    """The cell could not be measured (it raised or timed out): no figure is meaningful."""

    def errors_text(self) -> str:
        """Errors as ``kind:count`` pairs joined by ``;`` (empty when none)."""
        return ";".join(f"{k}:{v}" for k, v in sorted(self.errors.items()))


Progress = Callable[[Method, float, int], None]


async def run_target(
    target: Target, config: BenchConfig, *, on_cell: Progress | None = None
) -> list[CellResult]:
    """Run every (clients, method) cell of ``config`` against one server; a row per cell.

    Raises :class:`UnknownSymbolsError` before any cell when ``config.symbols`` names a symbol
    the server does not have.
    """
    control = Control(target.endpoint)
    try:
        catalogue = await control.symbols()
        known = set(catalogue)
        unknown = [s for s in config.symbols if s not in known]
        if unknown:
            raise UnknownSymbolsError(
                f"unknown symbol(s) {', '.join(unknown)}: the server has "
                f"{', '.join(catalogue[:10])}{' ...' if len(catalogue) > 10 else ''}"
            )
        symbols = list(config.symbols) or catalogue
        idle = await _idle_cpu(target, config.idle_seconds)
        subscribed_rate = _subscribed_rate(target.rate, symbols, catalogue)
        results: list[CellResult] = []
        for n in config.clients:
            for method in config.methods:
                if on_cell is not None:
                    on_cell(method, target.rate, n)
                cell = _Cell(target, config, control, symbols, method, n, idle, subscribed_rate)
                try:
                    async with asyncio.timeout(config.cell_timeout):
                        results.append(await cell.run())
                except Exception as exc:  # one failed cell must not end a 10-minute run
                    results.append(cell.failed(exc))
                await _settle(control, config.cell_timeout, target.exited)
        return results
    finally:
        await control.aclose()


SETTLE_RETRY_S: Final = 0.1
"""Pause between ``/health`` attempts while the server does not answer."""


async def _settle(
    control: Control, patience: float, exited: Callable[[], str | None] | None = None
) -> None:
    """Wait until the server answers ``/health`` within a second again (after an overload).

    Raises RuntimeError (with why, and the end of its log) once a spawned server's process is
    gone: no later cell could be measured.
    """
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if exited is not None and (why := exited()) is not None:
            raise RuntimeError(why)
        start = time.monotonic()
        try:
            async with asyncio.timeout(max(1.0, deadline - start)):
                await control.health()
        except (TimeoutError, ClientError):
            await asyncio.sleep(SETTLE_RETRY_S)
            continue
        if time.monotonic() - start < 1.0:
            return


async def _idle_cpu(target: Target, seconds: float) -> float | None:
    """The server's CPU seconds per second with no client connected."""
    if target.pid is None:
        return None
    before, start = cpu_seconds(target.pid), time.monotonic()
    await asyncio.sleep(seconds)
    after = cpu_seconds(target.pid)
    if before is None or after is None:
        return None
    return (after - before) / (time.monotonic() - start)


def _subscribed_rate(rate: float, symbols: list[str], catalogue: list[str]) -> float:
    """Ticks per second of the subscribed symbols (sets the ``rest-fast`` interval).

    The simulator's load mode spreads ticks evenly over every symbol, round-robin.
    """
    return rate * len(set(symbols) & set(catalogue)) / max(1, len(catalogue))


class _Cell:
    """One cell: clients, window, grace, figures."""

    def __init__(
        self,
        target: Target,
        config: BenchConfig,
        control: Control,
        symbols: list[str],
        method: Method,
        clients: int,
        idle_cpu: float | None,
        subscribed_rate: float,
    ) -> None:
        self.target = target
        self.config = config
        self.control = control
        self.symbols = symbols
        self.method = method
        self.n = clients
        self.idle_cpu = idle_cpu
        self.rest = method in REST_METHODS
        self.interval = config.rest_interval
        if method == "rest-fast":  # as fast as ticks come, and never slower than rest-1s
            self.interval = min(self.interval, 1.0 / max(subscribed_rate, 1e-9))
        self.pollers: list[RestPoller] = []
        self.streams: list[StreamClient] = []
        self.errors: dict[str, int] = {}
        self.t_start = time.time_ns()
        self.connected = 0

    def failed(self, exc: BaseException) -> CellResult:
        """The row of a cell that could not be measured (every figure None or 0)."""
        self._error(f"cell failed ({type(exc).__name__})")
        return CellResult(
            method=self.method,
            rate=self.target.rate,
            clients=self.n,
            connected=self.connected,
            cell_s=round((time.time_ns() - self.t_start) / 1e9, 3),
            errors=dict(self.errors),
            failed=True,
        )

    def _error(self, kind: str, count: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + count

    async def run(self) -> CellResult:
        self.t_start = time.time_ns()
        try:
            ready = await self._connect()
            self.connected = len(ready)
            self.t_ready = time.time_ns()
            result = await self._measure(ready)
            result.setup_s = round((self.t_ready - self.t_start) / 1e9, 3)
            result.cell_s = round((time.time_ns() - self.t_start) / 1e9, 3)
            return result
        finally:
            everyone: list[RestPoller | StreamClient] = [*self.pollers, *self.streams]
            for client in everyone:
                client.close()
            await asyncio.sleep(0.2)  # let the server see the disconnects before the next cell

    async def _connect(self) -> list[RestPoller | StreamClient]:
        endpoint = self.target.endpoint
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(self.config.connect_concurrency)
        clients: list[RestPoller | StreamClient]
        if self.rest:
            self.pollers = [
                RestPoller(endpoint, self.symbols, interval=self.interval) for _ in range(self.n)
            ]
            clients = list(self.pollers)
            host, port = endpoint.host, endpoint.http_port
        else:
            kind: StreamKind = self.method  # type: ignore[assignment]
            self.streams = [
                StreamClient(
                    kind,
                    endpoint,
                    self.symbols,
                    observer=i < self.config.sample,
                    max_rate=self.config.quotes_max_rate,
                )
                for i in range(self.n)
            ]
            clients = list(self.streams)
            if kind == "sse":
                host, port = endpoint.host, endpoint.http_port
            else:
                host, port = endpoint.stream_host, endpoint.stream_port

        deadline = loop.time() + self.config.ready_timeout

        async def connect(client: RestPoller | StreamClient) -> bool:
            try:
                async with asyncio.timeout_at(deadline):
                    async with gate:
                        await loop.create_connection(lambda: client, host, port)
                        if isinstance(client, RestPoller):
                            await client.warm_up()
                    await asyncio.shield(client.ready)
            except (OSError, ConnectionError, TimeoutError) as exc:
                self._error(f"not ready ({type(exc).__name__})")
                return False
            return True

        ok = await asyncio.gather(*(connect(c) for c in clients))
        ready = [c for c, good in zip(clients, ok, strict=True) if good]
        if self.rest:
            for i, poller in enumerate(self.pollers):
                if ok[i]:
                    # spread the clients' polls evenly over one interval, as independent users
                    poller.start(self.interval * i / max(1, self.n))
        return ready

    async def _measure(self, ready: list[RestPoller | StreamClient]) -> CellResult:
        config = self.config
        clients: list[RestPoller | StreamClient] = [*self.pollers, *self.streams]
        pid = self.target.pid
        await asyncio.sleep(config.warmup)

        asked = time.time_ns()
        seq0 = await self.control.seqs(self.symbols)
        t_seq0 = time.time_ns()
        slow = t_seq0 - asked
        snap0 = [c.counters.snapshot() for c in clients]
        cpu0, lg0, w0 = _cpu(pid), time.process_time(), time.monotonic()
        await asyncio.sleep(config.duration)
        snap1 = [c.counters.snapshot() for c in clients]
        cpu1, lg1, w1 = _cpu(pid), time.process_time(), time.monotonic()
        asked = time.time_ns()
        seq1 = await self.control.seqs(self.symbols)
        t_seq1 = time.time_ns()
        slow = max(slow, t_seq1 - asked)
        if slow > SLOW_READING_NS:
            # the window's edges are only as sharp as the server's answers to these readings
            self._error("slow seq reading (over 0.5 s)")
        published = sum(max(0, seq1[s] - seq0.get(s, 0)) for s in self.symbols)

        observers: list[RestPoller | StreamClient] = [
            c for c in ready if isinstance(c, RestPoller) or c.observer
        ]
        await self._grace(observers, snap0, clients, published)
        t_end = time.time_ns()
        for client in clients:
            client.close()

        resolve = await self._resolver(self.t_start, t_end) if self.method == "feedadv" else None
        seen_total, staleness = 0, list[int]()
        for client in observers:
            records: list[Seen] = (
                client.seen if isinstance(client, RestPoller) else client.analyze(resolve)
            )
            firsts: dict[tuple[str, int], int] = {}
            for symbol, seq, t_ns, recv_ns in records:
                if seq0.get(symbol, 0) < seq <= seq1.get(symbol, 0) and (symbol, seq) not in firsts:
                    firsts[(symbol, seq)] = recv_ns - t_ns
            seen_total += len(firsts)
            staleness += firsts.values()
        for client in clients:
            for kind, count in client.counters.errors.items():
                self._error(kind, count)

        window = w1 - w0
        deltas = np.array(snap1, dtype=np.int64) - np.array(snap0, dtype=np.int64)
        bytes_in, bytes_out, delivered, messages = (int(x) for x in deltas.sum(axis=0))
        server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        idle = None if self.idle_cpu is None else self.idle_cpu * window
        per_1k = None
        if server_cpu is not None and idle is not None and delivered >= MIN_TICKS_FOR_CPU:
            per_1k = (server_cpu - idle) / delivered * 1000
        lat = np.array(staleness, dtype=np.float64) / 1e6
        expected = published * len(observers)
        return CellResult(
            method=self.method,
            rate=self.target.rate,
            clients=self.n,
            connected=len(ready),
            observers=len(observers),
            duration_s=round(window, 3),
            published=published,
            measured_rate=round(published / max(1e-9, (t_seq1 - t_seq0) / 1e9), 2),
            missed_fraction=(1 - seen_total / expected) if expected else None,
            staleness_p50_ms=_round(np.percentile(lat, 50), 3) if lat.size else None,
            staleness_p99_ms=_round(np.percentile(lat, 99), 3) if lat.size else None,
            delivered_ticks=delivered,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            bytes_per_tick=round((bytes_in + bytes_out) / delivered, 2) if delivered else None,
            messages=messages,
            messages_per_s=round(messages / window, 2),
            server_cpu_s=_round(server_cpu, 3),
            server_idle_cpu_s=_round(idle, 3),
            server_cpu_s_per_1k=_round(per_1k, 6),
            loadgen_cpu_s=round(lg1 - lg0, 3),
            loadgen_cpu_frac=round((lg1 - lg0) / window, 4),
            errors=dict(self.errors),
        )

    async def _grace(
        self,
        observers: list[RestPoller | StreamClient],
        snap0: list[tuple[int, int, int, int]],
        clients: list[RestPoller | StreamClient],
        published: int,
    ) -> None:
        """Give ticks published just before the window closed the time to arrive."""
        if self.rest:
            await asyncio.sleep(min(self.interval, self.config.rest_interval) + 0.2)
            return
        if self.method == "ws-quotes":
            await asyncio.sleep(1 / self.config.quotes_max_rate + 0.2)
            return
        start = {id(c): s[2] for c, s in zip(clients, snap0, strict=True)}
        deadline = time.monotonic() + self.config.max_grace
        while time.monotonic() < deadline:
            if all(
                c.counters.ticks - start[id(c)] >= published
                for c in observers
                if isinstance(c, StreamClient) and c.closed is None
            ):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)

    async def _resolver(
        self, start_ns: int, end_ns: int
    ) -> Callable[[TickKey], tuple[int, int] | None]:
        """Place ``/feedadv`` ticks: their journaled seq and time, from ``/v1/ticks``.

        Ticks stamped before the cell started (received while connecting) are placed at seq -1,
        outside any window, without being looked up; a tick in range that is not found is
        left unplaced (counted as ``unmatched``).
        """
        health = await self.control.health()
        if not await self.control.wait_store(health.offset):
            self._error("store behind: some feedadv ticks unplaceable")
        table = await self.control.published(self.symbols, start_ns, end_ns)
        start_ms = start_ns // 1_000_000

        def resolve(key: TickKey) -> tuple[int, int] | None:
            if key[1] < start_ms:
                return (-1, 0)
            return table.get(key)

        return resolve


def _round(value: float | np.floating[Any] | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _cpu(pid: int | None) -> float | None:
    return None if pid is None else cpu_seconds(pid)


async def measure_rate(endpoint: Endpoint, seconds: float = 3.0) -> float:
    """The tick rate of a running server over all symbols, from ``/health`` offsets."""
    control = Control(endpoint)
    try:
        first = (await control.health()).offset
        start = time.monotonic()
        await asyncio.sleep(seconds)
        last = (await control.health()).offset
        return (last - first) / (time.monotonic() - start)
    finally:
        await control.aclose()


def run_grid(
    config: BenchConfig,
    *,
    external: Endpoint | None = None,
    external_pid: int | None = None,
    on_cell: Progress | None = None,
) -> list[CellResult]:
    """Run the whole grid; returns one row per cell, in run order.

    Without ``external``, each rate gets its own spawned server (:class:`SpawnedServer`),
    stopped before the next one starts. With ``external``, the cells run against that server at
    whatever rate it produces (measured first; ``config.rates`` is ignored), and server CPU is
    measured only when ``external_pid`` names its process on this machine.
    """
    raise_open_files_limit()
    results: list[CellResult] = []
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        if external is not None:
            rate = round(runner.run(measure_rate(external)), 1)
            target = Target(external, external_pid, rate)
            return runner.run(run_target(target, config, on_cell=on_cell))
        for rate in config.rates:
            with SpawnedServer(rate, sim_step_ms=config.sim_step_ms) as server:
                target = Target(server.endpoint, server.pid, rate, exited=server.exited)
                results += runner.run(run_target(target, config, on_cell=on_cell))
    return results


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> None:
    """Raise the soft ``RLIMIT_NOFILE`` to ``min(hard, wanted)``: a cell of 1,000 clients opens
    1,000 sockets, over the usual soft limit of 1,024 with the process's own files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
