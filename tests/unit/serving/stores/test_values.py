"""A bundle without a vocabulary takes encoded ids: events it cannot take are refused, and
stored values it cannot take (written by another tool or for another model) are skipped and
counted at rank time, never fatal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("fastapi", reason="serving tests need the 'serve' extra")

import httpx
from tests.unit.serving.asgi import in_process

from dinrec.serving.service import RankingService, ServeConfig
from dinrec.serving.stores import Behavior

pytestmark = pytest.mark.anyio
PROFILE = {"gender": 1, "pay_score": 0.5}  # so no profile value comes from the store



@pytest.fixture
async def served(plain_bundle: Path, tmp_path: Path
                 ) -> AsyncIterator[tuple[httpx.AsyncClient, RankingService]]:
    async with in_process(ServeConfig(str(plain_bundle),
                                      store=f"sqlite:///{tmp_path / 's.db'}")) as served:
        yield served


def _event(item: Any, category: Any = None, user: str = "u", ts: int = 1) -> dict[str, Any]:
    return {"user_id": user, "item_id": item, "category": category, "timestamp": ts}


async def _rank(client: httpx.AsyncClient, user: str, candidates: list[Any]) -> httpx.Response:
    return await client.post("/v1/rank", json={"user_id": user, "candidates": candidates,
                                               "profile": PROFILE})


@pytest.mark.parametrize(("event", "field", "said"), [
    (_event(999), "events[0].item_id", "outside hist_item_id's table [0, 4)"),
    (_event("²"), "events[0].item_id", "ids must be encoded integers; got '²'"),
    (_event("--5"), "events[0].item_id", "ids must be encoded integers; got '--5'"),
    (_event(2, 99), "events[0].category", "outside hist_cate_id's table [0, 3)"),
])
async def test_events_the_model_cannot_take_are_refused_and_not_stored(
    served: tuple[httpx.AsyncClient, RankingService], event: dict[str, Any], field: str,
    said: str,
) -> None:
    client, service = served
    response = await client.post("/v1/events", json={"events": [_event(1), event]})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field.replace("[0]", "[1]")
    assert said in response.json()["error"]
    assert service.store.counts()["behaviors"] == 0  # nothing of the call was stored
    ranked = await _rank(client, "u", [1, 2, 3])
    assert ranked.status_code == 200 and ranked.json()["cold_start"] is True


async def test_encoded_ids_as_strings_are_still_taken(
    served: tuple[httpx.AsyncClient, RankingService],
) -> None:
    client, _ = served
    response = await client.post("/v1/events", json={"events": [_event("2", "1"), _event(3, 2)]})
    assert response.status_code == 200, response.text
    assert (await _rank(client, "u", [1, 2])).json()["history_length"] == 2


async def test_stored_behaviors_the_model_cannot_take_are_skipped_and_counted(
    served: tuple[httpx.AsyncClient, RankingService],
) -> None:
    client, service = served
    # Written behind the server's back, as another tool or a server of another model would.
    service.store.append([Behavior("u", "999", "1", 1.0), Behavior("u", "²", None, 2.0),
                          Behavior("u", "2", "77", 3.0), Behavior("u", "3", "1", 4.0)], keep=8)
    response = await _rank(client, "u", [1, 2, 3])
    assert response.status_code == 200, response.text
    assert response.json()["history_length"] == 1  # only (3, 1) is usable
    metrics = (await client.get("/metrics")).text
    assert 'dinrec_store_values_skipped_total{kind="behavior"} 3' in metrics


# Oldest first; the latest four (the model's maxlen) hold two behaviors it cannot take.
OLDER = [("1", "1"), ("2", "2"), ("3", "1"), ("1", "2")]
NEWER = [("999", None), ("2", "1"), ("²", None), ("3", "2")]
USABLE = [("3", "1"), ("1", "2"), ("2", "1"), ("3", "2")]  # what fills the history


def _behaviors(user: str, pairs: list[tuple[str, str | None]]) -> list[Behavior]:
    return [Behavior(user, item, cat, float(ts)) for ts, (item, cat) in enumerate(pairs)]


async def test_skipped_stored_behaviors_are_filled_from_older_ones(
    served: tuple[httpx.AsyncClient, RankingService],
) -> None:
    client, service = served
    # A store keeping more than maxlen (another server's longer history, another tool).
    service.store.append(_behaviors("u", OLDER + NEWER), keep=16)
    service.store.append(_behaviors("clean", USABLE), keep=16)
    filled, clean = await _rank(client, "u", [1, 2, 3]), await _rank(client, "clean", [1, 2, 3])
    assert filled.status_code == 200, filled.text
    assert filled.json()["history_length"] == 4
    # The same four behaviors, so the same scores.
    assert filled.json()["items"] == clean.json()["items"]
    metrics = (await client.get("/metrics")).text
    assert 'dinrec_store_values_skipped_total{kind="behavior"} 2' in metrics


async def test_without_older_stored_behaviors_the_history_is_shorter(
    served: tuple[httpx.AsyncClient, RankingService],
) -> None:
    client, service = served
    service.store.append(_behaviors("u", OLDER + NEWER), keep=4)  # the store keeps maxlen
    response = await _rank(client, "u", [1, 2, 3])
    assert response.status_code == 200, response.text
    assert response.json()["history_length"] == 2  # (2, 1) and (3, 2)


async def test_a_stored_category_the_model_cannot_take_is_unknown_for_every_user(
    served: tuple[httpx.AsyncClient, RankingService],
) -> None:
    client, service = served
    service.store.put_items({"3": "99", "2": "1"})
    for user in ("a", "b"):
        response = await _rank(client, user, [1, 2, 3])
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == 3
    # The item cache holds the cleaned category: counted once, when it was read.
    metrics = (await client.get("/metrics")).text
    assert 'dinrec_store_values_skipped_total{kind="category"} 1' in metrics


async def test_stored_profile_values_the_model_cannot_take_are_defaulted_and_counted(
    served: tuple[httpx.AsyncClient, RankingService],
) -> None:
    client, service = served
    service.store.replace_users({"p": [("2", "1", 1.0)]},
                                {"p": {"gender": 5, "pay_score": 1e39}})
    response = await client.post("/v1/rank", json={"user_id": "p", "candidates": [1, 2]})
    assert response.status_code == 200, response.text
    assert sorted(response.json()["defaulted"]) == ["gender", "pay_score", "user"]
    metrics = (await client.get("/metrics")).text
    assert 'dinrec_store_values_skipped_total{kind="profile"} 2' in metrics
    good = await client.post("/v1/rank", json={"user_id": "p", "candidates": [1],
                                               "profile": {"gender": 1, "pay_score": 0.5}})
    assert good.json()["defaulted"] == ["user"]  # the request's own values still count
