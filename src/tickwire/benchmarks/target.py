"""The server under test: a ``tickwire serve`` child process, or a running server given by URL.

:class:`SpawnedServer` starts ``python -m tickwire serve`` on free loopback ports with the
simulator in load mode (exactly ``load_rate`` ticks per second, round-robin over every symbol),
no backfill, no weekend close and ``--sync none``, in a temporary data directory, with one key
whose limits are high enough that the benchmark measures the transports rather than the rate
limiter. :class:`Control` is the benchmark's own HTTP client for health, quotes and ticks; its
traffic is never counted as the traffic of a measured client.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from .clients import Endpoint, TickKey

__all__ = [
    "BENCH_KEY_LIMITS",
    "Control",
    "SpawnedServer",
    "cpu_seconds",
    "free_port",
]

BENCH_KEY_LIMITS: Final[tuple[str, ...]] = (
    "--plan",
    "unlimited",
    "--rate",
    "1000000",
    "--burst",
    "1000000",
    "--monthly-quota",
    "unlimited",
    "--max-connections",
    "100000",
)
"""``tickwire keys create`` options of the benchmark's key: limits far above any cell's load."""

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (``/proc``), or None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14, 15)


@dataclass
class SpawnedServer:
    """A ``tickwire serve`` child process in load mode; use as a context manager."""

    load_rate: float
    sim_step_ms: float = 20.0
    startup_timeout: float = 60.0

    def __post_init__(self) -> None:
        self.port = free_port()
        self.stream_port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="tickwire-bench-"))
        self.data_dir = self._dir / "data"
        self.log_path = self._dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""

    @property
    def endpoint(self) -> Endpoint:
        """Where the server listens, with the benchmark's key."""
        return Endpoint("127.0.0.1", self.port, "127.0.0.1", self.stream_port, self.key)

    @property
    def pid(self) -> int | None:
        """The server's process id, while it runs."""
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        """The ``serve`` command line."""
        return [
            sys.executable,
            "-m",
            "tickwire",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--stream-port",
            str(self.stream_port),
            "--data-dir",
            str(self.data_dir),
            "--backfill-days",
            "0",
            "--load-rate",
            f"{self.load_rate:g}",
            "--sim-step-ms",
            f"{self.sim_step_ms:g}",
            "--no-weekend-closed",
            "--sync",
            "none",
            "--log-level",
            "warning",
        ]

    def start(self) -> SpawnedServer:
        """Create the key, start the process and wait until ``/health`` says ``ok``."""
        self.data_dir.mkdir(parents=True)
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "tickwire",
                "keys",
                "create",
                "--name",
                "bench",
                "--data-dir",
                str(self.data_dir),
                *BENCH_KEY_LIMITS,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        self.key = created.stdout.strip().splitlines()[-1]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                health = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).json()
                if health.get("status") == "ok":
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"the server did not become ready:\n{self.log()}")

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and delete its data directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SpawnedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Quote(msgspec.Struct):
    symbol: str
    seq: int


class _Quotes(msgspec.Struct):
    quotes: list[_Quote]


class _RawTick(msgspec.Struct):
    ts: int
    bid: float
    ask: float
    seq: int


class _TicksPage(msgspec.Struct):
    ticks: list[_RawTick]
    next_cursor: str | None = None


class Control:
    """The benchmark's own REST calls (not measured): health, per-symbol seqs, raw ticks."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._client = httpx.AsyncClient(
            base_url=f"http://{endpoint.host}:{endpoint.http_port}",
            headers={"X-API-Key": endpoint.key},
            timeout=30,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def health(self) -> dict[str, Any]:
        """``GET /health``."""
        response = await self._client.get("/health")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def symbols(self) -> list[str]:
        """Every symbol code of the server's catalogue."""
        response = await self._client.get("/v1/symbols")
        response.raise_for_status()
        return [s["code"] for s in response.json()["symbols"]]

    async def seqs(self, symbols: Sequence[str]) -> dict[str, int]:
        """The last published ``seq`` of each symbol (0 before its first tick)."""
        result = {s: 0 for s in symbols}
        for i in range(0, len(symbols), 100):
            part = ",".join(symbols[i : i + 100])
            response = await self._client.get("/v1/quotes", params={"symbols": part})
            response.raise_for_status()
            for q in msgspec.json.decode(response.content, type=_Quotes).quotes:
                result[q.symbol] = q.seq
        return result

    async def wait_store(self, offset: int, *, patience: float = 60.0) -> bool:
        """Wait until the history store holds every tick up to ``offset``; False if it did not
        within ``patience`` seconds (a store writer that fell behind under load)."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if int((await self.health()).get("store_offset", 0)) >= offset:
                return True
            await asyncio.sleep(0.05)
        return False

    async def published(
        self, symbols: Sequence[str], start_ns: int, end_ns: int
    ) -> dict[TickKey, tuple[int, int]]:
        """Journaled ticks between two times: ``(symbol, ts ms, bid, ask) → (seq, ts ns)``.

        This is how ``/feedadv`` ticks, which carry no position, are placed: the legacy ``ts``
        is the tick's time in whole milliseconds, and bid and ask are the journaled doubles.
        """
        found: dict[TickKey, tuple[int, int]] = {}
        for symbol in symbols:
            params: dict[str, str | int] = {
                "from": start_ns // 1_000_000,
                "to": end_ns // 1_000_000 + 1,
                "limit": 10_000,
            }
            while True:
                response = await self._client.get(f"/v1/ticks/{symbol}", params=params)
                response.raise_for_status()
                page = msgspec.json.decode(response.content, type=_TicksPage)
                for t in page.ticks:
                    found[(symbol, t.ts // 1_000_000, t.bid, t.ask)] = (t.seq, t.ts)
                if not page.next_cursor:
                    break
                params["cursor"] = page.next_cursor
        return found
