"""`dinrec serve` over real HTTP on loopback, refusing what used to break it: a NaN bundle on
reload, reloads without the admin key or from outside the bundle root, values a model
without a vocabulary cannot take, client values past float range."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")

from tests.integration.serve_process import Server, serving  # noqa: E402
from tests.support.demo_bundle import DemoSpec, build_demo_bundle  # noqa: E402
from tests.unit.serving.bundles import poisoned_copy  # noqa: E402

from dinrec.serving.scorer import bundle_version  # noqa: E402

SPEC = DemoSpec(n_users=20, n_items=60, n_categories=6, maxlen=8, embedding_dim=8)
ADMIN_KEY = "hardening-admin-key"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
RANK = {"user_id": "u1", "candidates": ["i1", "i2", "i3"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("hardening")
    bundle = build_demo_bundle(folder / "bundles" / "v1", SPEC)
    poisoned_copy(bundle, folder / "bundles" / "nan")
    build_demo_bundle(folder / "elsewhere", SPEC)  # a bundle outside the root
    with serving(bundle, folder, ["--admin-key-env", "HARDENING_ADMIN_KEY"],
                 {"HARDENING_ADMIN_KEY": ADMIN_KEY}) as running:
        yield running


def test_reload_of_a_nan_bundle_is_refused_and_ranking_goes_on(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        before = http.post("/v1/rank", json=RANK).json()
        r = http.post("/admin/reload", json={"bundle": "nan"}, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "bundle" and "non-finite scores" in r.json()["error"]
        for _ in range(3):
            after = http.post("/v1/rank", json=RANK)
            assert after.status_code == 200, after.text
            assert after.json() == before
        assert before["model_version"] == bundle_version(server.bundle)


def test_reload_needs_the_admin_key_and_stays_in_the_bundle_root(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/admin/reload", json={"bundle": "v1"}).status_code == 401
        for name in ("../elsewhere", str(server.folder / "elsewhere"), "/etc"):
            r = http.post("/admin/reload", json={"bundle": name}, headers=ADMIN)
            assert r.status_code == 422, name
            assert str(server.folder) not in r.text and "/etc" not in r.text
        ok = http.post("/admin/reload", json={"bundle": "v1"}, headers=ADMIN)
        assert ok.status_code == 200 and ok.json()["bundle"] == "v1"
        info = http.get("/v1/model").json()
        assert info["bundle"] == "v1" and str(server.folder) not in str(info)


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of a bundle without a vocabulary (ids are encoded integers)."""
    from tests.unit.serving.conftest import plain_columns

    from dinrec.models import DIN

    folder = tmp_path_factory.mktemp("plain")
    model = DIN(plain_columns(), ["item_id", "cate_id"])
    model.save(folder / "plain")
    with serving(folder / "plain", folder) as running:
        yield running


def _exchange(conn: http.client.HTTPConnection, path: str, body: Any
              ) -> tuple[int, dict[str, Any], str | None]:
    """(status, JSON body, Connection header) of one request on a kept-alive connection."""
    conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read()), response.getheader("connection")


def test_bad_values_are_a_422_and_the_connection_stays_open(plain_server: Server) -> None:
    profile = {"gender": 1, "pay_score": 0.5}
    bad = [
        ("/v1/rank", {"user_id": "u", "candidates": [1], "profile": {**profile,
                                                                     "pay_score": 1e39}},
         "profile.pay_score"),
        ("/v1/rank", {"user_id": "u", "candidates": [1], "profile": {**profile,
                                                                     "pay_score": 10**400}},
         "profile.pay_score"),
        ("/v1/rank", {"user_id": "u", "candidates": [1], "profile": profile,
                      "timestamp": 10**400}, "timestamp"),
        ("/v1/rank", {"user_id": "u", "candidates": ["²"], "profile": profile}, "candidates[0]"),
        ("/v1/rank", {"user_id": "u", "candidates": ["--5"], "profile": profile},
         "candidates[0]"),
        ("/v1/events", {"events": [{"user_id": "u", "item_id": 1, "timestamp": 10**400}]},
         "events[0].timestamp"),
        ("/v1/events", {"events": [{"user_id": "u", "item_id": 1, "timestamp": 1,
                                    "weight": 1e39}]}, "events[0].weight"),
        ("/v1/events", {"events": [{"user_id": "u", "item_id": 1, "timestamp": 1,
                                    "weight": 10**400}]}, "events[0].weight"),
        ("/v1/events", {"events": [{"user_id": "u", "item_id": 999, "timestamp": 1}]},
         "events[0].item_id"),
        ("/v1/events", {"events": [{"user_id": "u", "item_id": 3, "category": 99,
                                    "timestamp": 1}]}, "events[0].category"),
    ]
    conn = http.client.HTTPConnection("127.0.0.1", plain_server.port, timeout=30)
    try:
        for path, body, field in bad:
            status, answer, connection = _exchange(conn, path, body)
            assert (status, answer["field"]) == (422, field), answer
            assert connection != "close"
        sock = conn.sock
        status, answer, _ = _exchange(conn, "/v1/rank", {"user_id": "u", "candidates": [1, 3],
                                                         "profile": profile})
        assert status == 200 and answer["cold_start"] is True  # no bad event was stored
        assert conn.sock is sock  # the same connection served every request
    finally:
        conn.close()
    assert "Traceback" not in plain_server.log()


