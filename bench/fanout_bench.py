"""Stream fan-out: tickwire's gateway against peer servers, in one run, with real sockets.

Every point starts one server and one or more load-generator processes
(:mod:`bench.fanout_loadgen`) on this machine (2 vCPU, shared; no CPU pinning unless ``--pin``),
connects N clients, subscribes them all at once, lets it run, then measures a window. Servers:

* ``tickwire``: ``python -m tickwire serve`` with the simulator in load mode (exactly R ticks/s
  round-robin over the catalogue's 49 symbols, emitted in wake-ups of 1 ms), ``--sync none``,
  ``--backfill-days 0``; clients on the native ``/v1/stream`` (``subscribe`` ``ticks``, no
  snapshot);
* ``feedadv``: the same tickwire server, clients on TraderMade's legacy ``/feedadv`` (login
  with the key and a comma list of symbols; one tick per WebSocket frame, no position, so loss
  is not checkable per tick: its sinks count frames exactly, its observers time the ticks);
* ``node_batched``: Node ``ws``, batched like tickwire (one frame per client per batch, spliced
  from each symbol's ticks encoded once; ``bench/fanout_peers/node_ws.js``);
* ``tcp_ceiling``: bare asyncio TCP, the same pre-encoded ticks coalesced per client, no
  WebSocket, no protocol (``bench/fanout_peers/tcp_ceiling.py``);
* ``node_single``: Node ``ws``, one tick per frame, ``client.send`` per client per tick;
* ``naive_ws``: Python websockets, ``await ws.send(json.dumps(tick))`` per client per tick
  (``bench/fanout_peers/naive_ws.py``).

The peers have no journal or simulator: each generates the same kind of ticks in process
(``bench/fanout_peers/ticksource.py`` and its copy in ``node_ws.js``: the simulator's load mode,
with the same 49 symbols, rate, wake-ups, times, offsets and seqs), starting once every
client is subscribed. tickwire does more per tick (simulation, journal, store writer, two live
states) in the same process. Its simulator runs from the start, but clients subscribe only once
all are connected, so no server streams to early clients while later ones connect.

Cells: mix ``all`` (every client takes all 49 symbols) and ``random`` (each a random 5-10, the
same draw for every server), at N = 100, 1,000 and 5,000, with R chosen per cell (``RATES``);
offered deliveries/s = R × the clients' share of symbols. Two stress cells run the batched
servers only, plus the naive server at 100 clients (where the standard cell caps tickwire by the
offered load). ``--quick``: N = 100 and 1,000, all symbols, 3 s windows.

What is measured, per point (see :mod:`bench.fanout_loadgen` for the client side):

* delivered ticks/s: ticks received by all clients in the window, divided by its length;
* latency p50/p99/max: receipt minus the tick's emission (the wake-up that emitted it,
  estimated from ``t``), on a sample of "observer" connections that decode every tick after the
  run; for tickwire this is journal-to-client plus the commit. ``age`` = receipt − ``t`` (adds
  the simulator's own stamping within the step) is in the JSON results;
* loss: per-symbol ``q`` gaps on observers, plus the exact tick count check of every other
  connection between two frames (``sink missing``); duplicates likewise;
* CPU: each process's CPU time over the window from ``/proc/PID/stat`` (100 % = one core); the
  machine's irq/softirq time, kernel threads, and other user processes (a point is redone once
  when those used more than 30 % of a core); the server's minor page faults.

Also measured: a client resuming 100,000 ticks back (subscribe with ``from``; time from the
subscribe to ``resume`` ``live``, the replay checked gap-free), from the ring and, with a small
``--ring-ticks``, from the journal; and server memory per idle connection (RSS delta /
connections, authenticated but not subscribed).

**The wake-up step** is 1 ms by default, as in ``../shared/measurements/fanout.md``: with long
steps (``--step-ms 100``) each wake-up moves R/10 ticks to every client at once (~100 MB at
10 M/s), which takes tens of ms on loopback for any server, so latency then measures the step.
``--step-ms`` runs every source with another step (tickwire with ``--sim-step-ms``).

    python -m bench.fanout_bench                 # grid, resume and memory (~11 min)
    python -m bench.fanout_bench --quick         # 100 and 1,000 clients, all symbols (~70 s)
    python -m bench.fanout_bench --tiny          # 10 clients, tickwire and Node: seconds
    python -m bench.fanout_bench --only resume   # one part: grid, resume or memory
    python -m bench.fanout_bench --clients 1000 --mixes random --servers tickwire,node_batched
    python -m bench.fanout_bench --clients 100,1000 --step-ms 100 --servers tickwire,node_batched

The three parts are separate workloads with their own results: ``bench/results/fanout.json``
(the grid), ``resume.json`` and ``memory.json`` (see :mod:`bench.results_io`; ``--out DIR``
puts them elsewhere). The servers' logs go to ``fanout-logs/`` beside them. Node dependencies
are installed in ``bench/fanout_peers`` on first use (``npm ci``; ``make bench-deps``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

from bench import results_io
from bench.fanout_loadgen import HIST_EDGES, Conn, decode_ticks
from bench.report import rate as fmt_rate
from tickwire.access.keys import KEYS_FILE, FileKeyStore
from tickwire.catalog import CATALOG

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "fanout_peers"
SYMBOLS = [s for s in CATALOG]
SERVERS = ("tickwire", "node_batched", "tcp_ceiling", "feedadv", "node_single", "naive_ws")
TICKWIRE = ("tickwire", "feedadv")  # the same tickwire server, native or legacy TraderMade path
LABELS = {
    "tickwire": "tickwire (picows, batched)",
    "feedadv": "tickwire /feedadv (TraderMade legacy, one tick per frame)",
    "node_batched": "Node ws, batched like ours",
    "tcp_ceiling": "bare asyncio TCP, coalesced (ceiling)",
    "node_single": "Node ws, one tick per frame",
    "naive_ws": "Python websockets, naive",
}
MIXES = ("all", "random")
RATES = {  # R per mix and N: all symbols 5, 10, 10 M/s offered; random 5-10 0.77, 7.7, 7.7 M/s
    "all": {100: 50_000, 1000: 10_000, 5000: 2_000},
    "random": {100: 50_000, 1000: 50_000, 5000: 10_000},
}
CLK = os.sysconf("SC_CLK_TCK")


# -- processes and /proc -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def minor_faults(pid: int) -> int:
    """Minor page faults of a process so far (fresh memory touched: large buffers churned)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK, total / CLK


