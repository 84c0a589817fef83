"""Each benchmark still runs, at a tiny size (figures are not checked here; see bench/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.slow


def run_bench(*args: str) -> str:
    """Run ``python -m bench.<name> ...`` from the repository root; return its stdout."""
    out = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_ingest_bench_runs() -> None:
    """The ingest benchmark prints its table with the plain-append baseline."""
    out = run_bench("bench.ingest_bench", "--quick", "--sizes", "100")
    assert "| 100 |" in out and "plain append" in out


def test_store_bench_runs(tmp_path: Path) -> None:
    """The store benchmark builds a small store and prints the pandas and SQLite comparison."""
    out = run_bench("bench.store_bench", "--quick", "--tmp", str(tmp_path))
    assert "DuckDBStore" in out and "pandas" in out and "SQLite" in out
