"""`dinrec serve` as a real uvicorn process on loopback: auth, concurrency, reload under load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")

from dinrec.serving.demo import DemoSpec, build_demo_bundle  # noqa: E402
from dinrec.serving.scorer import bundle_version  # noqa: E402

SPEC = DemoSpec(n_users=20, n_items=60, n_categories=6, maxlen=8, embedding_dim=8)
KEY = "integration-key"
HEADERS = {"X-API-Key": KEY}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, bundle: Path, folder: Path):
        self.proc, self.url, self.bundle, self.folder = proc, url, bundle, folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    bundle = build_demo_bundle(folder / "bundle", SPEC, version="v1")
    port = _free_port()
    env = {**os.environ, "DINREC_TEST_KEY": KEY}
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dinrec", "serve", str(bundle), "--store",
         f"sqlite:///{folder / 'store.db'}", "--port", str(port), "--api-key-env",
         "DINREC_TEST_KEY", "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            err = (folder / "server.log").read_text(errors="replace")
            pytest.fail(f"dinrec serve exited with {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("dinrec serve did not become ready within 60 s")
        time.sleep(0.1)
    try:
        yield Server(proc, url, bundle, folder)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_binds_loopback_and_requires_the_key(server: Server) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    body = {"user_id": "u1", "candidates": ["i1", "i2"]}
    assert httpx.post(f"{server.url}/v1/rank", json=body).status_code == 401
    response = httpx.post(f"{server.url}/v1/rank", json=body, headers=HEADERS)
    assert response.status_code == 200
    assert response.json()["model_version"] == bundle_version(server.bundle)


def test_concurrent_clients_mixing_events_and_rank_see_their_events(server: Server) -> None:
    errors: list[str] = []

    def client(worker: int) -> None:
        user = f"w{worker}"
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
            for i in range(12):
                event = {"user_id": user, "item_id": f"i{i}", "category": f"c{i % 6}",
                         "timestamp": 1000 + i}
                r = http.post("/v1/events", json={"events": [event]})
                if r.status_code != 200:
                    errors.append(f"events {r.status_code} {r.text}")
                r = http.post("/v1/rank", json={"user_id": user,
                                                "candidates": [f"i{j}" for j in range(20)]})
                if r.status_code != 200:
                    errors.append(f"rank {r.status_code} {r.text}")
                elif r.json()["history_length"] != min(i + 1, SPEC.maxlen):
                    errors.append(f"{user} saw {r.json()['history_length']} events after {i + 1}")

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_write_by_another_process_is_seen_by_the_next_rank_call(server: Server) -> None:
    from dinrec.serving.store_sqlite import SQLiteStore

    body = {"user_id": "x9", "candidates": ["i1", "i2", "i3"]}
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
        for _ in range(2):  # the second answer comes from the server's cache
            first = http.post("/v1/rank", json=body).json()
            assert (first["cold_start"], first["history_length"]) == (True, 0)
        # This test process is the other writer, as `dinrec store load` would be.
        store = SQLiteStore(server.folder / "store.db")
        try:
            store.replace_users({"x9": [("i4", "c4", 1.0), ("i5", "c5", 2.0)]},
                                {"x9": {"gender": "f"}})
        finally:
            store.close()
        after = http.post("/v1/rank", json=body).json()
        assert (after["cold_start"], after["history_length"], after["defaulted"]) == (
            False, 2, [])


def test_reload_under_load_drops_no_request(server: Server) -> None:
    stop = threading.Event()
    failures: list[str] = []
    versions: set[str] = set()

    def hammer() -> None:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
            while not stop.is_set():
                r = http.post("/v1/rank", json={"user_id": "u3", "candidates": ["i1", "i5"]})
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                else:
                    versions.add(r.json()["model_version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        # A new bundle at the path being served, then SIGHUP: re-read and swapped in.
        build_demo_bundle(server.bundle, DemoSpec(**{**SPEC.__dict__, "seed": 9}), version="v2")
        v2 = bundle_version(server.bundle)
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while v2 not in versions and time.monotonic() < deadline:
            time.sleep(0.05)
        other = build_demo_bundle(server.folder / "v3", DemoSpec(**{**SPEC.__dict__, "seed": 4}),
                                  version="v3")
        v3 = bundle_version(other)
        r = httpx.post(f"{server.url}/admin/reload", json={"bundle": str(other)},
                       headers=HEADERS, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["previous_version"] == v2
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert {v2, v3} <= versions
    info: Any = httpx.get(f"{server.url}/v1/model", headers=HEADERS).json()
    assert info["version"] == v3