def softirq_seconds() -> float:
    """irq + softirq CPU seconds of the whole machine since boot (loopback delivery work)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (values[5] + values[6]) / CLK


PF_KTHREAD = 0x00200000


def process_cpu() -> dict[int, tuple[float, bool]]:
    """CPU seconds of every process on the machine, and whether it is a kernel thread."""
    out: dict[int, tuple[float, bool]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / CLK
        out[int(entry.name)] = (cpu, bool(int(fields[6]) & PF_KTHREAD))
    return out


def cpu_split(
    before: dict[int, tuple[float, bool]],
    after: dict[int, tuple[float, bool]],
    ours: set[int],
    seconds: float,
) -> tuple[float, float]:
    """(kernel threads, other user processes) CPU % between two :func:`process_cpu` samples."""
    kernel = other = 0.0
    for pid, (cpu, kthread) in after.items():
        if pid in ours or pid not in before:
            continue
        delta = cpu - before[pid][0]
        if kthread:
            kernel += delta
        else:
            other += delta
    return 100 * kernel / seconds, 100 * other / seconds


def wait_quiet(max_wait: float, limit: float = 15.0) -> float:
    """Wait (up to ``max_wait`` s) until other processes use < ``limit`` % of a core; return it."""
    deadline = time.monotonic() + max_wait
    ours = {os.getpid()}
    while True:
        before = process_cpu()
        time.sleep(0.5)
        _, other = cpu_split(before, process_cpu(), ours, 0.5)
        if other < limit or time.monotonic() > deadline:
            return other


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not open")


def http_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:  # an overloaded server is slow
        data: dict[str, Any] = json.loads(response.read())
        return data


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ensure_node_deps() -> None:
    if (PEERS / "node_modules" / "ws" / "package.json").exists():
        return
    if shutil.which("npm") is None or shutil.which("node") is None:
        sys.exit("fanout_bench needs node and npm for the Node ws peers")
    print("installing the Node peers' dependencies (npm ci) ...", flush=True)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True)


# -- servers ---------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    path: str
    framing: str
    welcome: bool
    http: str | None = None
    log: Any = None
    dialect: str = "native"

    def go(self) -> None:
        """Start the peer's tick source (tickwire's simulator runs from the start)."""
        if self.name not in TICKWIRE:
            self.proc.send_signal(signal.SIGUSR2)

    def offset(self) -> int | None:
        if self.http is None:
            return None
        return int(http_json(f"{self.http}/health")["offset"])

    def stop(self) -> None:
        if self.name in TICKWIRE:
            stop_process(self.proc)
        else:  # a saturated peer may not get to its signal handler soon; it keeps no state
            self.proc.kill()
            self.proc.wait()
        if self.log is not None:
            self.log.close()


@dataclass
class Bench:
    """Run-wide settings and state."""

    tmp: Path
    key: str
    keys_file: Path
    pin: bool
    step_ms: float = 1.0
    tickwire_args: list[str] = field(default_factory=list)
    points: int = 0
    log_dir: Path = field(default_factory=Path)

    def start(self, name: str, rate: int, *, ring_ticks: int | None = None) -> Server:
        self.points += 1
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = open(self.log_dir / f"{self.points:03d}-{name}.log", "wb")
        preexec = pin(0 if self.pin else None)
        symbols = ",".join(SYMBOLS)
        if name in TICKWIRE:
            data = self.tmp / f"data-{self.points}"
            data.mkdir()
            shutil.copy(self.keys_file, data / KEYS_FILE)
            http_port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "tickwire",
                "serve",
                "--sim-step-ms",
                str(self.step_ms),
                "--port",
                str(http_port),
                "--stream-port",
                str(port),
                "--data-dir",
                str(data),
                "--backfill-days",
                "0",
                "--no-weekend-closed",
                "--load-rate",
                str(rate),
                "--sync",
                "none",
                "--log-level",
                "warning",
            ]
            if ring_ticks is not None:
                cmd += ["--ring-ticks", str(ring_ticks)]
            cmd += self.tickwire_args
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
            )
            legacy = name == "feedadv"
            server = Server(
                name,
                proc,
                port,
                "/feedadv" if legacy else f"/v1/stream?api_key={self.key}",
                "ws",
                not legacy,  # the native stream welcomes; /feedadv says "Connected"
                f"http://127.0.0.1:{http_port}",
                log,
                "feedadv" if legacy else "native",
            )
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"tickwire exited with {proc.returncode}")
                try:
                    if http_json(f"{server.http}/ready").get("ready"):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("tickwire not ready")
                time.sleep(0.1)
        elif name in ("node_single", "node_batched"):
            mode = name.removeprefix("node_")
            cmd = ["node", "node_ws.js", "--port", str(port), "--rate", str(rate)]
            cmd += [
                "--mode",
                mode,
                "--symbols",
                symbols,
                "--wait-go",
                "--step-ms",
                str(self.step_ms),
            ]
            proc = subprocess.Popen(
                cmd, cwd=PEERS, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec
            )
            server = Server(name, proc, port, "/", "ws", False, log=log)
        elif name in ("naive_ws", "tcp_ceiling"):
            cmd = [sys.executable, "-m", f"bench.fanout_peers.{name}", "--port", str(port)]
            cmd += ["--rate", str(rate), "--symbols", symbols, "--wait-go"]
            cmd += ["--step-ms", str(self.step_ms)]
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
            )
            framing = "tcp" if name == "tcp_ceiling" else "ws"
            server = Server(name, proc, port, "/", framing, False, log=log)
        else:
            raise ValueError(name)
        try:
            wait_port(port, proc)
        except BaseException:
            server.stop()
            raise
        return server


# -- load generators -------------------------------------------------------------------------------


class LoadGen:
    """One load-generator process, driven over its stdin/stdout."""

    def __init__(self, cfg: dict[str, Any], path: Path, cpu: int | None) -> None:
        path.write_text(json.dumps(cfg))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout_loadgen", str(path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pin(cpu),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def event(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("load generator did not answer") from None
            if not line:
                raise RuntimeError(f"load generator exited ({self.proc.poll()})")
            if line.startswith("{"):
                data: dict[str, Any] = json.loads(line)
                return data

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("exit")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def subscriptions(n: int, mix: str) -> list[list[str]]:
    """Each client's symbols; the random draw depends only on ``n``, the same for every server."""
    if mix == "all":
        return [list(SYMBOLS) for _ in range(n)]
    rng = random.Random(1000 + n)
    return [rng.sample(SYMBOLS, rng.randint(5, 10)) for _ in range(n)]


