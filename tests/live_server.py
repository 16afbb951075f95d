"""A real ``rankpref serve`` process on a free loopback port, for the tests that need one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(artifact: Path, *extra: str, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start ``rankpref serve --artifact ARTIFACT EXTRA...`` (1 thread, offline) and wait until
    ``/health`` answers: the process and its base URL. A server that exits or does not answer
    in ``timeout`` seconds fails the test with its stderr."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rankpref.cli", "serve", "--artifact",
                             str(artifact), "--port", str(port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server did not start in {timeout:g} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)
