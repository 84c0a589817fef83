"""Run a real ``tickwire serve`` process for functional tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .conftest import TIMEOUT_SCALE


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``tickwire serve`` in a child process, on a free port, with its log captured."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.stream_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.stream_port}"
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""

    def start(self, *, wait_ready: bool = True) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.key:
            self.key = self.create_key(f"tests-{self.port}", "--plan", "unlimited")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tickwire",
                "serve",
                "--port",
                str(self.port),
                "--stream-port",
                str(self.stream_port),
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + 60 * TIMEOUT_SCALE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                health = self.health()
                if not wait_ready or health["status"] == "ok":
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server did not become ready:\n{self.log()}")

    @property
    def demo_key(self) -> str:
        """The demo API key the server created in its data directory."""
        return (self.data_dir / "demo-key.txt").read_text().strip()

    def create_key(self, name: str, *args: str) -> str:
        """A new API key from ``tickwire keys create`` (the key is its last stdout line)."""
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tickwire",
                "keys",
                "create",
                "--name",
                name,
                "--data-dir",
                str(self.data_dir),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/health", timeout=5)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, sig: int = signal.SIGTERM) -> int:
        """A clean stop by signal; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60 * TIMEOUT_SCALE)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
