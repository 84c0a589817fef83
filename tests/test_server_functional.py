"""A real server process: health, clean shutdown, and no loss across SIGKILL."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tickwire.journal import Journal
from tickwire.model import Tick

from .serverproc import ServerProcess

pytestmark = pytest.mark.slow

LOAD = ("--load-rate", "3000", "--no-weekend-closed", "--backfill-days", "0.01")


def journal_ticks(journal_dir: Path) -> list[Tick]:
    """Every tick in a journal directory (opened on a copy, so the original is untouched)."""
    copy = journal_dir.parent / f"{journal_dir.name}-copy-{time.monotonic_ns()}"
    shutil.copytree(journal_dir, copy)
    journal, report = Journal.open(copy)
    assert not report.dropped
    ticks = [t for b in journal.read(0, max_ticks=10**9) for t in b.ticks()]
    journal.close()
    return ticks


def assert_gap_free(ticks: list[Tick]) -> None:
    """Offsets run 1..N and every symbol's seqs run 1..n, with no gap or duplicate."""
    offsets = np.array([t.offset for t in ticks])
    assert offsets[0] == 1 and (np.diff(offsets) == 1).all()
    by_symbol: dict[str, list[int]] = {}
    for t in ticks:
        by_symbol.setdefault(t.symbol, []).append(t.seq)
    for seqs in by_symbol.values():
        assert seqs == list(range(1, len(seqs) + 1))


def wait_for_offset(server: ServerProcess, offset: int, timeout: float = 30) -> int:
    """Poll /health until the journaled offset passes ``offset``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = int(server.health()["offset"])
        if current > offset:
            return current
        time.sleep(0.05)
    raise TimeoutError(f"offset did not pass {offset}")


def test_health_reports_position_and_status(tmp_path: Path) -> None:
    """/health is 200 with status, epoch and the last journaled offset, which advances."""
    with ServerProcess(tmp_path / "data", *LOAD) as server:
        first = server.health()
        assert first["status"] == "ok" and first["epoch"] > 0
        later = wait_for_offset(server, first["offset"] + 1000)
        assert later > first["offset"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_flushes(tmp_path: Path, sig: int) -> None:
    """SIGTERM/SIGINT exit 0 with everything acknowledged in the journal and the store."""
    server = ServerProcess(tmp_path / "data", *LOAD).start()
    try:
        acknowledged = wait_for_offset(server, 5000)
        assert server.terminate(sig) == 0, server.log()
    finally:
        server.__exit__()
    ticks = journal_ticks(tmp_path / "data" / "journal")
    assert len(ticks) >= acknowledged
    assert_gap_free(ticks)
    assert "store caught up" in server.log()


def test_sigkill_loses_nothing_published(tmp_path: Path) -> None:
    """After SIGKILL and restart, every published tick is intact and offsets continue."""
    data = tmp_path / "data"
    server = ServerProcess(data, *LOAD).start()
    try:
        published = wait_for_offset(server, 20_000)
        server.kill()
    finally:
        server.__exit__()
    before = journal_ticks(data / "journal")
    assert len(before) >= published
    assert_gap_free(before)

    server = ServerProcess(data, *LOAD).start()
    try:
        health = server.health()
        assert health["offset"] >= len(before)
        wait_for_offset(server, len(before) + 5000)
        assert server.terminate() == 0
    finally:
        server.__exit__()
    after = journal_ticks(data / "journal")
    assert after[: len(before)] == before
    assert len(after) > len(before) + 5000
    assert_gap_free(after)
    assert {t.epoch for t in after} == {before[0].epoch}


def test_invalid_settings_exit_with_code_2(tmp_path: Path) -> None:
    """A bad option or environment value prints one clear line and exits with code 2."""
    for args, env in (
        (["--port", "70000"], {}),
        (["--rate", "fast"], {}),
        ([], {"TICKWIRE_SYNC": "sometimes"}),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "tickwire", "serve", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**__import__("os").environ, **env},
        )
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("tickwire: invalid setting"), out.stderr
        assert "Traceback" not in out.stderr
