"""The README's promises: the two commands on its first screen, links that resolve, and an SDK
example that runs against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TIMEOUT_SCALE
from .serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_first_screen_shows_make_run_and_make_test() -> None:
    first_screen = "\n".join(README.splitlines()[:25])
    assert "make run" in first_screen and "make test" in first_screen


def test_local_links_and_images_resolve() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert "docs/images/dashboard.png" in local and "docs/quickstart.md" in local
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == []


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    args = ("--backfill-days", "0", "--no-weekend-closed", "--load-rate", "100", "--sync", "none")
    with ServerProcess(tmp_path / "data", *args) as proc:
        yield proc


@pytest.mark.slow
def test_sdk_example_runs(server: ServerProcess, tmp_path: Path) -> None:
    """The README's Python example prints the quotes, then streams ticks until stopped."""
    (example,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(example.strip().splitlines()) <= 6
    (tmp_path / "example.py").write_text(example)
    env = {"TICKWIRE_URL": server.url, "TICKWIRE_STREAM_URL": server.ws_url, "PATH": "/usr/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-u", "example.py"],
        cwd=tmp_path,  # the example reads data/demo-key.txt, as from the repository root
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30 * TIMEOUT_SCALE
        while len(lines) < 4 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.kill()
        _, stderr = proc.communicate(timeout=10)
    assert len(lines) == 4, f"{lines}\n{stderr}"
    assert "EURUSD" in lines[0] and "USDJPY" in lines[0]
    for line in lines[1:]:
        symbol, bid, ask, position = line.split()
        assert symbol == "EURUSD" and float(ask) >= float(bid)
        assert re.fullmatch(r"\d+:\d+", position)
