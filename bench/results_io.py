"""What every workload shares: the run mode (full, quick, tiny), and writing its results as JSON.

Each workload writes one JSON document (by default ``bench/results/<workload>.json`` for a full
run, ``bench/results/quick/<workload>.json`` for ``--quick`` and ``bench/results/tiny/`` for
``--tiny``; ``--out`` overrides it). :mod:`bench.report` renders ``BENCHMARKS.md`` from the full
run's files. A document holds::

    {"workload": "ingest", "mode": "full", "command": "python -m bench.ingest_bench",
     "date": "2026-11-28T20:00:00Z", "seconds": 95.1, "machine": {...}, "results": {...}}

Only the full runs' files (``bench/results/*.json``) are committed: they are what
``BENCHMARKS.md`` says. Quick and tiny runs, logs and ad-hoc files are ignored by git.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MODES = ("full", "quick", "tiny")
LIBRARIES = (
    "numpy",
    "duckdb",
    "msgspec",
    "uvicorn",
    "uvloop",
    "httptools",
    "starlette",
    "picows",
    "websockets",
    "pandas",
    "fastapi",
)


def add_mode_args(
    parser: argparse.ArgumentParser,
    out_help: str = "results JSON (default: bench/results/[quick/|tiny/]<workload>.json)",
) -> None:
    """``--quick``, ``--tiny`` and ``--out`` (results JSON path)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    group.add_argument(
        "--tiny", action="store_true", help="seconds: only checks that the workload still runs"
    )
    parser.add_argument("--out", type=Path, default=None, help=out_help)


def mode(args: argparse.Namespace) -> str:
    return "tiny" if args.tiny else "quick" if args.quick else "full"


def default_path(workload: str, run_mode: str) -> Path:
    return RESULTS / ("" if run_mode == "full" else run_mode) / f"{workload}.json"


def _first_line(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    if commit is None:
        return None
    dirty = _first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "bench"])
    return commit + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """The machine and software the figures were measured with."""
    versions: dict[str, str] = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            pass
    node = _first_line(["node", "--version"])
    if node:
        versions["node"] = node.lstrip("v")
    ws = ROOT / "bench" / "fanout_peers" / "node_modules" / "ws" / "package.json"
    if ws.exists():
        versions["ws (Node)"] = json.loads(ws.read_text())["version"]
    wrk = _first_line(["wrk", "--version"])
    if wrk:
        versions["wrk"] = wrk.split()[1].removeprefix("debian/") if len(wrk.split()) > 1 else wrk
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": versions,
        "commit": _git_commit(),
    }


def command(module: str, argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    return " ".join(["python", "-m", module, *(shlex.quote(a) for a in argv)])


def write(
    workload: str,
    args: argparse.Namespace,
    results: dict[str, Any],
    *,
    module: str,
    seconds: float,
    argv: list[str] | None = None,
) -> Path:
    """Write a workload's results document; return its path."""
    run_mode = mode(args)
    path = args.out or default_path(workload, run_mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "workload": workload,
        "mode": run_mode,
        "command": command(module, argv),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 1),
        "machine": machine(),
        "results": results,
    }
    path.write_text(json.dumps(clean(doc), indent=1, allow_nan=False) + "\n")
    print(f"\nresults: {_show(path)}", flush=True)
    return path


def clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, tuples to lists, NaN and infinities to null."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and (value != value or abs(value) == float("inf")):
        return None
    return value


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
