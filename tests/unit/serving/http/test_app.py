"""The HTTP contract, in-process over httpx's ASGI transport, against SQLite and Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("fastapi", reason="serving tests need the 'serve' extra")

import httpx
from tests.support.demo_bundle import DemoSpec

from dinrec.serving.http.app import create_app, field_path
from dinrec.serving.scorer import bundle_version
from dinrec.serving.service import RankingService, ServeConfig

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def client(demo_bundle: Path, store_url: str) -> AsyncIterator[httpx.AsyncClient]:
    config = ServeConfig(str(demo_bundle), store=store_url, max_candidates=40,
                         max_events=20, max_body_bytes=20_000)
    app = create_app(config)
    async with _client(app) as c:
        yield c
    app.state.service.close()


async def _add_events(client: httpx.AsyncClient, user: str, items: list[str]) -> None:
    events = [{"user_id": user, "item_id": item, "category": f"c{int(item[1:]) % 6}",
               "timestamp": 100 + i} for i, item in enumerate(items)]
    response = await client.post("/v1/events", json={"events": events})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["appended"] + answer["trimmed"] == len(items) and answer["users"] == 1


async def test_rank_returns_every_candidate_best_first_with_the_version(
    client: httpx.AsyncClient, demo_bundle: Path,
) -> None:
    await _add_events(client, "u1", ["i1", "i2", "i3"])
    candidates = ["i5", "i6", "i7", "i8", "nope", 9]
    response = await client.post("/v1/rank", json={"user_id": "u1", "candidates": candidates})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == bundle_version(demo_bundle)
    assert body["cold_start"] is False
    assert body["history_length"] == 3
    assert sorted(map(str, (i["item_id"] for i in body["items"]))) == sorted(map(str, candidates))
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores)
    assert 9 in [i["item_id"] for i in body["items"]]  # ids come back as they were sent


async def test_top_k_keeps_the_best(client: httpx.AsyncClient) -> None:
    body = {"user_id": "u1", "candidates": ["i1", "i2", "i3", "i4"]}
    full = (await client.post("/v1/rank", json=body)).json()["items"]
    top = (await client.post("/v1/rank", json={**body, "top_k": 2})).json()["items"]
    assert top == full[:2]


async def test_unknown_user_is_a_flagged_cold_start(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/rank", json={"user_id": "stranger", "candidates": ["i1"]})
    assert response.status_code == 200
    body = response.json()
    assert (body["cold_start"], body["history_length"]) == (True, 0)
    assert body["defaulted"] == ["gender"]


async def test_events_are_seen_by_the_next_rank_call(client: httpx.AsyncClient) -> None:
    request = {"user_id": "u7", "candidates": ["i1", "i2", "i3"], "profile": {"gender": "m"}}
    before = (await client.post("/v1/rank", json=request)).json()
    await _add_events(client, "u7", ["i10", "i11"])
    after = (await client.post("/v1/rank", json=request)).json()
    assert before["history_length"] == 0 and after["history_length"] == 2
    assert before["items"] != after["items"]


async def test_history_is_trimmed_to_what_the_model_reads(
    client: httpx.AsyncClient, spec: DemoSpec
) -> None:
    await _add_events(client, "u2", [f"i{i}" for i in range(spec.maxlen + 4)])
    body = (await client.post("/v1/rank", json={"user_id": "u2", "candidates": ["i1"]})).json()
    assert body["history_length"] == spec.maxlen
    info = (await client.get("/v1/model")).json()
    assert info["limits"]["history_keep"] == spec.maxlen


async def test_events_older_than_the_kept_history_are_reported_as_trimmed(
    client: httpx.AsyncClient, spec: DemoSpec
) -> None:
    await _add_events(client, "u3", [f"i{i}" for i in range(spec.maxlen)])  # timestamps 100+
    old = {"user_id": "u3", "item_id": "i50", "timestamp": 5}
    new = {"user_id": "u3", "item_id": "i51", "timestamp": 500}
    response = await client.post("/v1/events", json={"events": [old]})
    assert response.json() == {"appended": 0, "trimmed": 1, "users": 1}
    response = await client.post("/v1/events", json={"events": [old, new]})
    assert response.json() == {"appended": 1, "trimmed": 1, "users": 1}
    many = [{"user_id": "u4", "item_id": f"i{i}", "timestamp": i}
            for i in range(spec.maxlen + 3)]
    response = await client.post("/v1/events", json={"events": many})
    assert response.json() == {"appended": spec.maxlen, "trimmed": 3, "users": 1}


async def test_score_is_stateless_and_agrees_with_rank(client: httpx.AsyncClient) -> None:
    await _add_events(client, "u3", ["i1", "i2"])
    await _add_events(client, "someone", ["i4"])  # the store learns i4's category
    ranked = (await client.post("/v1/rank", json={
        "user_id": "u3", "candidates": ["i4"], "profile": {"gender": "f"}})).json()
    row = {"user_id": "u3", "gender": "f", "item_id": "i4", "cate_id": "c4",
           "hist_item_id": ["i1", "i2"], "hist_cate_id": ["c1", "c2"]}
    response = await client.post("/v1/score", json={"rows": [row, {**row, "item_id": "i5"}]})
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    assert len(scores) == 2
    assert abs(scores[0] - ranked["items"][0]["score"]) < 1e-6


async def test_model_health_readiness_metrics_and_docs(
    client: httpx.AsyncClient, demo_bundle: Path
) -> None:
    info = (await client.get("/v1/model")).json()
    assert info["version"] == bundle_version(demo_bundle) and info["backend"] == "torch"
    assert info["label"] == "v1"
    assert {f["name"] for f in info["features"]} >= {"item_id", "hist_item_id", "gender"}
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    await client.post("/v1/rank", json={"user_id": "u1", "candidates": ["i1", "i2"]})
    await client.post("/v1/rank", content=b"{")
    metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'dinrec_requests_total{method="POST",path="/v1/rank",status="200"} 1' in text
    assert 'dinrec_request_errors_total{path="/v1/rank",kind="client"} 1' in text
    assert 'dinrec_batch_size_bucket{endpoint="rank",le="2"} 1' in text
    assert "dinrec_request_duration_seconds_bucket" in text
    assert "dinrec_cold_starts_total 1" in text
    openapi = (await client.get("/openapi.json")).json()
    assert {"/v1/rank", "/v1/score", "/v1/events", "/v1/model"} <= set(openapi["paths"])
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"user_id": "u1", "candidates": ["i1",', 400, "body"),
        (b'{"user_id": "u1", "candidates": ["i1", 2.5]}', 422, "candidates[1]"),
        (b'{"user_id": "u1", "candidates": "i1"}', 422, "candidates"),
        (b'{"user_id": "u1", "candidates": []}', 422, "candidates"),
        (b'{"user_id": null, "candidates": ["i1"]}', 422, "user_id"),
        (b'{"user_id": "u1", "candidates": ["i1"], "top_k": 0}', 422, "top_k"),
        (b'{"user_id": "u1", "candidates": ["i1"], "top_k": "3"}', 422, "top_k"),
        (b'{"user_id": "u1", "candidates": ["i1"], "colour": 1}', 422, "colour"),
        (b'{"user_id": "u1", "candidates": ["i1"], "profile": {"age": 3}}', 422, "profile.age"),
        (b'{"user_id": "u1", "candidates": ["i1"], "profile": {"gender": ["f"]}}', 422,
         "profile.gender"),
        (b'[1, 2]', 422, "body"),
    ],
)
async def test_bad_rank_requests_get_a_4xx_naming_the_field(
    client: httpx.AsyncClient, body: bytes, status: int, field: str
) -> None:
    response = await client.post("/v1/rank", content=body,
                                 headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["field"] == field
    assert payload["error"].startswith(field)
    assert "Traceback" not in response.text
    assert (await client.get("/healthz")).status_code == 200  # and it keeps serving


async def test_non_json_bodies_and_unknown_routes_get_json_errors(
    client: httpx.AsyncClient,
) -> None:
    body = b'{"user_id": "u1", "candidates": ["i1"]}'
    plain = await client.post("/v1/rank", content=body, headers={"content-type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["field"] == "body"
    assert (await client.post("/v1/rank", content=body)).status_code == 415
    missing = await client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"error": "path: no route /v1/nothing", "field": "path"}
    wrong = await client.get("/v1/rank")
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "method: GET is not allowed on /v1/rank", "field": "method"}


async def test_limits_on_candidates_events_and_body_size(client: httpx.AsyncClient) -> None:
    too_many = {"user_id": "u1", "candidates": [f"i{i}" for i in range(41)]}
    response = await client.post("/v1/rank", json=too_many)
    assert response.status_code == 422
    assert response.json()["error"] == "candidates: at most 40 per request, got 41"
    events = [{"user_id": "u", "item_id": "i", "timestamp": 1}] * 21
    response = await client.post("/v1/events", json={"events": events})
    assert response.status_code == 422 and response.json()["field"] == "events"
    huge = {"user_id": "u1", "candidates": ["x" * 512] * 39}  # > 20 kB, valid otherwise
    response = await client.post("/v1/rank", json=huge)
    assert response.status_code == 413
    assert response.json()["field"] == "body"


async def test_bad_events_and_score_rows_name_the_field(client: httpx.AsyncClient) -> None:
    bad_time = {"events": [{"user_id": "u", "item_id": "i", "timestamp": "yesterday"}]}
    response = await client.post("/v1/events", json=bad_time)
    assert response.status_code == 422 and response.json()["field"] == "events[0].timestamp"
    no_item = {"events": [{"user_id": "u", "timestamp": 3}]}
    assert (await client.post("/v1/events", json=no_item)).json()["field"] == "events[0].item_id"
    nan = b'{"events": [{"user_id": "u", "item_id": "i", "timestamp": NaN}]}'
    response = await client.post("/v1/events", content=nan,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["field"] == "events[0].timestamp"
    row = {"user_id": "u3", "item_id": "i4", "cate_id": "c4", "hist_item_id": [],
           "hist_cate_id": []}
    response = await client.post("/v1/score", json={"rows": [row]})
    assert response.status_code == 422
    assert response.json()["error"] == "rows[0].gender: missing feature"


async def test_encoded_ids_out_of_range_are_a_4xx_without_vocabulary(
    plain_bundle: Path, tmp_path: Path
) -> None:
    config = ServeConfig(str(plain_bundle), store=f"sqlite:///{tmp_path / 's.db'}",
                         user_feature="user", inference_threads=0)  # on the event loop
    app = create_app(config)
    async with _client(app) as client:
        ok = await client.post("/v1/rank", json={"user_id": 1, "candidates": [0, 3],
                                                 "profile": {"gender": 1, "pay_score": 0.5}})
        assert ok.status_code == 200, ok.text
        bad = await client.post("/v1/rank", json={"user_id": 1, "candidates": [0, 4]})
        assert bad.status_code == 422
        assert bad.json()["field"] == "candidates[1]"
        assert "outside item_id's table [0, 4)" in bad.json()["error"]
        user = await client.post("/v1/rank", json={"user_id": "bob", "candidates": [0]})
        assert user.status_code == 422 and user.json()["field"] == "user_id"
    app.state.service.close()


async def test_api_key_guards_everything_but_health(demo_bundle: Path, tmp_path: Path) -> None:
    config = ServeConfig(str(demo_bundle), store=f"sqlite:///{tmp_path / 's.db'}",
                         api_key="s3cret")
    app = create_app(config)
    body = {"user_id": "u1", "candidates": ["i1"]}
    async with _client(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        for method, path in [("POST", "/v1/rank"), ("GET", "/metrics"), ("GET", "/v1/model"),
                             ("GET", "/openapi.json")]:
            response = await client.request(method, path, json=body)
            assert response.status_code == 401, path
            assert response.json()["field"] == "X-API-Key"
        wrong = await client.post("/v1/rank", json=body, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 401
        ok = await client.post("/v1/rank", json=body, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200
        bearer = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert bearer.status_code == 200
        assert 'status="401"' in bearer.text
    app.state.service.close()


class BrokenStore:
    """A store whose every call fails, as an unreachable database would."""

    url = "broken://"

    def lookup(self, *args: Any) -> Any:
        raise ConnectionError("store is down")

    append = replace_users = put_items = counts = ping = lookup

    def close(self) -> None:
        pass


async def test_faults_are_a_500_without_traceback_and_not_ready(demo_bundle: Path) -> None:
    config = ServeConfig(str(demo_bundle))
    service = RankingService(config, store=BrokenStore())  # type: ignore[arg-type]
    app = create_app(config, service)
    async with _client(app) as client:
        response = await client.post("/v1/rank", json={"user_id": "u1", "candidates": ["i1"]})
        assert response.status_code == 500
        assert response.json() == {"error": "internal error; the server logged it",
                                   "field": None}
        assert "store is down" not in response.text
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "store unreachable" in ready.json()["reason"]
        assert (await client.get("/healthz")).status_code == 200
        text = (await client.get("/metrics")).text
        assert 'dinrec_request_errors_total{path="/v1/rank",kind="server"} 1' in text


def test_field_paths_drop_union_branch_tags() -> None:
    assert field_path(("body", "candidates", 3, "str")) == "candidates[3]"
    assert field_path(("body", "rows", 0, "gender", "list[union[str,int]]")) == "rows[0].gender"
    assert field_path(("body",)) == "body"
    assert json.dumps(field_path(("body", "events", 1, "timestamp", "constrained-float")))
