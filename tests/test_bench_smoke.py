"""Every benchmark workload still runs, at a tiny size, and writes its results; the report renders.

The figures are not checked against targets here (a tiny run measures nothing useful): only
that each workload runs end to end, with its baseline or peers, and writes a results document
with the expected keys and positive figures. ``make bench`` runs the real thing. rest_bench
needs ``wrk`` and fanout_bench needs node and ``npm ci`` in bench/fanout_peers: ``make test``
installs them (``make bench-deps``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the module's results, so that the report test can render them."""
    return tmp_path_factory.mktemp("bench-results")


def run_bench(module: str, *args: str) -> str:
    """Run ``python -m bench.<module> --tiny ...`` from the repository root; return stdout."""
    out = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--tiny", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def load(path: Path, workload: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    assert doc["workload"] == workload
    assert doc["mode"] == "tiny"
    assert doc["command"].startswith("python -m bench.")
    assert doc["date"].endswith("Z")
    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["python"]
    assert "numpy" in machine["libraries"]
    results: dict[str, Any] = doc["results"]
    return results


def test_ingest(results: Path) -> None:
    """The tickplant against the plain fdatasync'ed append, per batch size."""
    out = run_bench("ingest_bench", "--sizes", "1,100", "--out", str(results / "ingest.json"))
    assert "| 100 |" in out and "plain append" in out
    r = load(results / "ingest.json", "ingest")
    assert [row["batch"] for row in r["rows"]] == [1, 100]
    for row in r["rows"]:
        for key in ("live_tps", "alone_tps", "append_tps", "commit_p50_ms", "commit_p99_ms"):
            assert row[key] > 0, key
        assert row["append_p50_ms"] > 0 and row["append_p99_ms"] > 0


def test_store(results: Path, tmp_path: Path) -> None:
    """The DuckDB store against pandas and SQLite, on the same ticks, answers checked."""
    out = run_bench("store_bench", "--tmp", str(tmp_path), "--out", str(results / "store.json"))
    assert "DuckDBStore" in out and "pandas" in out and "SQLite" in out
    r = load(results / "store.json", "store")
    for engine in ("duckdb", "pandas", "sqlite"):
        assert set(r["queries_ms"][engine]) == {"raw", "1m", "1d"}
        assert all(v > 0 for v in r["queries_ms"][engine].values()), engine
    assert r["answers"]["1d"]["bars"] > 0 and r["answers"]["1d"]["ticks"] == r["ticks"]
    assert len(r["ingest_tps"]) == 4 and all(row["tps"] > 0 for row in r["ingest_tps"])
    assert r["bytes_per_tick"]["duckdb"] > 0 and r["bytes_per_tick"]["sqlite"] > 0


def test_rest(results: Path) -> None:
    """wrk against the minimal FastAPI baseline and tickwire's endpoints, in the same run."""
    assert shutil.which("wrk"), "wrk is missing: run `make bench-deps`"
    out = run_bench("rest_bench", "--out", str(results / "rest.json"))
    assert "(baseline)" in out and "/api/v1/live" in out
    r = load(results / "rest.json", "rest")
    cases = r["cases"]
    assert len(cases) == 4 and cases[0]["baseline"] and cases[0]["vs_baseline"] == 1
    for case in cases:
        assert case["rps"] > 0 and case["p50_ms"] > 0 and case["p99_ms"] > 0, case["case"]
        assert case["non2xx"] == 0, case["case"]


def test_encode(results: Path) -> None:
    """The shipped encoders against the alternatives and json.dumps per tick."""
    out = run_bench("encode_bench", "--out", str(results / "encode.json"))
    assert "json.dumps per tick (naive)" in out
    r = load(results / "encode.json", "encode")
    assert r["baseline"] in r["encode"][0]["tps"]
    assert all(v > 0 for row in r["encode"] for v in row["tps"].values())
    assert len(r["frame"]) == 4
    for row in r["frame"]:
        assert row["frames_per_s"] > 0 and row["delivered_tps"] > 0 and row["frame_bytes"] > 0


def test_fanout_grid(results: Path) -> None:
    """tickwire (native and /feedadv) and the batched Node ws peer stream to 10 clients, with
    no loss where ticks carry positions and every offered tick delivered on /feedadv."""
    assert shutil.which("node"), "node is missing: run `make bench-deps`"
    out = run_bench("fanout_bench", "--only", "grid", "--out", str(results))
    assert "Node ws, batched like ours" in out
    assert not (results / "resume.json").exists() and not (results / "memory.json").exists()
    r = load(results / "fanout.json", "fanout")
    points = {p["server"]: p for p in r["points"]}
    assert set(points) == {"tickwire", "node_batched", "feedadv"}
    for name, p in points.items():
        assert "error" not in p, (name, p.get("error"))
        assert p["delivered"] > 0 and p["p50"] > 0 and p["p99"] > 0, name
        if name == "feedadv":  # no positions: counted, not checked per tick
            assert p["loss"] is None and 90 < p["pct"] < 110 and not p["closes"], p
        else:
            assert p["loss"] == 0 and p["dup"] == 0, name


def test_resume(results: Path) -> None:
    """A client resumes a few thousand ticks back from the ring, gap-free."""
    run_bench("fanout_bench", "--only", "resume", "--out", str(results))
    r = load(results / "resume.json", "resume")
    (source,) = r["sources"]
    assert source["source"] == "ring" and source["gap_free"]
    (run,) = source["runs"]
    assert run["replayed"] >= r["back"] and run["seconds"] > 0 and run["gap_free"]
    assert 0 < source["seconds_min"] <= source["seconds_max"]


def test_memory(results: Path) -> None:
    """Idle connections on tickwire and on the Node ws peer, in the same run."""
    run_bench("fanout_bench", "--only", "memory", "--out", str(results))
    r = load(results / "memory.json", "memory")
    entries = {m["server"]: m for m in r["entries"]}
    assert set(entries) == {"tickwire", "node_batched"}
    assert all(m["n"] == 50 for m in entries.values())
    assert entries["tickwire"]["kib_per_conn"] > 0


def test_report_renders(results: Path, tmp_path: Path) -> None:
    """The generator renders whatever results exist, with the notes, and the machine header."""
    out = tmp_path / "BENCHMARKS.md"
    subprocess.run(
        [sys.executable, "-m", "bench.report", "--results", str(results), "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    text = out.read_text()
    assert "## Machine and runs" in text and "Python " in text
    assert "What made it fast" in text  # a note, included verbatim
    for name in ("ingest", "store", "rest", "encode", "fanout", "resume", "memory"):
        if (results / f"{name}.json").exists():
            assert f"No results yet for `{name}`" not in text
            assert "tiny run of" in text


def test_benchmarks_md_is_generated() -> None:
    """BENCHMARKS.md is what `python -m bench.report` renders from bench/results and the notes."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.report", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
