"""Client values past what the model's types hold are a 422 naming the field, not a 500:
dense values beyond float32, integers past float range, ids that only look like digits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("fastapi", reason="serving tests need the 'serve' extra")

import httpx
from tests.unit.serving.asgi import in_process

from dinrec.serving.service import ServeConfig

pytestmark = pytest.mark.anyio
HUGE = 10**400  # an integer no float holds
BEYOND_FLOAT32 = [1e39, -1e39, 1e300, HUGE, -HUGE]



@pytest.fixture
async def client(plain_bundle: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(ServeConfig(str(plain_bundle),
                                      store=f"sqlite:///{tmp_path / 's.db'}")) as (c, _):
        yield c


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, content=json.dumps(body),
                             headers={"content-type": "application/json"})


def _assert_422(response: httpx.Response, field: str, said: str) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert said in response.json()["error"] and "Traceback" not in response.text


@pytest.mark.parametrize("value", BEYOND_FLOAT32)
async def test_dense_values_beyond_float32_are_a_422(client: httpx.AsyncClient,
                                                     value: float) -> None:
    ranked = await _post(client, "/v1/rank", {"user_id": "u", "candidates": [1],
                                              "profile": {"gender": 1, "pay_score": value}})
    _assert_422(ranked, "profile.pay_score", "within float32 range")
    row = {"user": 1, "gender": 1, "item_id": 1, "cate_id": 1, "pay_score": value,
           "hist_item_id": [2], "hist_cate_id": [1]}
    scored = await _post(client, "/v1/score", {"rows": [row]})
    _assert_422(scored, "rows[0].pay_score", "within float32 range")


async def test_the_largest_float32_is_still_a_number(client: httpx.AsyncClient) -> None:
    ranked = await _post(client, "/v1/rank", {"user_id": "u", "candidates": [1],
                                              "profile": {"gender": 1, "pay_score": 3.4e38}})
    assert ranked.status_code == 200, ranked.text


async def test_a_timestamp_past_float_range_is_a_422(client: httpx.AsyncClient) -> None:
    event = {"user_id": "u", "item_id": 1, "timestamp": HUGE}
    response = await _post(client, "/v1/events", {"events": [event]})
    _assert_422(response, "events[0].timestamp", "must fit a 64-bit float")


@pytest.mark.parametrize("item", ["²", "--5", "٣", "1_0"])
async def test_ids_that_only_look_like_digits_are_a_422(client: httpx.AsyncClient,
                                                        item: str) -> None:
    response = await _post(client, "/v1/rank", {"user_id": "u", "candidates": [1, item]})
    _assert_422(response, "candidates[1]", "ids must be encoded integers")
    assert (await client.get("/healthz")).status_code == 200