def observer_indices(n: int, per_conn_rate: float) -> set[int]:
    """Connections that decode everything: about 100k ticks/s in all, 2 to 10, spread out."""
    k = int(min(10, max(2, 100_000 // max(per_conn_rate, 1))))
    k = min(k, n)
    return {round(i * (n - 1) / max(k - 1, 1)) for i in range(k)}


def procs_for(n: int) -> int:
    return 1 if n <= 100 else 2


# -- one point -------------------------------------------------------------------------------------


def run_point(
    bench: Bench,
    name: str,
    n: int,
    mix: str,
    rate: int,
    *,
    warmup: float,
    window: float,
) -> dict[str, Any]:
    subs = subscriptions(n, mix)
    share = sum(len(s) for s in subs) / len(SYMBOLS)
    observers = observer_indices(n, rate * share / n)
    nprocs = procs_for(n)
    point: dict[str, Any] = {
        "server": name,
        "n": n,
        "mix": mix,
        "rate": rate,
        "offered": rate * share,
        "observers": len(observers),
        "loadgens": nprocs,
    }
    server = bench.start(name, rate)
    gens: list[LoadGen] = []
    try:
        for p in range(nprocs):
            clients = [
                {"symbols": subs[i], "observer": i in observers} for i in range(p, n, nprocs)
            ]
            cfg = {
                "host": "127.0.0.1",
                "port": server.port,
                "path": server.path,
                "framing": server.framing,
                "welcome": server.welcome,
                "dialect": server.dialect,
                "key": bench.key,
                "symbols": SYMBOLS,
                "step_ns": round(bench.step_ms * 1e6),
                "clients": clients,
            }
            cpu = (1 if bench.pin else None) if nprocs == 1 or not bench.pin else 1
            gens.append(LoadGen(cfg, bench.tmp / f"lg-{bench.points}-{p}.json", cpu))
        ready = [g.event(180) for g in gens]
        point["connected"] = sum(r["connected"] for r in ready)
        point["connect_s"] = max(r["connect_s"] for r in ready)
        errors = [e for r in ready for e in r["errors"]]
        if point["connected"] < n:
            point["error"] = f"{n - point['connected']} clients failed to connect: {errors[:3]}"
            return point
        for g in gens:
            g.send("subscribe")
        subscribed = [g.event(150) for g in gens]
        point["subscribed"] = sum(e["subscribed"] for e in subscribed)
        point["subscribe_s"] = max(e["s"] for e in subscribed)
        if point["subscribed"] < n:
            point["error"] = f"{n - point['subscribed']} clients not subscribed"
            return point
        server.go()
        time.sleep(warmup)
        pids = [server.proc.pid] + [g.proc.pid for g in gens]
        procs0 = process_cpu()
        faults0 = minor_faults(server.proc.pid)
        cpu0 = [cpu_seconds(p) for p in pids]
        busy0, total0 = machine_busy()
        irq0 = softirq_seconds()
        off0 = server.offset()
        t0 = time.monotonic()
        for g in gens:
            g.send("start")
        time.sleep(window)
        for g in gens:
            g.send("stop")
        t1 = time.monotonic()
        cpu1 = [cpu_seconds(p) for p in pids]
        faults1 = minor_faults(server.proc.pid)
        busy1, total1 = machine_busy()
        irq1 = softirq_seconds()
        procs1 = process_cpu()
        off1 = server.offset()
        point["server_rss_mib"] = rss_kib(server.proc.pid, "VmHWM") / 1024
        point["dialect"] = server.dialect
        results = [g.event(60) for g in gens]
    finally:
        for g in gens:
            g.close()
        server.stop()
    wall = t1 - t0
    point["server_cpu"] = 100 * (cpu1[0] - cpu0[0]) / wall
    point["server_faults"] = (faults1 - faults0) / wall
    point["loadgen_cpu"] = [100 * (b - a) / wall for a, b in zip(cpu0[1:], cpu1[1:], strict=True)]
    ncpu = os.cpu_count() or 1
    scale = 100 * ncpu / max(total1 - total0, 1e-9)
    point["machine_busy"] = scale * (busy1 - busy0)
    point["softirq"] = scale * (irq1 - irq0)
    point["kthreads"], point["other"] = cpu_split(procs0, procs1, {*pids, os.getpid()}, wall)
    if off0 is not None and off1 is not None:
        point["published"] = (off1 - off0) / wall
    merge_results(point, results)
    return point


def merge_results(point: dict[str, Any], results: list[dict[str, Any]]) -> None:
    window = statistics.mean(r["window_s"] for r in results)
    ticks = sum(r["ticks"] for r in results)
    point["window_s"] = window
    point["delivered"] = ticks / window
    point["pct"] = 100 * point["delivered"] / point["offered"]
    point["bytes_per_tick"] = sum(r["bytes"] for r in results) / max(ticks, 1)
    for k in ("sinks_checked", "sinks_unchecked", "sinks_bad", "sink_missing", "sink_extra"):
        point[k] = sum(r[k] for r in results)
    for k in ("observer_ticks", "gaps", "dups", "order_errors", "lat_n"):
        point[k] = sum(r[k] for r in results)
    lat = np.sum([r["lat_hist"] for r in results], axis=0)
    age = np.sum([r["age_hist"] for r in results], axis=0)
    point["p50"], point["p99"] = percentiles(lat, (0.5, 0.99))
    point["age_p50"], point["age_p99"] = percentiles(age, (0.5, 0.99))
    point["max"] = max(r["lat_max"] for r in results) / 1e6
    closes: dict[str, int] = {}
    for r in results:
        for k, v in r["closes"].items():
            closes[k] = closes.get(k, 0) + v
    point["closes"] = closes
    point["lag_warnings"] = sum(r["controls"].get("lag", 0) for r in results)
    if point.get("dialect") == "feedadv":  # ticks without positions: not checkable per tick
        point["loss"] = point["dup"] = None
        return
    point["loss"] = point["gaps"] + point["sink_missing"]
    point["dup"] = point["dups"] + point["sink_extra"]


def percentiles(hist: Any, qs: tuple[float, ...]) -> tuple[float, ...]:
    """Percentiles in ms from a histogram over HIST_EDGES (upper bin edge: errs high by ≤ 1 %)."""
    total = float(np.sum(hist))
    if total == 0:
        return tuple(float("nan") for _ in qs)
    cum = np.cumsum(hist)
    return tuple(float(HIST_EDGES[int(np.searchsorted(cum, q * total)) + 1]) / 1e6 for q in qs)


def saturated(point: dict[str, Any], p99_target: float, step_ms: float) -> str:
    """Which side limits this point, from the CPU figures (100 % = one core)."""
    if "error" in point:
        return "error"
    ok = (
        point["pct"] >= 98
        and point["loss"] == 0
        and point["dup"] == 0
        and point["p99"] <= p99_target
        and not point["closes"]
    )
    if point["server_cpu"] >= 90:
        side = "server CPU"
    elif max(point["loadgen_cpu"]) >= 90:
        side = "load generator CPU"
    elif point["machine_busy"] >= 185:
        side = "both cores busy"
    else:
        side = ""
    if ok:
        return "none" + (f" (near: {side})" if side else "")
    if side:
        return side
    if point["pct"] >= 98:
        burst = point["delivered"] * point["bytes_per_tick"] * step_ms / 1e3 / 1e6
        return f"latency: {burst:,.0f} MB per {step_ms:g} ms wake-up to move"
    return "unclear (no side at 90 % CPU)"


# -- resume and memory ---------------------------------------------------------------------------


async def _resume_once(port: int, path: str, back: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    conn = Conn(
        host="127.0.0.1",
        port=port,
        path=path,
        framing="ws",
        subscribe=None,
        expect_welcome=True,
        keep_all=True,
    )
    await loop.create_connection(lambda: conn, "127.0.0.1", port)
    await asyncio.wait_for(conn.ready, 30)
    assert conn.welcome is not None
    epoch, offset = int(conn.welcome["epoch"]), int(conn.welcome["offset"])
    start = offset - back
    request = {
        "action": "subscribe",
        "id": 7,
        "channel": "ticks",
        "symbols": SYMBOLS,
        "from": f"{epoch}:{start}",
    }
    t0 = time.perf_counter_ns()
    conn.send_text(json.dumps(request).encode())
    deadline = time.monotonic() + 60
    while not any(m.get("status") != "replaying" for _, _, m in conn.resumes):
        if time.monotonic() > deadline or conn.closed:
            raise TimeoutError(f"no resume live ({conn.closed})")
        await asyncio.sleep(0.0005)
    t_live, message = next((t, m) for t, _, m in conn.resumes if m.get("status") != "replaying")
    replay_frames = next(n for t, n, m in conn.resumes if m.get("status") != "replaying")
    await asyncio.sleep(0.3)  # a few live frames, to check the join
    if conn.transport is not None:
        conn.transport.close()
    offsets: list[int] = []
    replayed = 0
    for i, (_, _, payload) in enumerate(conn.frames_kept):
        ticks = decode_ticks(payload)
        offsets.extend(sorted(t.o for t in ticks))
        if i + 1 == replay_frames:
            replayed = len(offsets)
    expected = list(range(start + 1, start + 1 + len(offsets)))
    return {
        "status": message.get("status"),
        "seconds": (t_live - t0) / 1e9,
        "replayed": replayed,
        "frames": replay_frames,
        "gap_free": offsets == expected,
        "live_after": len(offsets) - replayed,
    }


def measure_resume(
    bench: Bench, *, back: int, rate: int, repeats: int, ring_ticks: int | None
) -> dict[str, Any]:
    server = bench.start("tickwire", rate, ring_ticks=ring_ticks)
    try:
        need = back + rate  # one second of margin
        deadline = time.monotonic() + 120
        while (server.offset() or 0) < need:
            if time.monotonic() > deadline:
                raise TimeoutError("not enough ticks journaled")
            time.sleep(0.2)
        runs = [uvloop.run(_resume_once(server.port, server.path, back)) for _ in range(repeats)]
    finally:
        server.stop()
    return {"rate": rate, "back": back, "ring_ticks": ring_ticks, "runs": runs}


def measure_memory(bench: Bench, name: str, n: int, settle: float = 1.0) -> dict[str, Any]:
    """Server RSS growth per idle connection; ``settle`` s before each RSS reading (1.5× after)."""
    server = bench.start(name, 100)
    gen = None
    try:
        time.sleep(settle)
        before = rss_kib(server.proc.pid)
        cfg = {
            "host": "127.0.0.1",
            "port": server.port,
            "path": server.path,
            "framing": server.framing,
            "welcome": server.welcome,
            "symbols": SYMBOLS,
            "idle": True,
            "clients": [{"symbols": []} for _ in range(n)],
        }
        gen = LoadGen(cfg, bench.tmp / f"idle-{bench.points}.json", None)
        ready = gen.event(180)
        time.sleep(1.5 * settle)
        after = rss_kib(server.proc.pid)
    finally:
        if gen is not None:
            gen.close()
        server.stop()
    return {
        "server": name,
        "n": ready["connected"],
        "before_mib": before / 1024,
        "after_mib": after / 1024,
        "kib_per_conn": (after - before) / max(ready["connected"], 1),
    }


# -- report ------------------------------------------------------------------------------------


def fmt_ms(v: float) -> str:
    if v != v:  # nan
        return "–"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def report(
    points: list[dict[str, Any]],
    resume: list[dict[str, Any]],
    memory: list[Any],
    step_ms: float,
) -> None:
    print("\n## Fan-out: delivered ticks/s, latency, loss, CPU\n")
    print(
        f"Latency = receipt − emission (the {step_ms:g} ms wake-up of the tick source that "
        "emitted the tick), on the observer connections; loss = q gaps + sink count "
        "shortfall; CPU 100 % = one core (2 on this machine); softirq = the machine's irq + "
        "softirq time (loopback delivery); kthreads = kernel threads (writeback, ksoftirqd: "
        "partly the servers' own I/O); other = other user processes on the shared machine "
        "(points are redone when it exceeds 30 %); RSS = server peak.\n"
    )
    cells: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for p in points:
        cells.setdefault((p["n"], p["mix"], p["rate"]), []).append(p)
    for (n, mix, _), group in cells.items():
        rate = group[0]["rate"]
        offered = group[0]["offered"]
        target = 10.0 if n == 100 else 50.0
        print(
            f"### N = {n:,} clients, mix {mix}, R = {rate:,} ticks/s "
            f"(offered {fmt_rate(offered)} deliveries/s)\n"
        )
        print(
            "| server | delivered/s | % offered | tickwire ÷ it | p50 ms | p99 ms | max ms | "
            "loss | dup | server CPU % | loadgen CPU % | softirq % | kthreads % | other % | "
            "RSS MiB | B/tick | "
            "saturates |"
        )
        print(
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        )
        ours = next((p for p in group if p["server"] == "tickwire" and "error" not in p), None)
        for p in group:
            if "error" in p:
                print(f"| {LABELS[p['server']]} | error: {p['error']} |" + " |" * 15)
                continue
            ratio = (
                f"{ours['delivered'] / p['delivered']:,.1f}×"
                if ours is not None and p["delivered"] > 0
                else "–"
            )
            lg = "+".join(f"{c:.0f}" for c in p["loadgen_cpu"])
            if p["loss"] is None:
                loss = dup = "n/a"
            else:
                loss = f"{p['loss']:,}" + ("" if p["sinks_unchecked"] == 0 else "?")
                dup = f"{p['dup']:,}"
            print(
                f"| {LABELS[p['server']]} | {fmt_rate(p['delivered'])} | {p['pct']:.1f} | "
                f"{ratio} | {fmt_ms(p['p50'])} | {fmt_ms(p['p99'])} | {fmt_ms(p['max'])} | "
                f"{loss} | {dup} | {p['server_cpu']:.0f} | {lg} | "
                f"{p['softirq']:.0f} | {p['kthreads']:.0f} | {p['other']:.0f} | "
                f"{p['server_rss_mib']:.0f} | "
                f"{p['bytes_per_tick']:.0f} | {saturated(p, target, step_ms)} |"
            )
        notes = []
        for p in group:
            if "error" in p:
                continue
            if p["closes"]:
                notes.append(f"{p['server']}: connections closed {p['closes']}")
            if p["loss"] is None:
                notes.append(
                    f"{p['server']}: its ticks carry no offset or seq, so loss and duplicates "
                    "cannot be checked per tick; delivered against offered shows any shortfall"
                )
            elif p["sinks_unchecked"]:
                notes.append(
                    f"{p['server']}: {p['sinks_unchecked']} sinks without a closing frame "
                    "(not checked)"
                )
            if p["order_errors"]:
                notes.append(f"{p['server']}: {p['order_errors']} ordering errors on observers")
            if p.get("server_faults", 0) > 10_000:
                notes.append(
                    f"{p['server']}: {fmt_rate(p['server_faults'])} minor page faults/s in the "
                    "server (large buffers allocated and freed per flush)"
                )
            if "published" in p:
                notes.append(
                    f"{p['server']}: journal advanced {fmt_rate(p['published'])} ticks/s "
                    f"(R = {p['rate']:,}); {p['observers']} observers, {p['sinks_checked']:,} "
                    f"sinks checked exactly, connect {p['connect_s']:.1f} s, subscribe "
                    f"{p['subscribe_s']:.2f} s"
                )
        for note in notes:
            print(f"- {note}")
        print()
    targets(points, resume, memory)
    if resume:
        print("\n## Resume: replaying missed ticks to a resuming client\n")
        print(
            f"Subscribe all 49 symbols with `from` = {resume[0]['back']:,} ticks back while the "
            "simulator keeps "
            "publishing; time from the subscribe to `resume` `live` (the client reads "
            "everything, decoding afterwards).\n"
        )
        print(
            "| source | live load ticks/s | run | replayed ticks | s to live | ticks/s | gap-free |"
        )
        print("|---|---:|---:|---:|---:|---:|:-:|")
        for res in resume:
            source = (
                "ring" if res["ring_ticks"] is None else f"journal (ring {res['ring_ticks']:,})"
            )
            for i, run in enumerate(res["runs"]):
                print(
                    f"| {source} | {res['rate']:,} | {i + 1} | {run['replayed']:,} | "
                    f"{run['seconds']:.3f} | {fmt_rate(run['replayed'] / run['seconds'])} | "
                    f"{'yes' if run['gap_free'] else 'NO'} |"
                )
    if memory:
        print("\n## Memory per idle connection (server RSS delta / connections)\n")
        print("| server | connections | RSS before MiB | RSS after MiB | KiB per connection |")
        print("|---|---:|---:|---:|---:|")
        for m in memory:
            print(
                f"| {LABELS[m['server']]} | {m['n']:,} | {m['before_mib']:.1f} | "
                f"{m['after_mib']:.1f} | {m['kib_per_conn']:.1f} |"
            )


def targets(points: list[dict[str, Any]], resume: list[dict[str, Any]], memory: list[Any]) -> None:
    def find(server: str, n: int, mix: str = "all", rate: int | None = None) -> Any:
        return next(
            (
                p
                for p in points
                if p["server"] == server
                and p["n"] == n
                and p["mix"] == mix
                and (rate is None or p["rate"] == rate)
                and "error" not in p
            ),
            None,
        )

    rows: list[tuple[str, str, str]] = []
    for n, need, p99 in ((1000, 10e6, 50.0), (100, 5e6, 10.0)):
        p = find("tickwire", n, "all", RATES["all"][n])
        if p is None:
            continue
        met = p["delivered"] >= need and p["p99"] <= p99 and p["loss"] == 0 and p["dup"] == 0
        rows.append(
            (
                f"≥ {need / 1e6:.0f} M deliveries/s to {n:,} clients, p99 ≤ {p99:.0f} ms, "
                "zero loss",
                f"{fmt_rate(p['delivered'])}/s, p99 {fmt_ms(p['p99'])} ms, loss {p['loss']}, "
                f"dup {p['dup']}",
                "met" if met else "NOT met",
            )
        )
    ahead = []
    ratios = []
    for p in points:
        if p["server"] != "tickwire" or "error" in p:
            continue
        node = find("node_batched", p["n"], p["mix"], p["rate"])
        if node is not None and node["delivered"] > 0:
            rel = p["delivered"] / node["delivered"]
            # ahead: more delivered, or the same (within 2 %) with a lower p99
            won = rel > 1.02 or (rel >= 0.98 and p["p99"] < node["p99"])
            ahead.append(won)
            ratios.append(
                f"N={p['n']:,} {p['mix']} R={p['rate']:,}: {rel:.2f}× delivered, p99 "
                f"{fmt_ms(p['p99'])} vs {fmt_ms(node['p99'])} ms"
            )
    if ahead:
        verdict = "met" if all(ahead) else f"met in {sum(ahead)} of {len(ahead)} cells"
        rows.append(("ahead of batched Node ws", "; ".join(ratios), verdict))
    naive = []
    for p in points:
        if p["server"] != "tickwire" or "error" in p:
            continue
        q = find("naive_ws", p["n"], p["mix"], p["rate"])
        if q is not None and q["delivered"] > 0:
            naive.append((p, p["delivered"] / q["delivered"]))
    if naive:
        text = ", ".join(f"N={p['n']:,} {p['mix']} R={p['rate']:,}: {r:,.0f}×" for p, r in naive)
        # where tickwire delivers all that is offered, the ratio is capped by the offered load:
        # judge each client count at its highest offered load
        top: dict[int, tuple[dict[str, Any], float]] = {}
        for p, r in naive:
            if p["n"] not in top or p["offered"] > top[p["n"]][0]["offered"]:
                top[p["n"]] = (p, r)
        if all(r >= 100 for _, r in top.values()):
            verdict = "met at each client count's highest offered load"
        else:
            verdict = "NOT met"
        rows.append(
            ("≥ 100× the naive server (delivered/s at the same offered load)", text, verdict)
        )
    for res in resume:
        worst = max(run["seconds"] for run in res["runs"])
        ok = all(run["gap_free"] for run in res["runs"])
        source = "ring" if res["ring_ticks"] is None else "journal"
        rows.append(
            (
                f"resume of {res['back']:,} ticks ≤ 0.5 s ({source})",
                f"worst {worst:.3f} s over {len(res['runs'])} run(s), gap-free: {ok}",
                "met" if worst <= 0.5 and ok else "NOT met",
            )
        )
    for m in memory:
        if m["server"] == "tickwire":
            rows.append(
                (
                    "≤ 50 KiB per idle connection",
                    f"{m['kib_per_conn']:.1f} KiB ({m['n']:,} connections)",
                    "met" if m["kib_per_conn"] <= 50 else "NOT met",
                )
            )
    print("## Targets\n")
    print("| target | measured | |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


# -- main ----------------------------------------------------------------------------------------


def measure(
    bench: Bench,
    name: str,
    n: int,
    mix: str,
    rate: int,
    warmup: float,
    window: float,
    *,
    tries: int,
    quiet_wait: float = 5.0,
) -> dict[str, Any]:
    """One point, after waiting for a quiet machine; redone if other processes were busy."""
    best: dict[str, Any] | None = None
    for attempt in range(tries):
        quiet = wait_quiet(30 if tries > 1 else quiet_wait)
        try:
            point = run_point(bench, name, n, mix, rate, warmup=warmup, window=window)
        except Exception as exc:  # keep going: one failed peer must not end the run
            point = {"server": name, "n": n, "mix": mix, "rate": rate, "error": repr(exc)}
            point["offered"] = 0
            return point
        point["quiet_before"] = quiet
        point["tries"] = attempt + 1
        if best is None or point.get("other", 0) < best.get("other", 0):
            best = point
        if point.get("other", 0) <= 30:
            break
        print(f"    other processes used {point['other']:.0f} % of a core: again", flush=True)
    assert best is not None
    return best


BATCHED = ("tickwire", "node_batched", "tcp_ceiling")


def grid(args: argparse.Namespace, servers: list[str]) -> list[tuple[int, str, int, list[str]]]:
    """(N, mix, R, servers) per cell; explicit --clients/--mixes/--rate give their product."""
    if args.clients or args.mixes or args.rate:
        clients = [int(c) for c in (args.clients or "100,1000").split(",")]
        return [
            (n, mix, args.rate or RATES[mix].get(n, 10_000_000 // n), servers)
            for n in clients
            for mix in (args.mixes or "all").split(",")
        ]
    if args.tiny:
        return [(10, "all", 2_000, servers)]
    if args.quick:
        return [(100, "all", 50_000, servers), (1000, "all", 10_000, servers)]
    cells = [(n, mix, RATES[mix][n], servers) for n in (100, 1000, 5000) for mix in MIXES]
    stress = [s for s in servers if s in BATCHED]
    # the naive server joins the 100-client stress cell: at 5 M/s offered tickwire is capped by
    # the offered load, so only there does the ratio to the naive server show
    naive = [s for s in servers if s == "naive_ws"]
    cells += [(1000, "all", 15_000, stress), (100, "all", 100_000, stress + naive)]
    return cells


PARTS = ("grid", "resume", "memory")
TINY_SERVERS = ("tickwire", "node_batched", "feedadv")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    results_io.add_mode_args(parser, out_help="results directory (default: bench/results/...)")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help="parts to run, comma-separated: grid (fan-out cells), resume, memory",
    )
    parser.add_argument(
        "--resume-back", type=int, default=None, help="ticks to replay (default 100,000)"
    )
    parser.add_argument("--clients", help="client counts, comma-separated (100,1000,5000)")
    parser.add_argument("--mixes", help="all,random")
    parser.add_argument("--servers", help=f"comma-separated, of {','.join(SERVERS)}")
    parser.add_argument("--rate", type=int, help="R for every point (default: by N)")
    parser.add_argument("--seconds", type=float, help="measurement window per point")
    parser.add_argument("--warmup", type=float, help="seconds before the window")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, load on CPU 1")
    parser.add_argument(
        "--step-ms",
        type=float,
        default=1.0,
        help="simulator/tick-source wake-up step, the same for every server (tickwire's "
        "--sim-step-ms)",
    )
    parser.add_argument("--tickwire-args", default="", help="extra `tickwire serve` options")
    parser.add_argument("--no-resume", action="store_true", help="same as leaving it out of --only")
    parser.add_argument("--no-memory", action="store_true", help="same as leaving it out of --only")
    args = parser.parse_args(argv)
    quick, tiny = args.quick, args.tiny
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}; of {PARTS}")
    parts = [
        p
        for p in PARTS
        if p in parts
        and not (p == "resume" and args.no_resume)
        and not (p == "memory" and args.no_memory)
    ]
    default_servers = TINY_SERVERS if tiny else SERVERS
    servers = (args.servers or ",".join(default_servers)).split(",")
    cells = grid(args, servers) if "grid" in parts else []
    window = args.seconds or (1.0 if tiny else 3.0 if quick else 8.0)
    warmup = args.warmup or (0.5 if tiny else 1.0 if quick else 2.0)
    back = args.resume_back or (5_000 if tiny else 100_000)
    out_dir = args.out or results_io.default_path("fanout", results_io.mode(args)).parent

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65_536) if hard != resource.RLIM_INFINITY else 65_536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if any(s.startswith("node_") for s in servers):
        ensure_node_deps()
    started_perf = time.perf_counter()

    started = time.monotonic()
    points: list[dict[str, Any]] = []
    resume: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp_name:
        tmp = Path(tmp_name)
        keys = tmp / "keys"
        key, _ = FileKeyStore(keys / KEYS_FILE).create(
            "bench", plan="unlimited", max_connections=100_000
        )
        log_dir = out_dir / "fanout-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        bench = Bench(
            tmp,
            key,
            keys / KEYS_FILE,
            args.pin,
            args.step_ms,
            args.tickwire_args.split(),
            log_dir=log_dir,
        )
        for n, mix, rate, cell_servers in cells:
            for name in cell_servers:
                label = f"N={n:,} {mix} R={rate:,} {name}"
                print(f"[{time.monotonic() - started:5.0f} s] {label} ...", flush=True)
                point = measure(
                    bench,
                    name,
                    n,
                    mix,
                    rate,
                    warmup,
                    window,
                    tries=1 if quick or tiny else 2,
                    quiet_wait=0 if tiny else 5,
                )
                points.append(point)
                if "error" in point:
                    print(f"    error: {point['error']}", flush=True)
                else:
                    print(
                        f"    {fmt_rate(point['delivered'])} ticks/s ({point['pct']:.1f} % of "
                        f"offered), p50 {fmt_ms(point['p50'])} ms, p99 {fmt_ms(point['p99'])} ms,"
                        f" loss {point['loss']}, server CPU {point['server_cpu']:.0f} %, loadgen "
                        f"{'+'.join(f'{c:.0f}' for c in point['loadgen_cpu'])} %",
                        flush=True,
                    )
        if "resume" in parts and "tickwire" in servers:
            sources: list[int | None] = [None] if quick or tiny else [None, 20_000]
            for ring in sources:
                print(
                    f"[{time.monotonic() - started:5.0f} s] resume {back:,} ticks "
                    f"({'ring' if ring is None else 'journal'}) ...",
                    flush=True,
                )
                try:
                    res = measure_resume(
                        bench,
                        back=back,
                        rate=20_000,
                        repeats=1 if quick or tiny else 3,
                        ring_ticks=ring,
                    )
                    resume.append(res)
                    for run in res["runs"]:
                        print(
                            f"    {run['replayed']:,} ticks in {run['seconds']:.3f} s, "
                            f"gap-free {run['gap_free']}",
                            flush=True,
                        )
                except Exception as exc:
                    print(f"    error: {exc!r}", flush=True)
        if "memory" in parts:
            targets_mem = (
                [("tickwire", 50), ("node_batched", 50)]
                if tiny
                else [("tickwire", 1000), ("node_batched", 1000)]
                if quick
                else [
                    ("tickwire", 1000),
                    ("tickwire", 5000),
                    *((s, 1000) for s in servers if s != "tickwire"),
                ]
            )
            for name, n in targets_mem:
                if name not in servers:
                    continue
                print(f"[{time.monotonic() - started:5.0f} s] memory: {n:,} idle on {name}")
                try:
                    memory.append(measure_memory(bench, name, n, settle=0.3 if tiny else 1.0))
                    print(f"    {memory[-1]['kib_per_conn']:.1f} KiB per connection", flush=True)
                except Exception as exc:
                    print(f"    error: {exc!r}", flush=True)
    elapsed = time.monotonic() - started
    print(f"\nfan-out benchmark ({', '.join(parts)}): {elapsed:.0f} s")
    report(points, resume, memory, args.step_ms)
    seconds = time.perf_counter() - started_perf
    common = {"module": "bench.fanout_bench", "seconds": seconds, "argv": argv}
    if "grid" in parts:
        results_io.write(
            "fanout",
            part_args(args, out_dir, "fanout"),
            {"step_ms": args.step_ms, "window_s": window, "warmup_s": warmup, "points": points},
            **common,
        )
    if "resume" in parts:
        for res in resume:
            times = [run["seconds"] for run in res["runs"]]
            res["seconds_min"], res["seconds_max"] = min(times), max(times)
            res["gap_free"] = all(run["gap_free"] for run in res["runs"])
            res["source"] = "ring" if res["ring_ticks"] is None else "journal"
        results_io.write(
            "resume",
            part_args(args, out_dir, "resume"),
            {"back": back, "sources": resume},
            **common,
        )
    if "memory" in parts:
        results_io.write(
            "memory", part_args(args, out_dir, "memory"), {"entries": memory}, **common
        )


def part_args(args: argparse.Namespace, out_dir: Path, workload: str) -> argparse.Namespace:
    """``args`` with ``out`` set to this part's results file in ``out_dir``."""
    return argparse.Namespace(**{**vars(args), "out": out_dir / f"{workload}.json"})


if __name__ == "__main__":
    main()