def test_stored_values_the_model_cannot_take_never_fail_a_rank_call(plain_server: Server
                                                                    ) -> None:
    from dinrec.serving.stores import Behavior
    from dinrec.serving.stores.sqlite import SQLiteStore

    store = SQLiteStore(plain_server.folder / "store.db")  # another writer, behind the server
    try:
        store.append([Behavior("w", "999", None, 1.0), Behavior("w", "²", None, 2.0),
                      Behavior("w", "2", "1", 3.0)], keep=8)
        store.put_items({"3": "99"})
    finally:
        store.close()
    profile = {"gender": 1, "pay_score": 0.5}
    with httpx.Client(base_url=plain_server.url, timeout=30) as http:
        for user, length in (("w", 1), ("other", 0)):
            r = http.post("/v1/rank", json={"user_id": user, "candidates": [1, 3],
                                            "profile": profile})
            assert r.status_code == 200, r.text
            assert r.json()["history_length"] == length
        metrics = http.get("/metrics").text
    assert 'dinrec_store_values_skipped_total{kind="behavior"} 2' in metrics
    assert 'dinrec_store_values_skipped_total{kind="category"} 1' in metrics


def test_a_skipped_stored_behavior_is_filled_from_older_ones(plain_server: Server) -> None:
    from dinrec.serving.stores import Behavior
    from dinrec.serving.stores.sqlite import SQLiteStore

    # maxlen 4; the latest four of "b" hold two the model cannot take, older ones follow.
    older = [("1", "1"), ("2", "2"), ("3", "1"), ("1", "2")]
    newer = [("999", None), ("2", "1"), ("²", None), ("3", "2")]
    usable = [("3", "1"), ("1", "2"), ("2", "1"), ("3", "2")]
    store = SQLiteStore(plain_server.folder / "store.db")  # a writer keeping 16 per user
    try:
        for user, pairs in (("b", older + newer), ("b-usable", usable)):
            store.append([Behavior(user, item, cat, float(ts))
                          for ts, (item, cat) in enumerate(pairs)], keep=16)
    finally:
        store.close()
    profile = {"gender": 1, "pay_score": 0.5}
    with httpx.Client(base_url=plain_server.url, timeout=30) as http:
        ranked = [http.post("/v1/rank", json={"user_id": user, "candidates": [1, 2, 3],
                                              "profile": profile}).json()
                  for user in ("b", "b-usable")]
    assert [r["history_length"] for r in ranked] == [4, 4]
    assert ranked[0]["items"] == ranked[1]["items"]  # the same four behaviors were used


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with one-second timeouts and room for 8 connections."""
    folder = tmp_path_factory.mktemp("tight")
    bundle = build_demo_bundle(folder / "bundle", SPEC)
    with serving(bundle, folder, ["--header-timeout", "1", "--body-timeout", "1",
                                  "--keep-alive-timeout", "1", "--max-connections", "8"]
                 ) as running:
        yield running


def _connect(server: Server, sent: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if sent:
        sock.sendall(sent)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (raises on a timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_idle_and_half_sent_connections_are_closed(tight_server: Server) -> None:
    rank = json.dumps(RANK).encode()
    head = (b"POST /v1/rank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(rank)).encode() + b"\r\n\r\n")
    started = time.monotonic()
    socks = {
        "idle": _connect(tight_server),
        "half headers": _connect(tight_server, head[:30]),
        "half body": _connect(tight_server, head + rank[:5]),
    }
    try:
        answers = {name: _answer(sock) for name, sock in socks.items()}
    finally:
        for sock in socks.values():
            sock.close()
    assert time.monotonic() - started < 8  # closed by the server, well before recv's timeout
    assert answers["idle"].startswith(b"HTTP/1.1 408")
    assert answers["half headers"].startswith(b"HTTP/1.1 408")
    assert answers["half body"].startswith(b"HTTP/1.1 408")
    body = json.loads(answers["half body"].split(b"\r\n\r\n", 1)[1])
    assert body == {"error": "body: the request's body did not arrive within 1 s",
                    "field": "body"}


def test_a_kept_alive_connection_is_closed_when_idle_and_a_slow_one_still_served(
    tight_server: Server
) -> None:
    rank = json.dumps(RANK).encode()
    sock = _connect(tight_server)
    try:
        # Sent in pieces, each well within the timeouts: served.
        sock.sendall(b"POST /v1/rank HTTP/1.1\r\nhost: x\r\n")
        time.sleep(0.3)
        sock.sendall(b"content-type: application/json\r\ncontent-length: "
                     + str(len(rank)).encode() + b"\r\n\r\n")
        time.sleep(0.3)
        sock.sendall(rank)
        answer = _answer(sock)  # then idle: closed after the keep-alive timeout
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200")


def test_connections_beyond_the_limit_get_a_503_and_are_closed(tight_server: Server) -> None:
    held = [_connect(tight_server) for _ in range(8)]
    try:
        time.sleep(0.2)
        extra = _connect(tight_server)
        try:
            answer = _answer(extra)
        finally:
            extra.close()
    finally:
        for sock in held:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 503")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["field"] == "connection"
    time.sleep(0.2)
    assert httpx.get(f"{tight_server.url}/healthz").status_code == 200  # room again


def test_an_unparsable_request_gets_a_json_400(tight_server: Server) -> None:
    sock = _connect(tight_server, b"POST /v1/rank HTTP/1.1\r\nhost: x\r\n"
                                  b"content-length: abc\r\n\r\n{}")
    try:
        answer = _answer(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 400")
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["field"] == "request" and body["error"].startswith("request: not a valid HTTP")


def test_a_deleted_store_file_is_not_ready_and_takes_no_events(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("deleted")
    bundle = build_demo_bundle(folder / "bundle", SPEC)
    event = {"events": [{"user_id": "u1", "item_id": "i1", "timestamp": 1}]}
    with serving(bundle, folder) as server, httpx.Client(base_url=server.url,
                                                        timeout=30) as http:
        assert http.post("/v1/events", json=event).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            (folder / f"store.db{suffix}").unlink(missing_ok=True)
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert "store file store.db was deleted" in ready.json()["reason"]
        lost = http.post("/v1/events", json=event)
        assert lost.status_code == 500  # never acknowledged into the deleted file
        assert lost.json()["error"] == "internal error; the server logged it"


def test_an_event_older_than_the_kept_history_is_reported_trimmed(server: Server) -> None:
    fill = [{"user_id": "t1", "item_id": f"i{i}", "timestamp": 100 + i}
            for i in range(SPEC.maxlen)]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/events", json={"events": fill}).json() == {
            "appended": SPEC.maxlen, "trimmed": 0, "users": 1}
        old = {"user_id": "t1", "item_id": "i40", "timestamp": 1}
        assert http.post("/v1/events", json={"events": [old]}).json() == {
            "appended": 0, "trimmed": 1, "users": 1}
        rank = http.post("/v1/rank", json={"user_id": "t1", "candidates": ["i1"]}).json()
        assert rank["history_length"] == SPEC.maxlen


def test_errors_over_http_keep_the_documented_shape(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for response, field in [
            (http.get("/v1/nothing"), "path"),
            (http.delete("/v1/rank"), "method"),
            (http.post("/v1/rank", content=b"{", headers={"content-type": "application/json"}),
             "body"),
            (http.post("/v1/rank", content=b"x" * (2 << 20)), "body"),
        ]:
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["field"] == field
            assert response.json()["error"].startswith(f"{field}: ")
