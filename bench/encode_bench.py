"""Per-flush tick encoding and per-client framing of the native stream, against the alternatives.

For one flush of B ticks over 40 symbols (numpy columns, as the bus delivers them), it times:

* **encode once** (what the fan-out does per flush), in ticks/s:
  - ``msgspec Structs`` (the shipped :func:`~tickwire.protocol.encode_ticks_json`): one small
    Struct per tick, one ``encode`` per symbol;
  - ``pre-formatted bytes``: an f-string per tick from the columns' Python values;
  - ``msgspec columns + bytes %``: floats and ints encoded by msgspec a column at a time,
    split, and spliced per tick with ``bytes %``;
  - ``json.dumps per tick`` (baseline: what a naive server does, per tick, per client);
  - ``MessagePack Structs`` (:func:`~tickwire.protocol.encode_ticks_msgpack`);
* **frame per client** (what the fan-out does per client per flush): splice the pieces of
  k = 5..10 random symbols (the "random subset" mix) or of all 40 symbols, in frames/s and in
  delivered ticks/s (ticks carried by the frames).

Every variant's output is checked to read back to the same ticks. Each figure is the best of
``--repeat`` runs (the machine is shared: compare ratios, not absolute values).

    python -m bench.encode_bench              # flushes of 50, 1,000 and 10,000 ticks
    python -m bench.encode_bench --quick
    python -m bench.encode_bench --tiny       # only checks that it runs

Results go to ``bench/results/encode.json`` (see :mod:`bench.results_io`).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import time
from collections.abc import Callable

import msgspec
import numpy as np

from bench import results_io
from tickwire.model import JournaledBatch
from tickwire.protocol import (
    Piece,
    encode_ticks_json,
    encode_ticks_msgpack,
    frame_ticks_json,
    frame_ticks_msgpack,
)

SYMBOLS = tuple(f"SYM{i:03d}" for i in range(40))
T0 = 1_767_000_000_000_000_000
_enc = msgspec.json.Encoder()


def make_batch(size: int, *, first_offset: int = 1_000_001) -> JournaledBatch:
    """``size`` ticks over 40 symbols with 5-decimal prices, as numpy columns."""
    rng = np.random.default_rng(size)
    bid = np.round(0.5 + rng.random(size) * 2, 5)
    return JournaledBatch(
        epoch=1_795_888_548,
        first_offset=first_offset,
        symbols=SYMBOLS,
        sym=rng.integers(0, len(SYMBOLS), size).astype(np.uint16),
        seq=np.arange(1, size + 1, dtype=np.uint64) + 50_000,
        ts=T0 + np.arange(size, dtype=np.int64) * 137_000,
        bid=bid,
        ask=np.round(bid + 0.00012, 5),
    )


# -- the alternatives ---------------------------------------------------------------------


def preformatted(batch: JournaledBatch) -> dict[str, bytes]:
    """An f-string per tick from Python values (floats via repr: exact round trip)."""
    names, epoch, first = batch.symbols, batch.epoch, batch.first_offset
    lists: list[list[str]] = [[] for _ in names]
    for i, (s, q, t, b, a) in enumerate(
        zip(
            batch.sym.tolist(),
            batch.seq.tolist(),
            batch.ts.tolist(),
            batch.bid.tolist(),
            batch.ask.tolist(),
            strict=True,
        )
    ):
        lists[s].append(
            f'{{"s":"{names[s]}","b":{b!r},"a":{a!r},"t":{t},"e":{epoch},"o":{first + i},"q":{q}}}'
        )
    return {names[s]: ",".join(ticks).encode() for s, ticks in enumerate(lists) if ticks}


def columns_percent(batch: JournaledBatch) -> dict[str, bytes]:
    """Floats encoded by msgspec a column at a time, then ``bytes %`` per tick."""
    names, first = batch.symbols, batch.first_offset
    bids = _enc.encode(batch.bid.tolist())[1:-1].split(b",")
    asks = _enc.encode(batch.ask.tolist())[1:-1].split(b",")
    epoch = b"%d" % batch.epoch
    templates = [
        b'{"s":"' + n.encode() + b'","b":%s,"a":%s,"t":%d,"e":' + epoch + b',"o":%d,"q":%d}'
        for n in names
    ]
    lists: list[list[bytes]] = [[] for _ in names]
    for i, (s, b, a, t, q) in enumerate(
        zip(batch.sym.tolist(), bids, asks, batch.ts.tolist(), batch.seq.tolist(), strict=True)
    ):
        lists[s].append(templates[s] % (b, a, t, first + i, q))
    return {names[s]: b",".join(ticks) for s, ticks in enumerate(lists) if ticks}


def json_dumps_per_tick(batch: JournaledBatch) -> dict[str, bytes]:
    """The naive way: a dict per tick, ``json.dumps`` each (done per client in naive servers)."""
    out: dict[str, list[bytes]] = {}
    for tick in batch.ticks():
        out.setdefault(tick.symbol, []).append(
            json.dumps(
                {
                    "s": tick.symbol,
                    "b": tick.bid,
                    "a": tick.ask,
                    "t": tick.ts,
                    "e": tick.epoch,
                    "o": tick.offset,
                    "q": tick.seq,
                },
                separators=(",", ":"),
            ).encode()
        )
    return {name: b",".join(pieces) for name, pieces in out.items()}


ENCODERS: dict[str, Callable[[JournaledBatch], dict[str, bytes]]] = {
    "msgspec Structs (shipped)": encode_ticks_json,
    "pre-formatted bytes (f-string)": preformatted,
    "msgspec columns + bytes %": columns_percent,
    "json.dumps per tick (naive)": json_dumps_per_tick,
    "MessagePack Structs (shipped)": encode_ticks_msgpack,
}


# -- measuring ----------------------------------------------------------------------------


def best_rate(fn: Callable[[], object], units: int, *, repeat: int, budget: float) -> float:
    """Best units/s over ``repeat`` runs of about ``budget`` seconds each."""
    fn()
    calls = 1
    while True:  # calibrate: enough calls for about budget seconds
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= budget / 4 or calls >= 1 << 20:
            break
        calls *= 2
    calls = max(1, int(calls * budget / max(elapsed, 1e-9)))
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = max(best, units * calls / (time.perf_counter() - start))
    return best


def check(batch: JournaledBatch) -> None:
    """Every JSON variant reads back to the same ticks; MessagePack frames decode to them too."""
    reference = {k: json.loads(b"[" + v + b"]") for k, v in encode_ticks_json(batch).items()}
    for name, fn in ENCODERS.items():
        if "MessagePack" in name:
            frame = frame_ticks_msgpack(list(fn(batch).values()))
            got = msgspec.msgpack.decode(frame)["ticks"]
            want = [t for ticks in reference.values() for t in ticks]
            assert got == want, name
            continue
        parsed = {k: json.loads(b"[" + v + b"]") for k, v in fn(batch).items()}
        assert parsed == reference, name


def fmt(rate: float) -> str:
    return f"{rate / 1e6:,.2f} M" if rate >= 1e6 else f"{rate / 1e3:,.0f} k"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    results_io.add_mode_args(parser)
    parser.add_argument("--sizes", default="50,1000,10000", help="ticks per flush")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="per run")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    repeat, budget = args.repeat, args.seconds
    if args.quick:
        sizes, repeat, budget = [200], 2, 0.05
    elif args.tiny:
        sizes, repeat, budget = [50], 1, 0.005
    encode_rows: list[dict[str, object]] = []
    frame_rows: list[dict[str, object]] = []

    print("## Encode once per flush (ticks/s, one core)\n")
    print("| ticks per flush | " + " | ".join(ENCODERS) + " |")
    print("|---:|" + "---:|" * len(ENCODERS))
    for size in sizes:
        batch = make_batch(size)
        check(batch)
        rates = [
            best_rate(functools.partial(fn, batch), size, repeat=repeat, budget=budget)
            for fn in ENCODERS.values()
        ]
        print(f"| {size:,} | " + " | ".join(fmt(r) for r in rates) + " |")
        encode_rows.append({"ticks": size, "tps": dict(zip(ENCODERS, rates, strict=True))})

    print("\n## Frame per client per flush (JSON and MessagePack splice)\n")
    print("| ticks per flush | client symbols | frame bytes | frames/s | delivered ticks/s |")
    print("|---:|---|---:|---:|---:|")
    rng = random.Random(7)
    for size in sizes:
        batch = make_batch(size)
        for label, encode, frame in (
            ("JSON", encode_ticks_json, frame_ticks_json),
            ("MessagePack", encode_ticks_msgpack, frame_ticks_msgpack),
        ):
            pieces = encode(batch)
            for mix in ("5-10 random", "all 40"):
                clients = [
                    rng.sample(SYMBOLS, rng.randint(5, 10)) if mix != "all 40" else list(SYMBOLS)
                    for _ in range(64)
                ]
                selections = [[pieces[s] for s in c if s in pieces] for c in clients]
                frames = len(selections)
                ticks_per_frame = sum(p.ticks for sel in selections for p in sel) / frames
                run = functools.partial(frame_all, frame, selections)
                frame_rate = best_rate(run, frames, repeat=repeat, budget=budget)
                size_bytes = sum(len(frame(sel)) for sel in selections) // frames
                print(
                    f"| {size:,} | {label}, {mix} | {size_bytes:,} | {fmt(frame_rate)} | "
                    f"{fmt(frame_rate * ticks_per_frame)} |"
                )
                frame_rows.append(
                    {
                        "ticks": size,
                        "format": label,
                        "symbols": mix,
                        "frame_bytes": size_bytes,
                        "frames_per_s": frame_rate,
                        "delivered_tps": frame_rate * ticks_per_frame,
                    }
                )
    results_io.write(
        "encode",
        args,
        {
            "repeat": repeat,
            "seconds": budget,
            "baseline": "json.dumps per tick (naive)",
            "encode": encode_rows,
            "frame": frame_rows,
        },
        module="bench.encode_bench",
        seconds=time.perf_counter() - started,
        argv=argv,
    )


def frame_all(frame: Callable[[list[Piece]], bytes], selections: list[list[Piece]]) -> None:
    """Build one frame per client, as the fan-out does per flush."""
    for selection in selections:
        frame(selection)


if __name__ == "__main__":
    main()
