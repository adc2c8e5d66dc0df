"""The rank cache: same answers as reading the store every time, and never stale."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dinrec.serving.encoding import UserFeatures
from dinrec.serving.rank_cache import CachedItem, CachedUser, RankCache, item_arrays
from dinrec.serving.schemas import EventsRequest, RankRequest
from dinrec.serving.service import RankingService, ServeConfig
from dinrec.serving.stores import open_store

CANDIDATES = ["i5", "i6", "i7", "i8", "nope", 9]


Services = tuple[RankingService, RankingService]


def _service(bundle: Path, store_url: str, users: int = 100, items: int = 1000) -> RankingService:
    config = ServeConfig(str(bundle), store=store_url, cache_users=users, cache_items=items)
    return RankingService(config)


def _events(user: str, items: list[str], start: int = 100) -> EventsRequest:
    return EventsRequest.model_validate({"events": [
        {"user_id": user, "item_id": item, "category": f"c{int(item[1:]) % 6}",
         "timestamp": start + i} for i, item in enumerate(items)
    ]})


def _rank(service: RankingService, user: str = "u1", **extra: Any) -> dict[str, Any]:
    return service.rank(RankRequest.model_validate(
        {"user_id": user, "candidates": CANDIDATES, **extra}
    ))


@pytest.fixture
def services(demo_bundle: Path, store_url: str) -> Iterator[Services]:
    """(a caching service, one that reads the store every time), on the same store."""
    cached = _service(demo_bundle, store_url)
    plain = _service(demo_bundle, store_url, users=0, items=0)
    yield cached, plain
    cached.close()
    plain.close()


def test_cached_answers_equal_uncached_ones_exactly(services: Services) -> None:
    cached, plain = services
    cached.append(_events("u1", ["i1", "i2", "i3"]))
    first = _rank(cached)
    assert cached.cache.hits == 0 and len(cached.cache) == 1
    again = _rank(cached)
    assert cached.cache.hits == 1
    assert first == again == _rank(plain)
    assert first["history_length"] == 3 and first["cold_start"] is False
    assert _rank(cached, top_k=2) == _rank(plain, top_k=2)


def test_events_are_seen_by_the_next_rank_call(services: Services) -> None:
    cached, plain = services
    cold = _rank(cached)
    assert (cold["cold_start"], cold["history_length"]) == (True, 0)
    cached.append(_events("u1", ["i1", "i2"]))
    warm = _rank(cached)
    assert (warm["cold_start"], warm["history_length"]) == (False, 2)
    assert warm == _rank(plain)
    assert warm["items"] != cold["items"]


def test_writes_by_another_process_are_seen(services: Services, store_url: str) -> None:
    cached, plain = services
    cached.append(_events("u1", ["i1"]))
    assert _rank(cached)["history_length"] == 1
    other = open_store(store_url)  # e.g. another server worker, or `dinrec store load`
    try:
        other.replace_users({"u1": [("i2", "c2", 1.0), ("i4", "c4", 2.0)]}, {"u1": {"gender": "m"}})
        after = _rank(cached)
        assert after["history_length"] == 2 and after["defaulted"] == []
        assert after == _rank(plain)
        other.put_items({"i5": "c1", "i6": "c0"})  # candidates' categories change too
        assert _rank(cached) == _rank(plain)
    finally:
        other.close()


def test_request_profile_overrides_are_not_cached(services: Services) -> None:
    cached, plain = services
    cached.append(_events("u1", ["i1"]))
    with_profile = _rank(cached, profile={"gender": "m"})
    assert with_profile == _rank(plain, profile={"gender": "m"})
    assert len(cached.cache) == 0  # the override was encoded for this call only
    without = _rank(cached)
    assert without["defaulted"] == ["gender"] and with_profile["defaulted"] == []
    assert without == _rank(plain)


def test_a_reload_starts_an_empty_cache(services: Services) -> None:
    cached, _ = services
    _rank(cached)
    before = cached.cache
    assert len(before) == 1
    cached.reload()
    assert cached.cache is not before and len(cached.cache) == 0


def _user(n: int) -> CachedUser:
    return CachedUser(True, n, UserFeatures({}, ()))


def test_users_are_evicted_least_recently_used_first() -> None:
    cache = RankCache(max_users=2, max_items=10)
    cache.begin(7)
    cache.put_user(7, "a", _user(1))
    cache.put_user(7, "b", _user(2))
    assert cache.user(7, "a") == _user(1)  # a is now the most recent
    cache.put_user(7, "c", _user(3))
    assert (cache.user(7, "a"), cache.user(7, "b"), cache.user(7, "c")) == (
        _user(1), None, _user(3))


def test_a_new_generation_empties_the_cache_and_stale_puts_are_dropped() -> None:
    cache = RankCache(max_users=5, max_items=5)
    item = CachedItem("c1", (4, 2))
    cache.begin(1)
    cache.put_user(1, "a", _user(1))
    cache.put_items(1, ["i1"], [item])
    assert cache.items(1, ["i1", "i2"]) == [item, None]
    cache.begin(2)
    assert cache.user(2, "a") is None and cache.items(2, ["i1"]) == [None]
    cache.put_user(1, "a", _user(1))  # read before the write that made generation 2
    assert cache.user(2, "a") is None and cache.user(1, "a") is None
    cache.begin(None)  # a store that cannot tell: nothing is cached, nothing changes
    cache.put_user(None, "z", _user(1))
    assert cache.user(None, "z") is None and len(cache) == 0


def test_item_arrays_has_one_column_per_candidate_input() -> None:
    arrays = item_arrays(("item_id", "cate_id"), [CachedItem("c1", (4, 2)),
                                                  CachedItem(None, (7, 1))])
    assert {k: v.tolist() for k, v in arrays.items()} == {"item_id": [4, 7], "cate_id": [2, 1]}
    assert all(v.dtype.name == "int64" and v.flags.c_contiguous for v in arrays.values())
