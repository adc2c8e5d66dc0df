"""`dinrec serve` over real HTTP on loopback, refusing what used to break it: a NaN bundle on
reload, reloads without the admin key or from outside the bundle root, values a model
without a vocabulary cannot take, client values past float range."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")

from tests.integration.serve_process import Server, serving  # noqa: E402
from tests.unit.serving.bundles import poisoned_copy  # noqa: E402

from dinrec.serving.demo import DemoSpec, build_demo_bundle  # noqa: E402
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
        ("/v1/rank", {"user_id": "u", "candidates": ["²"], "profile": profile}, "candidates[0]"),
        ("/v1/rank", {"user_id": "u", "candidates": ["--5"], "profile": profile},
         "candidates[0]"),
        ("/v1/events", {"events": [{"user_id": "u", "item_id": 1, "timestamp": 10**400}]},
         "events[0].timestamp"),
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
    from dinrec.serving.store_sqlite import SQLiteStore
    from dinrec.serving.stores import Behavior

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
