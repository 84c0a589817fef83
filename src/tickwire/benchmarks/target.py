"""The server under test: a ``tickwire serve`` child process, or a running server given by URL.

:class:`SpawnedServer` starts ``python -m tickwire serve`` on free loopback ports with the
simulator in load mode (exactly ``load_rate`` ticks per second, round-robin over every symbol),
no backfill, no weekend close and ``--sync none``, in a temporary data directory, with one key
whose limits are high enough that the benchmark measures the transports rather than the rate
limiter. :class:`Control` is the benchmark's own client for health, quotes and ticks (the SDK's
:class:`~tickwire.client.AsyncClient`); its traffic is never counted as the traffic of a measured
client.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from ..access.keys import KEYS_FILE, FileKeyStore
from ..client import AsyncClient, Health
from ..errors import TickwireError
from .clients import Endpoint, TickKey

__all__ = [
    "BENCH_KEY_LIMITS",
    "Control",
    "SpawnedServer",
    "cpu_seconds",
    "free_port",
    "log_tail",
]

BENCH_KEY_LIMITS: Final[Mapping[str, Any]] = {
    "plan": "unlimited",
    "rate": 1_000_000.0,
    "burst": 1_000_000,
    "monthly_quota": None,
    "max_connections": 100_000,
}
"""The benchmark key's limits (:meth:`FileKeyStore.create` arguments): far above any load."""

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(text: str, lines: int = 5) -> str:
    """The last ``lines`` non-blank lines of a log (what a one-line error can carry)."""
    kept = [line for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


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
    """A ``tickwire serve`` child process in load mode; use as a context manager.

    Its temporary directory (data and log) exists from :meth:`start` until :meth:`stop`; a
    :meth:`start` that fails stops the process and deletes the directory before raising.
    """

    load_rate: float
    sim_step_ms: float = 20.0
    startup_timeout: float = 60.0
    port: int = field(default_factory=free_port)
    stream_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""

    @property
    def data_dir(self) -> Path:
        """The server's ``--data-dir`` (inside the temporary directory)."""
        if self._dir is None:
            raise RuntimeError("the server has not been started")
        return self._dir / "data"

    @property
    def log_path(self) -> Path | None:
        """The server's output, while its directory exists."""
        return None if self._dir is None else self._dir / "server.log"

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
        self._dir = Path(tempfile.mkdtemp(prefix="tickwire-bench-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.data_dir.mkdir(parents=True)
        try:
            self.key, _ = FileKeyStore(self.data_dir / KEYS_FILE).create(
                "bench", **BENCH_KEY_LIMITS
            )
        except TickwireError as exc:
            raise RuntimeError(f"cannot create the benchmark's key: {exc}") from exc
        assert self.log_path is not None
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if (exited := self.exited()) is not None:
                raise RuntimeError(exited)
            try:
                health = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).json()
                if health.get("status") == "ok":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the server did not become ready: {log_tail(self.log())}")

    def exited(self) -> str | None:
        """None while the process runs (or before it starts); else why it is gone, with the
        end of its log."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"the server exited with {self.proc.returncode}: {log_tail(self.log())}"

    def log(self) -> str:
        """The server's output so far."""
        path = self.log_path
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and delete its temporary directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> SpawnedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Control:
    """The benchmark's own REST calls (not measured): health, per-symbol seqs, raw ticks."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._client = AsyncClient(f"http://{endpoint.host}:{endpoint.http_port}", endpoint.key)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def health(self) -> Health:
        """``GET /health``."""
        return await self._client.health()

    async def symbols(self) -> list[str]:
        """Every symbol code of the server's catalogue."""
        return [s.code for s in await self._client.symbols()]

    async def seqs(self, symbols: Sequence[str]) -> dict[str, int]:
        """The last published ``seq`` of each symbol (0 before its first tick)."""
        result = dict.fromkeys(symbols, 0)
        for q in await self._client.quotes(symbols):
            result[q.symbol] = q.seq
        return result

    async def wait_store(self, offset: int, *, patience: float = 60.0) -> bool:
        """Wait until the history store holds every tick up to ``offset``; False if it did not
        within ``patience`` seconds (a store writer that fell behind under load)."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if ((await self.health()).store_offset or 0) >= offset:
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
            ticks = await self._client.ticks(
                symbol, start=start_ns // 1_000_000, end=end_ns // 1_000_000 + 1
            )
            for t in ticks:
                found[(symbol, t.ts // 1_000_000, t.bid, t.ask)] = (t.seq, t.ts)
        return found
