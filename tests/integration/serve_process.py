"""`dinrec serve` as a child process on loopback, for the tests that talk real HTTP to it.

A plain module, not a conftest (see cli_process.py): importable as
`tests.integration.serve_process`.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
from tests.integration.cli_process import child_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A running `dinrec serve`: its process, base URL, bundle, folder and log file."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, bundle: Path, folder: Path):
        self.proc, self.url, self.bundle, self.folder = proc, url, bundle, folder
        self.port = int(url.rsplit(":", 1)[1])

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")


@contextmanager
def serving(bundle: Path, folder: Path, args: Sequence[str] = (),
            env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start `dinrec serve BUNDLE` on a free loopback port with a SQLite store in `folder`,
    wait until /readyz says ready, and stop it (SIGINT) afterwards."""
    port = free_port()
    with (folder / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dinrec", "serve", str(bundle), "--store",
             f"sqlite:///{folder / 'store.db'}", "--port", str(port), "--log-level", "warning",
             *args],
            env=child_env(env), stdout=log, stderr=subprocess.STDOUT,
        )
        server = Server(proc, f"http://127.0.0.1:{port}", bundle, folder)
        try:
            _wait_ready(server)
            yield server
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"dinrec serve exited with {server.proc.returncode}: {server.log()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("dinrec serve did not become ready within 60 s")
        time.sleep(0.1)
