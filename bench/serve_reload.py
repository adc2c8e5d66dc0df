"""Requests lost while `dinrec serve --workers 2` replaces its workers on SIGHUP.

Starts the real server on loopback (a demo bundle, a SQLite store in a temporary folder),
runs THREADS client threads of POST /v1/rank (50 candidates), each call on a fresh
connection (so each is hashed to a worker anew, old or new), sends SIGHUP, waits until both
old workers are gone, and counts the outcomes: HTTP status codes, or the transport error
(a reset connection from a retiring worker's accept queue, see docs/serving.md, Threads).

    python bench/serve_reload.py                               # 2 threads, 3 reloads
    python bench/serve_reload.py --threads 6 --server-arg=--inference-threads=0
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

# The serving tests' helpers (tests/), importable from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from tests.integration.serve_process import serving
from tests.integration.test_serve_supervisor import _all_ready
from tests.integration.test_serve_workers import SPEC, _wait_workers
from tests.support.demo_bundle import build_demo_bundle


def reload_under_load(server_url: str, threads: int, sighup: Callable[[], None]) -> Counter[str]:
    """Outcomes of the rank calls made while `sighup()` runs (it returns once replaced)."""
    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    body = {"user_id": "u1", "candidates": [f"i{j}" for j in range(50)]}

    def load() -> None:
        while not stop.is_set():
            try:
                r = httpx.post(f"{server_url}/v1/rank", json=body, timeout=30)
                outcomes[str(r.status_code)] += 1
            except httpx.TransportError as err:
                outcomes[type(err).__name__] += 1

    clients = [threading.Thread(target=load) for _ in range(threads)]
    for t in clients:
        t.start()
    time.sleep(1)
    sighup()
    time.sleep(1)
    stop.set()
    for t in clients:
        t.join()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--server-arg", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bundle = build_demo_bundle(Path(folder) / "bundle", SPEC)
        with serving(bundle, Path(folder), ["--workers", "2", "--log-level", "info",
                                            *args.server_arg]) as server:
            _all_ready(server)
            for _ in range(args.reloads):
                def sighup() -> None:
                    before = _wait_workers(server, 2)
                    server.proc.send_signal(signal.SIGHUP)
                    deadline = time.monotonic() + 90
                    while (_wait_workers(server, 2) & before) and time.monotonic() < deadline:
                        time.sleep(0.2)

                outcomes = reload_under_load(server.url, args.threads, sighup)
                print(f"threads {args.threads} {' '.join(args.server_arg)}: "
                      f"{dict(sorted(outcomes.items()))}", flush=True)


if __name__ == "__main__":
    main()
