"""Every error the app answers has the documented shape: {"error": "<field>: <what>",
"field": "<field>"}, the field never null (a 500 names none: it is not the client's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("fastapi", reason="serving tests need the 'serve' extra")

import httpx
from tests.unit.serving.asgi import in_process

from dinrec.serving.service import ServeConfig

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/json"}
API = {"X-API-Key": "k"}



@pytest.fixture
async def client(demo_bundle: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = ServeConfig(str(demo_bundle), store=f"sqlite:///{tmp_path / 's.db'}",
                         api_key="k", admin_key="a", max_body_bytes=2000)
    async with in_process(config) as (c, _):
        yield c


CASES = [
    ("GET", "/v1/nothing", b"", {**API}, 404, "path"),
    ("DELETE", "/v1/rank", b"", {**API}, 405, "method"),
    ("GET", "/v1/model", b"", {}, 401, "X-API-Key"),
    ("POST", "/admin/reload", b"{}", {**JSON, **API}, 401, "X-Admin-Key"),
    ("POST", "/v1/rank", b"x" * 3000, {**JSON, **API}, 413, "body"),
    ("POST", "/v1/rank", b"{}", {**JSON, **API, "content-length": "abc"}, 400,
     "Content-Length"),
    ("POST", "/v1/rank", b"{", {**JSON, **API}, 400, "body"),
    ("POST", "/v1/rank", b"\xff\xfe", {**JSON, **API}, 400, "body"),
    ("POST", "/v1/rank", b"[]", {**JSON, **API}, 422, "body"),
    ("POST", "/v1/events", b"null", {**JSON, **API}, 422, "body"),
    ("POST", "/v1/score", b"{}", {"content-type": "text/plain", **API}, 415, "body"),
    ("POST", "/v1/rank", b'{"user_id": "u"}', {**JSON, **API}, 422, "candidates"),
    ("POST", "/admin/reload", b'{"bundle": "../x"}', {**JSON, "X-Admin-Key": "a"}, 422,
     "bundle"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "field"), CASES)
async def test_every_client_error_names_its_field(
    client: httpx.AsyncClient, method: str, path: str, body: bytes, headers: dict[str, str],
    status: int, field: str,
) -> None:
    response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["field"] == field
    assert answer["error"].startswith(f"{field}: "), answer
