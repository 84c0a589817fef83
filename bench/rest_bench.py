"""REST load: tickwire's hot endpoints against a minimal FastAPI app, with wrk, in one run.

Cases (each at the same concurrency, over loopback, the server and wrk sharing the machine):

* baseline: a minimal FastAPI app (uvicorn, one worker) returning a constant JSON body;
* ``/api/v1/live`` for 10 pairs (TraderMade-compatible);
* ``/v1/quotes`` for the same 10 pairs (native);
* ``/v1/bars/EURUSD`` with 30 days of 1-minute bars (one page of up to 10,000 bars, then the
  next pages: the request is the first page of a 43,200-bar range).

The tickwire server runs the simulator in load mode (200 ticks/s), so cached quote bodies are
invalidated continuously, as in production. Baseline and cases alternate over the rounds.

    python -m bench.rest_bench            # 3 rounds x 10 s per case (about 3 min)
    python -m bench.rest_bench --quick    # 1 round x 3 s, 2 days of history
    python -m bench.rest_bench --tiny     # 1 round x 1 s, 8 connections: only checks it runs

Needs ``wrk`` (``make bench-deps`` installs it). Results go to ``bench/results/rest.json``
(see :mod:`bench.results_io`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from bench import results_io
from tickwire.access.keys import KEYS_FILE, FileKeyStore

PAIRS = "EURUSD,GBPUSD,USDJPY,USDCHF,AUDUSD,USDCAD,NZDUSD,EURGBP,EURJPY,XAUUSD"
MINIMAL_APP = textwrap.dedent(
    """
    from fastapi import FastAPI
    app = FastAPI()
    BODY = {"endpoint": "live", "quotes": [{"ask": 1.1, "bid": 1.0, "mid": 1.05}] * 10}
    @app.get("/const")
    def const():
        return BODY
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def wrk(url: str, seconds: float, connections: int, threads: int = 1) -> dict[str, float]:
    """Run wrk; return req/s and latency percentiles in ms."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    result = {"rps": rate}
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        value = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        result[f"p{pct}"] = value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    results_io.add_mode_args(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=None, help="default 64 (tiny: 8)")
    parser.add_argument("--backfill-days", type=float, default=30)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("rest_bench needs wrk (`make bench-deps`, or Debian: apt-get install wrk)")
    started = time.perf_counter()
    rounds, seconds = (args.rounds, args.seconds)
    backfill = args.backfill_days
    connections = args.connections or (8 if args.tiny else 64)
    if args.quick:
        rounds, seconds, backfill = 1, 3.0, min(backfill, 2)
    elif args.tiny:
        rounds, seconds, backfill = 1, 1.0, min(backfill, 0.02)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        key, _ = FileKeyStore(data / KEYS_FILE).create(
            "bench", plan="unlimited", rate=1_000_000.0, burst=1_000_000
        )
        tw_port, fa_port = free_port(), free_port()
        app_file = Path(tmp) / "minimal_app.py"
        app_file.write_text(MINIMAL_APP)
        log = open(Path(tmp) / "server.log", "wb")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tickwire",
                    "serve",
                    "--port",
                    str(tw_port),
                    "--data-dir",
                    str(data),
                    "--backfill-days",
                    str(backfill),
                    "--no-weekend-closed",
                    "--load-rate",
                    "200",
                    "--log-level",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "minimal_app:app",
                    "--port",
                    str(fa_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        try:
            base = f"http://127.0.0.1:{tw_port}"
            print("waiting for the server and its backfill ...", flush=True)
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("server not ready")
                time.sleep(0.5)
            wait_http(f"http://127.0.0.1:{fa_port}/const")
            now_ms = int(time.time() * 1000)
            cases = {
                "minimal FastAPI, constant JSON (baseline)": f"http://127.0.0.1:{fa_port}/const",
                "/api/v1/live, 10 pairs": f"{base}/api/v1/live?currency={PAIRS}&api_key={key}",
                "/v1/quotes, 10 pairs": f"{base}/v1/quotes?symbols={PAIRS}&api_key={key}",
                "/v1/bars/EURUSD, 30 days of 1-minute bars (first 10,000-bar page)": (
                    f"{base}/v1/bars/EURUSD?unit=minute&limit=10000&from={now_ms - 30 * 86_400_000}"
                    f"&to={now_ms}&api_key={key}"
                ),
            }
            for name, url in cases.items():
                status = httpx.get(url, timeout=30).status_code
                if status != 200:
                    raise RuntimeError(f"{name}: HTTP {status}")
            results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
            for r in range(rounds):
                for name, url in cases.items():
                    results[name].append(wrk(url, seconds, connections))
                    last = results[name][-1]
                    print(
                        f"round {r + 1}: {name}: {last['rps']:,.0f} req/s, p50 "
                        f"{last['p50']:.2f} ms, p99 {last['p99']:.2f} ms",
                        flush=True,
                    )
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()
    base_rps = statistics.median(r["rps"] for r in results[next(iter(cases))])
    print(f"\nREST load, wrk -c{connections}, {rounds} round(s) x {seconds:g} s, median\n")
    print("| case | req/s | vs baseline | p50 ms | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        bad = sum(r["non2xx"] for r in runs)
        print(
            f"| {name} | {rps:,.0f} | {rps / base_rps:.2f}× | {p50:.2f} | {p99:.2f} | {bad:.0f} |"
        )
        rows.append(
            {
                "case": name,
                "baseline": name == next(iter(cases)),
                "rps": rps,
                "vs_baseline": rps / base_rps,
                "p50_ms": p50,
                "p99_ms": p99,
                "non2xx": bad,
                "rounds": runs,
            }
        )
    results_io.write(
        "rest",
        args,
        {
            "connections": connections,
            "rounds": rounds,
            "seconds": seconds,
            "backfill_days": backfill,
            "load_rate": 200,
            "cases": rows,
        },
        module="bench.rest_bench",
        seconds=time.perf_counter() - started,
        argv=argv,
    )


if __name__ == "__main__":
    main()
