"""docs/quickstart.md works as written: ``make run``, the shell session, the Python example.

``make run`` runs for real from the repository (with ``PORT``, ``DATA`` and ``ARGS`` overridden
so it does not touch a developer's server), and the link it prints must open the dashboard.
The other blocks run in a directory holding ``data/`` of a real server and a ``.venv`` link to
the project's environment; the only rewrite is the server's address, since it listens on a
free port instead of 8000.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import TIMEOUT_SCALE
from .serverproc import ServerProcess, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "quickstart.md"
TEXT = DOC.read_text()
SH_BLOCKS = re.findall(r"```sh\n(.*?)```", TEXT, flags=re.S)
PY_BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
DOC_URL = "http://127.0.0.1:8000"
ARGS = ("--backfill-days", "0.2", "--no-weekend-closed", "--load-rate", "200", "--sync", "none")


def test_the_page_covers_the_four_steps() -> None:
    assert SH_BLOCKS[0].strip() == "make run"
    session = SH_BLOCKS[1]
    for command in ("curl", "tickwire quote", "tickwire bars", "tickwire convert"):
        assert command in session, command
    assert "tickwire stream" in session and "client.stream(" in PY_BLOCKS[0]
    assert "## 4. Open the dashboard" in TEXT and (DOC.parent / "images/dashboard.png").is_file()


def test_make_run_prints_a_working_dashboard_link(tmp_path: Path) -> None:
    """``make run`` starts the server and prints the demo key and a dashboard link that opens."""
    port, stream_port = free_port(), free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATA": str(tmp_path / "data"),
        "ARGS": f"--stream-port {stream_port} " + " ".join(ARGS),
    }
    log_path = tmp_path / "make-run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        link = _wait_for_link(proc, log_path)
        assert link.startswith(f"http://127.0.0.1:{port}/?api_key=tw_")
        page = httpx.get(link, timeout=10)
        assert page.status_code == 200 and f'content="{stream_port}"' in page.text
        key = link.rsplit("=", 1)[1]
        assert key == (tmp_path / "data" / "demo-key.txt").read_text().strip()
        quotes = httpx.get(f"http://127.0.0.1:{port}/v1/quotes", params={"api_key": key})
        assert quotes.status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60 * TIMEOUT_SCALE)
    assert "Traceback" not in log_path.read_text()


def _wait_for_link(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + 120 * TIMEOUT_SCALE  # a fresh checkout installs first
    while time.monotonic() < deadline:
        output = log_path.read_text(errors="replace")
        if found := re.search(r"dashboard (http://\S+)", output):
            return found.group(1)
        assert proc.poll() is None, output
        time.sleep(0.2)
    pytest.fail(f"make run printed no dashboard link:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ServerProcess]]:
    """A directory laid out as after ``make run``: ``data/`` of a running server, ``.venv``."""
    root = tmp_path_factory.mktemp("quickstart")
    (root / ".venv").symlink_to(ROOT / ".venv")
    with ServerProcess(root / "data", *ARGS) as server:
        yield root, server


def _env(server: ServerProcess) -> dict[str, str]:
    # The stream port is the REST port + 1 by default; the test server's ports are free ones.
    env = {**os.environ, "TICKWIRE_STREAM_URL": server.ws_url}
    for name in ("TICKWIRE_URL", "TICKWIRE_KEY", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def test_shell_session_runs(workdir: tuple[Path, ServerProcess]) -> None:
    root, server = workdir
    script = root / "session.sh"
    script.write_text("set -euo pipefail\n" + SH_BLOCKS[1].replace(DOC_URL, server.url))
    done = subprocess.run(
        ["bash", str(script)],
        cwd=root,
        env=_env(server),
        capture_output=True,
        text=True,
        timeout=120 * TIMEOUT_SCALE,
    )
    assert done.returncode == 0, done.stderr
    assert '"quotes"' in done.stdout and "EURUSD" in done.stdout
    jsonl = [line for line in done.stdout.splitlines() if line.startswith('{"symbol"')]
    assert len(jsonl) == 5, done.stdout
    assert "Traceback" not in done.stderr


def test_python_example_runs(workdir: tuple[Path, ServerProcess]) -> None:
    root, server = workdir
    (root / "first_stream.py").write_text(PY_BLOCKS[0])
    env = {**_env(server), "TICKWIRE_URL": server.url, "TICKWIRE_KEY": server.demo_key}
    done = subprocess.run(
        [sys.executable, "first_stream.py"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * TIMEOUT_SCALE,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 11 and lines[-1].startswith("to continue exactly after the last tick")
