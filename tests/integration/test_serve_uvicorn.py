"""`dinrec serve` as a real uvicorn process on loopback: auth, concurrency, reload under load."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")

from tests.integration.serve_process import Server, serving  # noqa: E402
from tests.support.demo_bundle import DemoSpec, build_demo_bundle  # noqa: E402

from dinrec.serving.scorer import bundle_version  # noqa: E402

SPEC = DemoSpec(n_users=20, n_items=60, n_categories=6, maxlen=8, embedding_dim=8)
KEY = "integration-key"
HEADERS = {"X-API-Key": KEY}
ADMIN_KEY = "integration-admin-key"
ADMIN = {"X-Admin-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    bundle = build_demo_bundle(folder / "bundle", SPEC, version="v1")
    env = {"DINREC_TEST_KEY": KEY, "DINREC_TEST_ADMIN_KEY": ADMIN_KEY}
    with serving(bundle, folder, ["--api-key-env", "DINREC_TEST_KEY", "--admin-key-env",
                                  "DINREC_TEST_ADMIN_KEY"], env) as running:
        yield running


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
    from dinrec.serving.stores.sqlite import SQLiteStore

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
        r = httpx.post(f"{server.url}/admin/reload", json={"bundle": other.name},
                       headers=ADMIN, timeout=30)
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
