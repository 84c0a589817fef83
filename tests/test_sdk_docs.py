"""Every Python example in docs/sdk.md runs against a real server and exits cleanly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TIMEOUT_SCALE
from .serverproc import ServerProcess

pytestmark = pytest.mark.slow

DOC = Path(__file__).parent.parent / "docs" / "sdk.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
ARGS = ("--backfill-days", "1", "--no-weekend-closed", "--load-rate", "500", "--sync", "none")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server for the examples."""
    data: Path = tmp_path_factory.mktemp("sdk-docs") / "data"
    with ServerProcess(data, *ARGS) as proc:
        yield proc


def test_the_page_has_examples() -> None:
    """docs/sdk.md has examples for REST, errors, pandas and both streams."""
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_example_runs(example: str, server: ServerProcess, tmp_path: Path) -> None:
    """The example runs to the end with the server and key from the environment."""
    script = tmp_path / "example.py"
    script.write_text(example)
    env = {
        **os.environ,
        "TICKWIRE_URL": server.url,
        "TICKWIRE_STREAM_URL": server.ws_url,
        "TICKWIRE_KEY": server.key,
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30 * TIMEOUT_SCALE,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
