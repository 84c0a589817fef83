"""Property-based fuzzing of the whole OpenAPI surface: no input may cause a server error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .serverproc import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server with a day of history."""
    data: Path = tmp_path_factory.mktemp("fuzz") / "data"
    with ServerProcess(
        data, "--backfill-days", "1", "--no-weekend-closed", "--load-rate", "100", "--sync", "none"
    ) as proc:
        yield proc


def test_no_input_causes_a_server_error(server: ServerProcess) -> None:
    """schemathesis finds no 5xx over every documented operation (SSE excluded: it streams)."""
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency"
    out = subprocess.run(
        [
            st,
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"X-API-Key: {server.key}",
            "--max-examples",
            "25",
            "--exclude-path",
            "/v1/sse",
            "--no-color",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert out.returncode == 0, out.stdout[-4000:]
    assert "passed" in out.stdout
    assert "unhandled error" not in server.log()
