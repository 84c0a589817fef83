"""Benchmark the DuckDB tick store against pandas and SQLite on the same synthetic ticks.

    python -m bench.store_bench --ticks 10000000 --symbols 20   # the default (about 100 s)
    python -m bench.store_bench --quick    # 200,000 ticks (about 6 s)
    python -m bench.store_bench --tiny     # 20,000 ticks: only checks that it runs

Builds a store of ``--ticks`` ticks over ``--days`` calendar days (FX hours only: the weekend has
no ticks), fed through ``DuckDBStore.apply`` in batches of ``--batch`` ticks, then times:

* raw ticks of the busiest symbol over one Wednesday;
* 1-minute mid bars of that symbol over 30 days;
* daily mid bars of every symbol over the whole set;

each as the median of ``--repeat`` runs after one warm-up, results materialized as numpy arrays.
The same queries run on pandas (per-symbol DataFrames in memory, ``DataFrame.resample``) and on
SQLite (stdlib ``sqlite3``, table with an index on ``(sym_id, ts)``; bars are fetched ticks
aggregated with numpy, as SQLite has no first/last aggregate). Queries slower than ``--slow``
seconds in their warm-up are timed once. Each engine's answer is checked against the store's.
The machine is shared and noisy: compare ratios, not absolute figures. Results go to
``bench/results/store.json`` (see :mod:`bench.results_io`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import results_io
from tickwire import bars as barlib
from tickwire.markethours import open_mask
from tickwire.model import BarUnit, JournaledBatch, PriceSide
from tickwire.store.duckdb import DuckDBStore
from tickwire.timeframes import Resolution, bucket_starts

DAY_NS = 86_400 * 10**9
START_NS = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC, a Monday
MAJORS = ["EURUSD", "USDJPY", "GBPUSD", "AUDUSD", "USDCAD", "USDCHF", "NZDUSD"]
CROSSES = ["EURGBP", "EURJPY", "GBPJPY", "EURCHF", "AUDJPY", "EURAUD", "GBPCHF", "CADJPY"]
EXTRA = ["AUDNZD", "EURCAD", "GBPAUD", "NZDJPY", "CHFJPY", "EURNZD", "GBPCAD", "XAUUSD"]


class Data:
    """Synthetic ticks in arrival (ts) order, as numpy columns."""

    def __init__(self, n: int, n_symbols: int, days: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        names = (MAJORS + CROSSES + EXTRA + [f"SYM{i:03d}" for i in range(200)])[:n_symbols]
        self.symbols = tuple(names)
        # intensity by UTC hour: quiet Asia, busy London/NY overlap, sparse rollover
        hour_weight = np.ones(24)
        hour_weight[7:17] = 2.5
        hour_weight[12:16] = 4.0
        hour_weight[21:23] = 0.3
        span = days * DAY_NS
        ts = np.empty(0, dtype=np.int64)
        while len(ts) < n:
            cand = START_NS + rng.integers(0, span, size=int(n * 1.6), dtype=np.int64)
            hour = (cand // 3_600_000_000_000) % 24
            keep = open_mask(cand) & (rng.random(len(cand)) < hour_weight[hour] / 4.0)
            ts = np.concatenate((ts, cand[keep]))
        ts = np.sort(ts[:n])
        weight = np.array([2.5 if s in MAJORS else 1.0 for s in names])
        weight[0] = 2.7  # EURUSD, the busiest: 8.8 % of the ticks, as in measurements/storage.md
        self.sym = rng.choice(len(names), size=n, p=weight / weight.sum()).astype(np.uint16)
        self.ts = ts
        self.bid = np.empty(n)
        self.ask = np.empty(n)
        self.seq = np.empty(n, dtype=np.uint64)
        for i, name in enumerate(names):
            mask = self.sym == i
            k = int(mask.sum())
            jpy = name.endswith("JPY")
            level = 150.0 if jpy else (2000.0 if name.startswith("XAU") else 1.1)
            decimals = 3 if jpy or name.startswith("XAU") else 5
            steps = rng.normal(0.0, 0.006 / np.sqrt(max(k / days, 1.0)), size=k)
            price = level * np.exp(np.cumsum(steps))
            spread = level * 1e-4 * rng.uniform(0.5, 2.0, size=k)
            self.bid[mask] = np.round(price, decimals)
            self.ask[mask] = np.round(price + spread, decimals)
            self.seq[mask] = np.arange(1, k + 1, dtype=np.uint64)
        self.mid = barlib.mid(self.bid, self.ask)

    def __len__(self) -> int:
        return len(self.ts)

    def batches(self, size: int, lo: int = 0, hi: int | None = None) -> list[JournaledBatch]:
        hi = len(self) if hi is None else hi
        return [
            JournaledBatch(
                epoch=1,
                first_offset=a + 1,
                symbols=self.symbols,
                sym=self.sym[a : min(a + size, hi)],
                seq=self.seq[a : min(a + size, hi)],
                ts=self.ts[a : min(a + size, hi)],
                bid=self.bid[a : min(a + size, hi)],
                ask=self.ask[a : min(a + size, hi)],
            )
            for a in range(lo, hi, size)
        ]


def files_size(directory: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in directory.glob(pattern))


def timed(fn: Callable[[], Any], repeat: int, slow: float) -> tuple[float, Any]:
    """Median seconds of ``repeat`` runs after a warm-up (one run if the warm-up is slow)."""
    t0 = time.perf_counter()
    result = fn()
    warm = time.perf_counter() - t0
    if warm > slow:
        return warm, result
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def check(
    name: str, got: tuple[int, int, float, float], want: tuple[int, int, float, float]
) -> bool:
    """Compare (bars, ticks, sum of opens, sum of closes); prints a warning on disagreement."""
    ok = got[:2] == want[:2] and np.allclose(got[2:], want[2:], rtol=1e-12, atol=0)
    if not ok:
        print(f"WARNING: {name} disagrees with the store: {got} != {want}", file=sys.stderr)
    return ok


def summary(start: Any, open_: Any, close: Any, ticks: Any) -> tuple[int, int, float, float]:
    return len(start), int(np.sum(ticks)), float(np.sum(open_)), float(np.sum(close))


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.1f}" if ms < 100 else f"{ms:,.0f}"


def ratio(a: float, b: float) -> str:
    r = b / a
    return f"{r:.2f}×" if r < 10 else f"{r:,.0f}×"


@dataclass
class Queries:
    """The three timed queries' parameters, and the store's answers as (bars, ticks, Σo, Σc)."""

    busiest: str
    day: tuple[int, int]
    month: tuple[int, int]
    everything: tuple[int, int]
    want: dict[str, tuple[int, int, float, float]] = field(default_factory=dict)


M1 = Resolution(1, BarUnit.MINUTE)
D1 = Resolution(1, BarUnit.DAY)


def make_queries(data: Data, days: int) -> Queries:
    wed = START_NS + (2 + 7 * (days // 14)) * DAY_NS  # a Wednesday in the middle
    month_start = START_NS + max(0, days - 37) * DAY_NS
    return Queries(
        busiest=data.symbols[0],
        day=(wed, wed + DAY_NS),
        month=(month_start, month_start + 30 * DAY_NS),
        everything=(START_NS - 7 * DAY_NS, START_NS + (days + 7) * DAY_NS),
    )


async def run_store(
    args: argparse.Namespace, data: Data, q: Queries, tmp: Path
) -> tuple[dict[str, float], dict[str, float], int]:
    """Ingest rates, query medians (s) and the file size of the DuckDB store."""
    ingest: dict[str, float] = {}
    probe = min(len(data), args.probe_ticks)
    for size in (10_000, 100_000):
        store = await DuckDBStore.open(tmp / f"probe{size}.duckdb")
        batches = data.batches(size, 0, probe)
        t0 = time.perf_counter()
        for b in batches:
            await store.apply([b])
        ingest[f"{size:,} ticks per apply (first {probe:,} ticks, fresh store)"] = probe / (
            time.perf_counter() - t0
        )
        await store.aclose()
    path = tmp / "store.duckdb"
    store = await DuckDBStore.open(path)
    t0 = time.perf_counter()
    for b in data.batches(args.batch):
        await store.apply([b])
    ingest[f"{args.batch:,} ticks per apply, full build"] = len(data) / (time.perf_counter() - t0)
    await store.aclose()
    size_bytes = files_size(tmp, "store.duckdb*")

    store = await DuckDBStore.open(path)
    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        "raw": lambda: store.ticks(q.busiest, *q.day, limit=10_000_000),
        "1m": lambda: store.bars(q.busiest, M1, PriceSide.MID, *q.month, limit=10_000_000),
        "1d": lambda: store.bars_many(data.symbols, D1, PriceSide.MID, *q.everything),
    }
    medians: dict[str, float] = {}
    answers: dict[str, Any] = {}
    for name, fn in queries.items():
        await fn()
        times = []
        for _ in range(args.repeat):
            gc.collect()
            t0 = time.perf_counter()
            answers[name] = await fn()
            times.append(time.perf_counter() - t0)
        medians[name] = statistics.median(times)
    await store.aclose()
    raw, m1, d1 = answers["raw"], answers["1m"], answers["1d"]
    q.want["raw"] = (len(raw), len(raw), float(raw.bid.sum()), float(raw.ask.sum()))
    q.want["1m"] = summary(m1.start, m1.open, m1.close, m1.ticks)
    q.want["1d"] = summary(
        *(
            np.concatenate([getattr(c, k) for c in d1.values()])
            for k in ("start", "open", "close", "ticks")
        )
    )
    return ingest, medians, size_bytes


def run_pandas(args: argparse.Namespace, data: Data, q: Queries) -> dict[str, float]:
    """The same queries on per-symbol DataFrames with a DatetimeIndex, in memory."""
    import pandas as pd

    frames = {}
    for i, name in enumerate(data.symbols):
        mask = data.sym == i
        frames[name] = pd.DataFrame(
            {"bid": data.bid[mask], "ask": data.ask[mask], "mid": data.mid[mask]},
            index=pd.DatetimeIndex(data.ts[mask].view("datetime64[ns]")),
        )

    def window(f: Any, lo: int, hi: int) -> Any:
        index = f.index.asi8
        return f.iloc[np.searchsorted(index, lo) : np.searchsorted(index, hi)]

    def resample(f: Any, rule: str) -> Any:
        ohlc = f["mid"].resample(rule).agg(["first", "max", "min", "last", "count"])
        ohlc = ohlc[ohlc["count"] > 0]
        return (
            ohlc.index.asi8,
            ohlc["first"].to_numpy(),
            ohlc["max"].to_numpy(),
            ohlc["min"].to_numpy(),
            ohlc["last"].to_numpy(),
            ohlc["count"].to_numpy(),
        )

    def raw() -> Any:
        part = window(frames[q.busiest], *q.day)
        return part.index.asi8, part["bid"].to_numpy(), part["ask"].to_numpy()

    def m1() -> Any:
        return resample(window(frames[q.busiest], *q.month), "1min")

    def d1() -> Any:
        return {name: resample(f, "1D") for name, f in frames.items()}

    out: dict[str, float] = {}
    out["raw"], r = timed(raw, args.repeat, args.slow)
    check("pandas raw", (len(r[0]), len(r[0]), float(r[1].sum()), float(r[2].sum())), q.want["raw"])
    out["1m"], r = timed(m1, args.repeat, args.slow)
    check("pandas 1m", summary(r[0], r[1], r[4], r[5]), q.want["1m"])
    out["1d"], r = timed(d1, args.repeat, args.slow)
    cols = (np.concatenate([v[k] for v in r.values()]) for k in (0, 1, 4, 5))
    check("pandas 1d", summary(*cols), q.want["1d"])
    return out


def run_sqlite(
    args: argparse.Namespace, data: Data, q: Queries, tmp: Path
) -> tuple[float, dict[str, float], int, int]:
    """Ingest rate, query medians (s), file size and row count of a SQLite tick table."""
    n = min(len(data), args.sqlite_ticks)
    path = tmp / "ticks.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        'CREATE TABLE ticks (sym_id INTEGER NOT NULL, epoch INTEGER NOT NULL, "offset" '
        "INTEGER NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, bid REAL NOT NULL, "
        "ask REAL NOT NULL)"
    )
    con.execute("CREATE INDEX ticks_sym_ts ON ticks (sym_id, ts)")
    t0 = time.perf_counter()
    for a in range(0, n, args.batch):
        b = min(a + args.batch, n)
        rows = zip(
            data.sym[a:b].tolist(),
            [1] * (b - a),
            range(a + 1, b + 1),
            data.seq[a:b].tolist(),
            data.ts[a:b].tolist(),
            data.bid[a:b].tolist(),
            data.ask[a:b].tolist(),
            strict=True,
        )
        with con:
            con.executemany("INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    rate = n / (time.perf_counter() - t0)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = files_size(tmp, "ticks.sqlite*")

    def fetch(sym_id: int | None, lo: int, hi: int) -> Any:
        where = "ts >= ? AND ts < ?" + ("" if sym_id is None else " AND sym_id = ?")
        params: tuple[int, ...] = (lo, hi) if sym_id is None else (lo, hi, sym_id)
        rows = con.execute(
            f'SELECT sym_id, ts, "offset", bid, ask FROM ticks WHERE {where} '
            'ORDER BY sym_id, ts, "offset"',
            params,
        ).fetchall()
        cols = list(zip(*rows, strict=True)) or [()] * 5
        return (
            np.array(cols[0], np.int64),
            np.array(cols[1], np.int64),
            np.array(cols[2], np.int64),
            np.array(cols[3], np.float64),
            np.array(cols[4], np.float64),
        )

    def bars(lo: int, hi: int, res: Resolution, sym_id: int | None) -> Any:
        sym, ts, off, bid, ask = fetch(sym_id, lo, hi)
        out = {}
        for s in np.unique(sym).tolist():
            m = sym == s
            starts = bucket_starts(ts[m], res)
            out[s] = barlib.aggregate(ts[m], off[m], barlib.mid(bid[m], ask[m]), starts)
        return out

    full = n == len(data)
    out: dict[str, float] = {}
    out["raw"], r = timed(lambda: fetch(0, *q.day), args.repeat, args.slow)
    if full:
        check(
            "sqlite raw",
            (len(r[1]), len(r[1]), float(r[3].sum()), float(r[4].sum())),
            q.want["raw"],
        )
    out["1m"], r = timed(lambda: bars(*q.month, M1, 0), args.repeat, args.slow)
    if full:
        check("sqlite 1m", summary(r[0].start, r[0].open, r[0].close, r[0].ticks), q.want["1m"])
    out["1d"], r = timed(lambda: bars(*q.everything, D1, None), args.repeat, args.slow)
    if full:
        cols = (
            np.concatenate([getattr(v, k) for v in r.values()])
            for k in ("start", "open", "close", "ticks")
        )
        check("sqlite 1d", summary(*cols), q.want["1d"])
    con.close()
    return rate, out, size, n


def report(
    args: argparse.Namespace,
    data: Data,
    q: Queries,
    store: tuple[dict[str, float], dict[str, float], int],
    pandas: dict[str, float],
    sqlite: tuple[float, dict[str, float], int, int],
) -> dict[str, Any]:
    """Print the tables; return the results document's ``results``."""
    ingest, duck, duck_size = store
    sqlite_rate, sq, sqlite_size, n_sql = sqlite
    print(f"\n## Tick store: {len(data):,} ticks, {len(data.symbols)} symbols, {args.days} days\n")
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs. Queries: median of "
        f"{args.repeat} after a warm-up (one run if the warm-up took over {args.slow:g} s). "
        "The machine is shared and noisy (up to 2× between runs): compare ratios.\n"
    )
    print("| ingest | ticks/s |\n|---|---|")
    for label, rate in ingest.items():
        print(f"| DuckDBStore.apply, {label} | {rate:,.0f} |")
    print(
        f"| SQLite executemany, {args.batch:,} per commit, WAL, synchronous=NORMAL "
        f"({n_sql:,} ticks) | {sqlite_rate:,.0f} |\n"
    )
    print("| size at rest | bytes/tick |\n|---|---|")
    print(f"| DuckDB store file (ticks + bars_1m) | {duck_size / len(data):.1f} |")
    print(f"| SQLite table + index | {sqlite_size / n_sql:.1f} |\n")
    n_bars_1d = q.want["1d"][0]
    head = (
        f"raw ticks, {q.busiest}, 1 day ({q.want['raw'][0]:,} ticks)",
        f"1m mid bars, {q.busiest}, 30 days ({q.want['1m'][0]:,} bars)",
        f"1d mid bars, all {len(data.symbols)} symbols, whole set ({n_bars_1d:,} bars)",
    )
    print("| median ms (ratio to the store) | " + " | ".join(head) + " |")
    print("|---|---|---|---|")
    rows = {"DuckDBStore": duck, "pandas, in memory": pandas, "SQLite, index (sym_id, ts)": sq}
    for engine, row in rows.items():
        cells = [
            fmt_ms(row[k]) + ("" if row is duck else f" ({ratio(duck[k], row[k])})")
            for k in ("raw", "1m", "1d")
        ]
        print(f"| {engine} | " + " | ".join(cells) + " |")
    print(
        "\nRatio: that engine's time divided by the store's (above 1× the store is faster). "
        "pandas holds everything in RAM, sorted per symbol, and pays no I/O or thread hop. "
        "SQLite bars are fetched rows aggregated with tickwire.bars (no first/last aggregate)."
    )
    if n_sql < len(data):
        print(f"\nSQLite holds only the first {n_sql:,} ticks (--sqlite-ticks).")
    return {
        "ticks": len(data),
        "symbols": len(data.symbols),
        "days": args.days,
        "repeat": args.repeat,
        "busiest": q.busiest,
        "answers": {k: {"bars": v[0], "ticks": v[1]} for k, v in q.want.items()},
        "queries_ms": {
            "duckdb": {k: v * 1000 for k, v in duck.items()},
            "pandas": {k: v * 1000 for k, v in pandas.items()},
            "sqlite": {k: v * 1000 for k, v in sq.items()},
        },
        "ingest_tps": [
            {"what": f"DuckDBStore.apply, {label}", "tps": rate} for label, rate in ingest.items()
        ]
        + [
            {
                "what": f"SQLite executemany, {args.batch:,} per commit, WAL",
                "tps": sqlite_rate,
                "ticks": n_sql,
            }
        ],
        "bytes_per_tick": {
            "duckdb": duck_size / len(data),
            "sqlite": sqlite_size / n_sql,
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = Data(args.ticks, args.symbols, args.days)
    print(
        f"generated {len(data):,} ticks in {time.perf_counter() - t0:.1f} s; timing the store...",
        file=sys.stderr,
    )
    q = make_queries(data, args.days)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        store = asyncio.run(run_store(args, data, q, tmp))
        print("pandas...", file=sys.stderr)
        pandas = run_pandas(args, data, q)
        print("SQLite...", file=sys.stderr)
        sqlite = run_sqlite(args, data, q, tmp)
    return report(args, data, q, store, pandas, sqlite)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=10_000_000)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--batch", type=int, default=10_000, help="ticks per apply")
    parser.add_argument(
        "--probe-ticks",
        type=int,
        default=2_000_000,
        help="ticks fed to the fresh stores that measure ingest per batch size",
    )
    parser.add_argument(
        "--sqlite-ticks",
        type=int,
        default=None,
        help="load only this many ticks into SQLite (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--slow", type=float, default=3.0, help="time a query once if its warm-up takes longer (s)"
    )
    parser.add_argument("--tmp", default=None, help="directory for the temporary files")
    results_io.add_mode_args(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.quick:
        args.ticks, args.probe_ticks = 200_000, 200_000
    if args.tiny:
        args.ticks, args.probe_ticks, args.repeat = 20_000, 20_000, 1
    if args.sqlite_ticks is None:
        args.sqlite_ticks = args.ticks
    results = run(args)
    results_io.write(
        "store",
        args,
        results,
        module="bench.store_bench",
        seconds=time.perf_counter() - started,
        argv=argv,
    )


if __name__ == "__main__":
    main()
