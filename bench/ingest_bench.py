"""Durable ingest through the tickplant against a plain file append with the same fsync policy.

Each round commits groups of exactly B ticks (``CommitLimits.max_ticks = B``), fed by two
producers that each wait for their batch to be durable (journal record written and
fdatasync'ed, published on the bus, applied to live state) before sending the next.
The baseline writes the same number of bytes per batch to a plain file and fdatasyncs it. Rounds
of the two alternate so that machine noise hits both; the table gives medians and the ratio.

    python -m bench.ingest_bench            # full: batch 1, 100, 10,000 (about 90 s)
    python -m bench.ingest_bench --quick    # about 5 s
    python -m bench.ingest_bench --tiny     # about 1 s: only checks that it runs

Results go to ``bench/results/ingest.json`` (see :mod:`bench.results_io`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import results_io
from tickwire.bus import InProcessBus
from tickwire.journal import Journal, SyncPolicy
from tickwire.livestate import LiveState
from tickwire.model import TickBatch
from tickwire.tickplant import CommitLimits, Tickplant

SYMBOLS = tuple(f"SYM{i:03d}" for i in range(40))
BYTES_PER_TICK = 34  # ts, bid, ask, seq (8 bytes each) + symbol index (2)
PRODUCERS = 2


def make_batch(size: int, start_ts: int) -> TickBatch:
    rng = np.random.default_rng(size)
    bid = 1.0 + rng.random(size) / 100
    return TickBatch(
        SYMBOLS,
        rng.integers(0, len(SYMBOLS), size).astype(np.uint16),
        start_ts + np.arange(size, dtype=np.int64),
        bid,
        bid + 1e-4,
    )


def baseline_round(
    directory: Path, size: int, seconds: float, sync: bool
) -> tuple[float, list[float]]:
    """Plain append of ``size`` ticks' worth of bytes per batch, fdatasync per batch."""
    payload = os.urandom(size * BYTES_PER_TICK + 8)
    path = directory / "plain.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
    latencies: list[float] = []
    ticks = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            os.write(fd, payload)
            if sync:
                os.fdatasync(fd)
            latencies.append(time.perf_counter() - t0)
            ticks += size
    finally:
        os.close(fd)
        path.unlink()
    return ticks / (time.perf_counter() - started), latencies


async def tickplant_round(
    directory: Path, size: int, seconds: float, sync: SyncPolicy, *, live: bool = True
) -> tuple[float, list[float]]:
    """Batches of ``size`` ticks through the tickplant, each awaited until durable."""
    journal, _ = Journal.open(directory / f"journal-{time.monotonic_ns()}", sync=sync)
    bus = InProcessBus(
        epoch=journal.epoch,
        last_offset=journal.last_offset,
        history=lambda after, n: journal.read(after, max_ticks=n),
        ring_ticks=1_000_000,
    )
    plant = Tickplant(
        journal,
        bus,
        limits=CommitLimits(max_ticks=max(size, 1)),
        on_commit=LiveState().apply if live else None,
    )
    plant.start()
    batches = [make_batch(size, 1_767_000_000_000_000_000 + i * size) for i in range(8)]
    latencies: list[float] = []
    ticks = 0
    started = time.perf_counter()

    async def producer(k: int) -> None:
        # several producers keep commits back to back; max_ticks keeps each commit at `size`
        nonlocal ticks
        i = k
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            await plant.submit_durable(batches[i % 8])
            latencies.append(time.perf_counter() - t0)
            ticks += size
            i += 1

    await asyncio.gather(*(producer(k) for k in range(PRODUCERS)))
    elapsed = time.perf_counter() - started
    await plant.stop()
    return ticks / elapsed, latencies


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    results_io.add_mode_args(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per round and side")
    parser.add_argument("--sync", choices=["fsync", "none"], default="fsync")
    parser.add_argument("--sizes", default=None, help="batch sizes (default 1,100,10000)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.tiny:
        rounds, seconds, default_sizes = 1, 0.1, "1,100"
    elif args.quick:
        rounds, seconds, default_sizes = 1, 0.5, "1,100,10000"
    else:
        rounds, seconds, default_sizes = args.rounds, args.seconds, "1,100,10000"
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    sync = SyncPolicy(args.sync)
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TICKWIRE_BENCH_DIR")) as tmp:
        directory = Path(tmp)
        for size in sizes:
            base_rates, full_rates, bare_rates, base_lat, full_lat = [], [], [], [], []
            for _ in range(rounds):
                rate, lat = baseline_round(directory, size, seconds, sync is SyncPolicy.FSYNC)
                base_rates.append(rate)
                base_lat += lat
                rate, lat = asyncio.run(tickplant_round(directory, size, seconds, sync))
                full_rates.append(rate)
                full_lat += lat
                rate, _ = asyncio.run(tickplant_round(directory, size, seconds, sync, live=False))
                bare_rates.append(rate)
            b = statistics.median(base_rates)
            f, t = statistics.median(full_rates), statistics.median(bare_rates)
            rows.append(
                (
                    size,
                    f,
                    t,
                    b,
                    pct(full_lat, 50),
                    pct(full_lat, 99),
                    pct(base_lat, 50),
                    pct(base_lat, 99),
                )
            )
            print(
                f"batch {size:>6}: with live state {f:>12,.0f}/s  tickplant alone {t:>12,.0f}/s"
                f"  plain append {b:>12,.0f}/s",
                flush=True,
            )
    print(f"\nDurable ingest, sync={sync.value}, {rounds} round(s) x {seconds:g} s, median\n")
    print(
        "| batch | tickplant + live state, ticks/s | tickplant alone | plain append "
        "| ratio (+ live) | ratio (alone) | commit p50 / p99 ms | append p50 / p99 ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, f, t, b, p50, p99, b50, b99 in rows:
        print(
            f"| {size:,} | {f:,.0f} | {t:,.0f} | {b:,.0f} | {f / b:.2f} | {t / b:.2f} "
            f"| {p50:.2f} / {p99:.2f} | {b50:.2f} / {b99:.2f} |"
        )
    keys = ("batch", "live_tps", "alone_tps", "append_tps")
    keys += ("commit_p50_ms", "commit_p99_ms", "append_p50_ms", "append_p99_ms")
    results_io.write(
        "ingest",
        args,
        {
            "sync": sync.value,
            "rounds": rounds,
            "seconds": seconds,
            "rows": [dict(zip(keys, row, strict=True)) for row in rows],
        },
        module="bench.ingest_bench",
        seconds=time.perf_counter() - started,
        argv=argv,
    )


if __name__ == "__main__":
    main()
