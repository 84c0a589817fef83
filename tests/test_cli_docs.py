"""Every ``sh`` example in docs/cli.md runs as written against a real server and exits 0.

Each block runs as a bash script (``set -euo pipefail``) in a fresh directory, with ``tickwire``
being ``python -m tickwire`` and the server, key and data directory in the environment. A block
that starts ``tickwire serve`` runs it on free ports until it is healthy, then stops it with
SIGTERM, which must exit 0.
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

DOC = Path(__file__).parent.parent / "docs" / "cli.md"
BLOCKS = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
ARGS = ("--backfill-days", "1", "--no-weekend-closed", "--load-rate", "500", "--sync", "none")
PRELUDE = f"""set -euo pipefail
tickwire() {{ "{sys.executable}" -m tickwire "$@"; }}
python() {{ "{sys.executable}" "$@"; }}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server for the examples."""
    with ServerProcess(tmp_path_factory.mktemp("cli-docs") / "data", *ARGS) as proc:
        yield proc


def test_the_page_documents_every_command() -> None:
    """Each command has a section and at least one runnable example."""
    text = DOC.read_text()
    examples = "\n".join(BLOCKS)
    for name in ("serve", "keys", "quote", "bars", "ticks", "convert", "stream", "bench"):
        assert f"## `{name}`" in text, name
        assert f"tickwire {name}" in examples, name
    assert "--count 20 --format jsonl" in examples


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_runs(block: str, server: ServerProcess, tmp_path: Path) -> None:
    """The block runs to the end with exit code 0."""
    env = {
        **os.environ,
        "TICKWIRE_URL": server.url,
        "TICKWIRE_STREAM_URL": server.ws_url,
        "TICKWIRE_KEY": server.key,
        "TICKWIRE_DATA_DIR": str(server.data_dir),
    }
    script = tmp_path / "example.sh"
    script.write_text(PRELUDE + block)
    if block.lstrip().startswith("tickwire serve"):
        _run_serve(script, env, tmp_path)
        return
    done = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60 * TIMEOUT_SCALE,
    )
    assert done.returncode == 0, f"{block}\n--- stderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr


def _run_serve(script: Path, env: dict[str, str], cwd: Path) -> None:
    """Start the documented serve command on free ports, wait until healthy, stop it."""
    port = free_port()
    env = {**env, "TICKWIRE_PORT": str(port), "TICKWIRE_STREAM_PORT": str(free_port())}
    env.pop("TICKWIRE_DATA_DIR")
    log = (cwd / "serve.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "-c", f"source {script}"], cwd=cwd, env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60 * TIMEOUT_SCALE
        while time.monotonic() < deadline:
            assert proc.poll() is None, (cwd / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the documented serve command did not become healthy")
        # bash runs the server as its child: signal the whole process group's server.
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        for child in children:
            os.kill(int(child), signal.SIGTERM)
        assert proc.wait(timeout=60 * TIMEOUT_SCALE) == 0, (cwd / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert (cwd / "data").is_dir()
