"""POST /v1/rank's pure-ASGI route: the same answers as the FastAPI route, and the Guard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("fastapi", reason="serving tests need the 'serve' extra")

import httpx

from dinrec.serving.http.app import create_app
from dinrec.serving.http.rank_route import dumps
from dinrec.serving.service import ServeConfig

pytestmark = pytest.mark.anyio
BODY = b'{"user_id": "u1", "candidates": ["i5", "i6", "nope", 9], "top_k": 3}'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(demo_bundle: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ServeConfig(str(demo_bundle), store=f"sqlite:///{tmp_path / 's.db'}"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        events = [{"user_id": "u1", "item_id": "i1", "category": "c1", "timestamp": 1}]
        assert (await c.post("/v1/events", json={"events": events})).status_code == 200
        yield c
    app.state.service.close()


async def _post(client: httpx.AsyncClient, body: bytes, content_type: str) -> httpx.Response:
    return await client.post("/v1/rank", content=body, headers={"content-type": content_type})


async def test_fast_and_fastapi_routes_give_the_same_answer(client: httpx.AsyncClient) -> None:
    fast = await _post(client, BODY, "application/json; charset=utf-8")
    # A +json media type is JSON to FastAPI but not taken by the fast route.
    slow = await _post(client, BODY, "application/vnd.dinrec+json")
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.json() == slow.json()
    body = fast.json()
    assert [item["item_id"] for item in body["items"]] == [
        item["item_id"] for item in slow.json()["items"]]
    assert len(body["items"]) == 3 and body["history_length"] == 1


async def test_invalid_requests_get_fastapis_errors(client: httpx.AsyncClient) -> None:
    for body, status, field in [
        (b'{"user_id": "u1", "candidates": []}', 422, "candidates"),
        (b'{"user_id": "u1", "candidates": ["i1", 2.5]}', 422, "candidates[1]"),
        (b'{"user_id": "u1", "candidates": ["i1"]', 400, "body"),
        (b'{"user_id": "u1", "candidates": ["i1"], "top_k": NaN}', 422, "top_k"),
    ]:
        fast = await _post(client, body, "application/json")
        slow = await _post(client, body, "application/vnd.dinrec+json")
        assert (fast.status_code, fast.json()["field"]) == (status, field)
        assert fast.json() == slow.json()


async def test_ids_beyond_64_bits_and_metrics(client: httpx.AsyncClient) -> None:
    huge = 2**70  # orjson refuses it; the response falls back to json
    response = await client.post("/v1/rank", json={"user_id": huge, "candidates": [huge]})
    assert response.status_code == 200
    assert response.json()["user_id"] == huge and response.json()["cold_start"] is True
    assert response.json()["items"][0]["item_id"] == huge
    text = (await client.get("/metrics")).text
    assert 'dinrec_requests_total{method="POST",path="/v1/rank",status="200"} 1' in text


def test_dumps_is_compact_utf8_json() -> None:
    assert dumps({"a": [1, 0.5], "é": None}) == '{"a":[1,0.5],"é":null}'.encode()
    assert dumps({"big": 2**70}) == b'{"big":1180591620717411303424}'


async def test_non_finite_scores_are_a_500_not_nulls(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    backend = transport.app.state.service.scorer.backend  # type: ignore[attr-defined]
    monkeypatch.setattr(backend, "logits", lambda user, items: np.full(4, np.nan, np.float32))
    response = await _post(client, BODY, "application/json")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; the server logged it", "field": None}
