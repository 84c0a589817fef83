"""Render BENCHMARKS.md from the workloads' results (JSON) and the analysis notes (Markdown).

    python -m bench.report                   # bench/results/*.json -> BENCHMARKS.md
    python -m bench.report --check           # fail if BENCHMARKS.md is not what it would render
    python -m bench.report --results bench/results/quick --out bench/results/quick/BENCHMARKS.md

Tables, figures and the verdicts against the targets are generated from the results
(``bench/results/<workload>.json``, written by each workload, see :mod:`bench.results_io`).
The prose (setup, analysis, next steps) lives in ``bench/notes/<workload>.md`` and is
included verbatim: the generated part goes where the note has a line ``<!-- results -->``
(before the note if it has none). ``bench/notes/intro.md`` opens the document; a note without a
workload (``backfill.md``) is included as it is. Earlier results worth keeping beside the
current ones go to ``bench/results/previous/<name>.json`` (their ``workload`` field says whose
they are): they are rendered where that workload's note has ``<!-- previous:<name> -->`` (or
``<!-- previous -->`` if the name is the workload's), else after the current results, labelled
with their date, command and machine.

``make bench`` overwrites ``bench/results/<workload>.json``. When the notes still cite the figures
a new run replaces, move the old file to ``bench/results/previous/`` first and put a
``<!-- previous -->`` marker beside that prose. Results with a ``source`` field were not written
by a workload: they say where their figures come from (the first ones were transcribed from the
hand-written BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results_io import RESULTS, ROOT

NOTES = ROOT / "bench" / "notes"
MARKER = "<!-- results -->"
PREVIOUS = "<!-- previous -->"


@dataclass(frozen=True)
class Section:
    workload: str | None  # None: a note only
    note: str
    title: str


SECTIONS = (
    Section("ingest", "ingest", "Durable ingest through the tickplant (issue 2)"),
    Section("store", "store", "History store: DuckDB against pandas and SQLite (issue 2)"),
    Section(None, "backfill", "Backfill on first start (issue 2)"),
    Section("rest", "rest", "REST (issue 3)"),
    Section("encode", "encode", "Stream encoding and framing (issue 4)"),
    Section("fanout", "fanout", "Stream fan-out (issue 4)"),
    Section("resume", "resume", "Stream resume (issue 4)"),
    Section("memory", "memory", "Memory per idle connection (issue 4)"),
)


# -- formatting ------------------------------------------------------------------------------


def n0(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def ms_short(v: float | None) -> str:
    """Milliseconds in a dense cell: one decimal below 10 ms, whole ms above."""
    if v is None:
        return "–"
    return f"{v:.1f}" if v < 10 else f"{v:,.0f}"


def rate(v: float | None) -> str:
    """Ticks (or deliveries) per second, compact: 5.04 M, 727 k, 80.6 k."""
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e5:
        return f"{v / 1e3:.0f} k"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def times(v: float) -> str:
    return f"{v:.2f}×" if v < 10 else f"{v:,.0f}×"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def table(head: list[str], align: str, rows: list[list[str]]) -> str:
    """A Markdown table; ``align`` has one character per column: l or r."""
    lines = ["| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def targets(rows: list[tuple[str, str, bool]]) -> str:
    """The generated 'targets in this run' list."""
    if not rows:
        return ""
    out = ["Targets, from these figures:", ""]
    out += [f"- {what}: {verdict(ok)} ({measured})." for what, measured, ok in rows]
    return "\n".join(out)


# -- one renderer per workload ---------------------------------------------------------------


def render_ingest(r: dict[str, Any]) -> str:
    rows = []
    for row in r["rows"]:
        live, alone, plain = row["live_tps"], row["alone_tps"], row["append_tps"]
        rows.append(
            [
                f"{row['batch']:,}",
                n0(live),
                n0(alone),
                n0(plain),
                f"{live / plain:.2f}",
                f"{alone / plain:.2f}",
                f"{row['commit_p50_ms']:.2f} / {row['commit_p99_ms']:.2f}",
                f"{row['append_p50_ms']:.2f} / {row['append_p99_ms']:.2f}",
            ]
        )
    head = ["batch", "tickplant + live state, ticks/s", "tickplant alone", "plain append"]
    head += ["ratio (+ live)", "ratio (alone)", "commit p50 / p99 ms", "append p50 / p99 ms"]
    out = [table(head, "r" * 8, rows)]
    by_batch = {row["batch"]: row for row in r["rows"]}
    goals: list[tuple[str, str, bool]] = []
    if (big := by_batch.get(10_000)) is not None:
        goals.append(
            (
                "≥ 1,000,000 durable ticks/s at batch 10,000 (with live state)",
                f"{n0(big['live_tps'])}/s",
                big["live_tps"] >= 1e6,
            )
        )
        goals.append(
            (
                "within 2× of the plain append at batch 10,000 (tickplant alone)",
                f"ratio {big['alone_tps'] / big['append_tps']:.2f}",
                big["alone_tps"] * 2 >= big["append_tps"],
            )
        )
    if (mid := by_batch.get(100)) is not None:
        goals.append(
            (
                "≥ 100,000 ticks/s at batch 100 (with live state)",
                f"{n0(mid['live_tps'])}/s",
                mid["live_tps"] >= 1e5,
            )
        )
    out.append(targets(goals))
    return "\n\n".join(x for x in out if x)


STORE_TARGETS_MS = {"raw": 5.0, "1m": 15.0, "1d": 100.0}
STORE_ENGINES = {
    "duckdb": "**DuckDBStore**",
    "pandas": "pandas `resample`, in memory",
    "sqlite": "SQLite, index (sym_id, ts)",
}


def render_store(r: dict[str, Any]) -> str:
    a, sym = r["answers"], r["busiest"]
    head = [
        "median ms (engine ÷ store)",
        f"raw ticks, {sym}, 1 day ({a['raw']['ticks']:,} ticks)",
        f"1m mid bars, {sym}, 30 days ({a['1m']['bars']:,} bars)",
        f"1d mid bars, all {r['symbols']} symbols, whole set ({a['1d']['bars']:,} bars)",
    ]
    q = r["queries_ms"]
    rows = []
    for engine, label in STORE_ENGINES.items():
        cells = [label]
        for k, target in STORE_TARGETS_MS.items():
            v = q[engine][k]
            if engine == "duckdb":
                cells.append(f"**{ms(v)}** (target ≤ {target:g})")
            else:
                cells.append(f"{ms(v)} ({times(v / q['duckdb'][k])})")
        rows.append(cells)
    out = [
        f"{r['ticks']:,} synthetic ticks over {r['symbols']} symbols and {r['days']} days; each "
        f"query is the median of {r['repeat']} runs after a warm-up.",
        table(head, "llll", rows),
    ]
    ingest_rows = []
    for row in r["ingest_tps"]:
        if "tps_min" in row:
            figure = f"{n0(row['tps_min'])}–{n0(row['tps_max'])}"
        else:
            figure = n0(row["tps"])
        ingest_rows.append([row["what"], figure])
    out.append(table(["ingest into the store", "ticks/s"], "lr", ingest_rows))
    size = r["bytes_per_tick"]
    out.append(
        table(
            ["size at rest", "bytes/tick"],
            "lr",
            [
                ["DuckDB store (ticks + 1-minute rollup)", f"{size['duckdb']:.1f}"],
                ["SQLite table + index", f"{size['sqlite']:.1f}"],
            ],
        )
    )
    goals = [
        (
            f"{label} ≤ {target:g} ms",
            f"{ms(q['duckdb'][k])} ms",
            q["duckdb"][k] <= target,
        )
        for k, target, label in zip(
            STORE_TARGETS_MS,
            STORE_TARGETS_MS.values(),
            ("raw ticks of one day", "30 days of 1-minute bars", "daily bars of every symbol"),
            strict=True,
        )
    ]
    out.append(targets(goals))
    return "\n\n".join(out)


def _case(name: str) -> str:
    """Code-format the path at the start of a REST case name."""
    if name.startswith("/"):
        path, _, rest = name.partition(",")
        return f"`{path}`," + rest if rest else f"`{path}`"
    return name


def render_rest(r: dict[str, Any]) -> str:
    rows = [
        [
            _case(c["case"]),
            n0(c["rps"]),
            f"{c['vs_baseline']:.2f}×",
            ms(c["p50_ms"]),
            ms(c["p99_ms"]),
        ]
        for c in r["cases"]
    ]
    out = [
        f"wrk, {r['connections']} connections, over loopback (the server and wrk share the "
        f"machine); {r['rounds']} round(s) × {r['seconds']:g} s per case, the cases alternating; "
        f"median. The server has {r['backfill_days']:g} days of history and runs the simulator "
        f"in load mode at {r['load_rate']} ticks/s.",
        table(["case", "req/s", "vs baseline", "p50 ms", "p99 ms"], "lrrrr", rows),
    ]
    live = next((c for c in r["cases"] if c["case"].startswith("/api/v1/live")), None)
    quotes = next((c for c in r["cases"] if c["case"].startswith("/v1/quotes")), None)
    goals = []
    for c in (live, quotes):
        if c is None:
            continue
        path = c["case"].split(",")[0]
        goals.append(
            (f"`{path}` ≥ 2× the baseline", f"{c['vs_baseline']:.2f}×", c["vs_baseline"] >= 2)
        )
        goals.append((f"`{path}` p99 ≤ 20 ms", f"{ms(c['p99_ms'])} ms", c["p99_ms"] <= 20))
    out.append(targets(goals))
    return "\n\n".join(out)


def render_encode(r: dict[str, Any]) -> str:
    names = list(r["encode"][0]["tps"]) if r["encode"] else []
    base = r.get("baseline")
    rows = []
    for row in r["encode"]:
        cells = [f"{row['ticks']:,}"]
        for name in names:
            v = row["tps"][name]
            extra = (
                f" ({times(v / row['tps'][base])})" if base in row["tps"] and name != base else ""
            )
            cells.append(rate(v) + extra)
        rows.append(cells)
    out = [
        "Encode once per flush, ticks/s on one core (in brackets: × the naive baseline, "
        "`json.dumps` per tick); best of "
        f"{r['repeat']} runs of {r['seconds']:g} s.",
        table(["ticks per flush", *names], "r" * (1 + len(names)), rows),
        "Frame per client per flush (splicing the encoded pieces of each client's symbols):",
        table(
            ["ticks per flush", "client symbols", "frame bytes", "frames/s", "delivered ticks/s"],
            "rlrrr",
            [
                [
                    f"{f['ticks']:,}",
                    f"{f['format']}, {f['symbols']}",
                    f"{f['frame_bytes']:,}",
                    rate(f["frames_per_s"]),
                    rate(f["delivered_tps"]),
                ]
                for f in r["frame"]
            ],
        ),
    ]
    return "\n\n".join(out)


FANOUT_COLUMNS = {
    "tickwire": "tickwire",
    "node_batched": "Node `ws`, batched like ours",
    "tcp_ceiling": "bare TCP ceiling",
    "feedadv": "tickwire `/feedadv`, one tick per frame",
    "node_single": "Node `ws`, one tick per frame",
    "naive_ws": "naive Python server",
}
FANOUT_DETAIL = {"tickwire": 2, "node_batched": 2, "tcp_ceiling": 1}  # 2: + CPU, 1: latency
STANDARD_RATES = {"all": {100: 50_000, 1000: 10_000, 5000: 2_000}}
STANDARD_RATES["random"] = {100: 50_000, 1000: 50_000, 5000: 10_000}


def _fanout_cell(p: dict[str, Any], detail: int) -> str:
    if "error" in p:
        return "error"
    text = f"{rate(p['delivered'])}/s"
    if p.get("pct") is not None and p["pct"] < 98:
        text += f" ({p['pct']:.0f} %)"
    if detail >= 1 and p.get("p99") is not None:
        text += f", p50 {ms_short(p['p50'])} / p99 {ms_short(p['p99'])} ms"
    if detail >= 2 and p.get("server_cpu") is not None:
        text += f", CPU {p['server_cpu']:.0f} %"
    if p.get("loss") or p.get("dup"):
        text += f", **loss {p.get('loss', 0):,} dup {p.get('dup', 0):,}**"
    return text


def render_fanout(r: dict[str, Any]) -> str:
    points = r["points"]
    servers = [s for s in FANOUT_COLUMNS if any(p["server"] == s for p in points)]
    cells: dict[tuple[int, str, int], dict[str, dict[str, Any]]] = {}
    for p in points:
        cells.setdefault((p["n"], p["mix"], p["rate"]), {})[p["server"]] = p
    rows = []
    for (n, mix, r_), group in cells.items():
        offered = next((p["offered"] for p in group.values() if p.get("offered")), None)
        stress = STANDARD_RATES.get(mix, {}).get(n) not in (None, r_)
        label = (
            f"{'stress: ' if stress else ''}{n:,} clients, "
            f"{'all symbols' if mix == 'all' else '5–10 random symbols'}, {r_:,} ticks/s"
            + (f" ({rate(offered)}/s offered)" if offered else "")
        )
        row = [label]
        for s in servers:
            p = group.get(s)
            row.append("–" if p is None else _fanout_cell(p, FANOUT_DETAIL.get(s, 0)))
        rows.append(row)
    head = ["cell", *(FANOUT_COLUMNS[s] for s in servers)]
    measured = [p for p in points if "error" not in p and p.get("loss") is not None]
    lossless = all(p["loss"] == 0 and p["dup"] == 0 for p in measured)
    out = [
        f"Delivered ticks/s (deliveries to all clients), latency p50 / p99 from emission to "
        f"receipt, and the server's CPU (100 % = one core); the tick source wakes every "
        f"{r['step_ms']:g} ms; windows of {r['window_s']:g} s after {r['warmup_s']:g} s of "
        f"warm-up. Every peer ran in the same run, one after the other. "
        + (
            "**Loss and duplicates were 0 in every cell.**"
            if measured and lossless
            else "Loss and duplicates are shown where they occurred."
            if measured
            else ""
        ),
        table(head, "l" * len(head), rows),
    ]
    goals = []
    for n, need, p99 in ((1000, 10e6, 50.0), (100, 5e6, 10.0)):
        p = cells.get((n, "all", STANDARD_RATES["all"][n]), {}).get("tickwire")
        if p is None or "error" in p:
            continue
        goals.append(
            (
                f"≥ {need / 1e6:.0f} M deliveries/s to {n:,} clients",
                f"{rate(p['delivered'])}/s",
                p["delivered"] >= need * 0.995,
            )
        )
        goals.append((f"p99 ≤ {p99:g} ms at {n:,} clients", f"{ms(p['p99'])} ms", p["p99"] <= p99))
    ahead = []
    for group in cells.values():
        ours, node = group.get("tickwire"), group.get("node_batched")
        if not ours or not node or "error" in ours or "error" in node:
            continue
        rel = ours["delivered"] / node["delivered"]
        won = rel > 1.02 or (
            rel >= 0.98
            and None not in (ours.get("p99"), node.get("p99"))
            and ours["p99"] < node["p99"]
        )
        ahead.append(won)
    if ahead:
        goals.append(
            (
                "ahead of the batched Node `ws` peer (more delivered, or as many with a lower p99)",
                f"in {sum(ahead)} of {len(ahead)} cells",
                all(ahead),
            )
        )
    top: dict[int, tuple[float, float]] = {}  # per N, at its highest offered load
    for group in cells.values():
        ours, naive = group.get("tickwire"), group.get("naive_ws")
        if not ours or not naive or "error" in ours or "error" in naive:
            continue
        if naive["delivered"] > 0 and ours["offered"] > top.get(ours["n"], (0.0, 0.0))[0]:
            top[ours["n"]] = (ours["offered"], ours["delivered"] / naive["delivered"])
    if top:
        goals.append(
            (
                "≥ 100× the naive server (at each client count's highest offered load)",
                ", ".join(f"{n:,} clients: {r:,.0f}×" for n, (_, r) in sorted(top.items())),
                all(r >= 100 for _, r in top.values()),
            )
        )
    out.append(targets(goals))
    return "\n\n".join(out)


def render_resume(r: dict[str, Any]) -> str:
    rows = []
    for s in r["sources"]:
        runs = len(s.get("runs") or [])
        seconds = (
            f"{s['seconds_min']:.3f}"
            if s["seconds_min"] == s["seconds_max"]
            else f"{s['seconds_min']:.3f}–{s['seconds_max']:.3f}"
        )
        source = s["source"] + (
            "" if s.get("ring_ticks") is None else f" (ring {s['ring_ticks']:,})"
        )
        rows.append(
            [
                source,
                f"{s['back']:,}",
                f"{s['rate']:,}",
                str(runs) if runs else "–",
                seconds,
                "yes" if s["gap_free"] else "**NO**",
            ]
        )
    head = ["replayed from", "missed ticks", "live load, ticks/s", "runs", "s to live", "gap-free"]
    out = [table(head, "lrrrrl", rows)]
    goals = [
        (
            f"resume of {s['back']:,} ticks ≤ 0.5 s, gap-free ({s['source']})",
            f"worst {s['seconds_max']:.3f} s",
            s["seconds_max"] <= 0.5 and s["gap_free"],
        )
        for s in r["sources"]
    ]
    out.append(targets(goals))
    return "\n\n".join(out)


MEMORY_LABELS = {**FANOUT_COLUMNS, "node_ws": "Node `ws`"}


def render_memory(r: dict[str, Any]) -> str:
    rows = [
        [
            MEMORY_LABELS.get(m["server"], m["server"]),
            "–" if m.get("n") is None else f"{m['n']:,}",
            f"{m['kib_per_conn']:.1f}",
        ]
        for m in r["entries"]
    ]
    out = [
        "Server RSS growth divided by the connections (authenticated, not subscribed), each "
        "server on its own in the same run.",
        table(["server", "idle connections", "KiB per connection"], "lrr", rows),
    ]
    goals = [
        (
            f"≤ 50 KiB per idle connection ({m['n']:,} connections)",
            f"{m['kib_per_conn']:.1f} KiB",
            m["kib_per_conn"] <= 50,
        )
        for m in r["entries"]
        if m["server"] == "tickwire" and m.get("n")
    ]
    out.append(targets(goals))
    return "\n\n".join(out)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "ingest": render_ingest,
    "store": render_store,
    "rest": render_rest,
    "encode": render_encode,
    "fanout": render_fanout,
    "resume": render_resume,
    "memory": render_memory,
}


# -- the document ----------------------------------------------------------------------------


def machine_line(m: dict[str, Any]) -> str:
    if m.get("description"):
        text = m["description"]
    else:
        mem = f", {m['memory_gib']:g} GiB RAM" if m.get("memory_gib") else ""
        text = f"{m.get('cores', '?')} cores, {m.get('cpu', '?')}{mem}, {m.get('os', '')}".rstrip(
            ", "
        )
    libs = ", ".join(f"{k} {v}" for k, v in (m.get("libraries") or {}).items())
    return f"{text}; Python {m.get('python', '?')}" + (f"; {libs}" if libs else "")


def machine_key(m: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in m.items() if k != "commit"}, sort_keys=True)


def provenance(doc: dict[str, Any], machine_ids: dict[str, str]) -> str:
    """Where the figures below come from: the command, the run, the date and the machine."""
    mid = machine_ids[machine_key(doc["machine"])]
    took = f", {doc['seconds']:,.0f} s" if doc.get("seconds") else ""
    commit = f", commit {doc['machine']['commit']}" if doc["machine"].get("commit") else ""
    line = (
        f"Measured with `{doc['command']}` ({doc['mode']} run of {doc['date'][:10]}{took}"
        f"{commit}; machine {mid})."
    )
    if doc.get("source"):
        line += " " + doc["source"]
    return line


def load(results: Path, workload: str) -> dict[str, Any] | None:
    path = results / f"{workload}.json"
    if not path.exists():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def render(results: Path, notes: Path, *, previous: Path | None = None) -> str:
    docs = {s.workload: load(results, s.workload) for s in SECTIONS if s.workload}
    prev: dict[str, dict[str, Any]] = {}
    if previous is not None:
        for path in sorted(previous.glob("*.json")):
            prev[path.stem] = json.loads(path.read_text())
    machines: dict[str, str] = {}
    for doc in [*docs.values(), *prev.values()]:
        if doc is not None:
            machines.setdefault(machine_key(doc["machine"]), chr(ord("A") + len(machines)))
    parts = ["# Benchmarks", ""]
    parts.append(
        "<!-- Generated by `python -m bench.report` from bench/results/*.json and "
        "bench/notes/*.md: edit those, not this file. -->"
    )
    parts.append("")
    intro = notes / "intro.md"
    if intro.exists():
        parts += [intro.read_text().strip(), ""]
    parts += ["## Machine and runs", ""]
    for key, mid in machines.items():
        parts.append(f"- **Machine {mid}:** {machine_line(json.loads(key))}")
    parts.append("")
    rows = []
    runs = [(s.workload, docs.get(s.workload)) for s in SECTIONS if s.workload]
    runs += [
        (
            doc["workload"] + (" (earlier)" if name == doc["workload"] else f" (earlier: {name})"),
            doc,
        )
        for name, doc in prev.items()
    ]
    for label, doc in runs:
        if doc is not None:
            rows.append(
                [
                    label,
                    doc["date"].replace("T", " ").removesuffix("Z")
                    + (" UTC" if "T" in doc["date"] else ""),
                    doc["mode"],
                    f"`{doc['command']}`",
                    machines[machine_key(doc["machine"])],
                ]
            )
    parts += [table(["workload", "date", "run", "command", "machine"], "lllll", rows), ""]
    for s in SECTIONS:
        parts += [f"## {s.title}", ""]
        note_path = notes / f"{s.note}.md"
        note = note_path.read_text().strip() if note_path.exists() else ""
        if s.workload:
            note = render_section(s.workload, note, docs.get(s.workload), prev, machines)
        parts += [note.strip(), ""]
    return "\n".join(parts).rstrip() + "\n"


def render_section(
    workload: str,
    note: str,
    doc: dict[str, Any] | None,
    prev: dict[str, dict[str, Any]],
    machines: dict[str, str],
) -> str:
    """The note with the current results at its marker, and earlier results at theirs."""
    current = section_results(workload, doc, machines)
    for name, earlier in prev.items():
        if earlier["workload"] != workload:
            continue
        marker = PREVIOUS if name == workload else PREVIOUS.replace("previous", f"previous:{name}")
        rendered = section_results(workload, earlier, machines)
        if marker in note:
            note = note.replace(marker, rendered)
        else:
            current += "\n\nEarlier results:\n\n" + rendered
    return note.replace(MARKER, current) if MARKER in note else current + "\n\n" + note


def section_results(workload: str, doc: dict[str, Any] | None, machines: dict[str, str]) -> str:
    if doc is None:
        return f"*No results yet for `{workload}`: see `make bench`.*"
    return provenance(doc, machines) + "\n\n" + RENDERERS[workload](doc["results"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--notes", type=Path, default=NOTES, help="notes directory")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be written"
    )
    args = parser.parse_args(argv)
    previous = args.results / "previous"
    text = render(args.results, args.notes, previous=previous if previous.is_dir() else None)
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run `python -m bench.report`", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
