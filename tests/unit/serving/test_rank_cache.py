"""The rank cache: same answers as reading the store every time, never stale, and a write
for one user leaves every other user's entry cached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.serving.store_files import write_previous_schema_store

from dinrec.serving.encoding import UserFeatures
from dinrec.serving.http.schemas import EventsRequest, RankRequest
from dinrec.serving.rank_cache import CachedItem, CachedUser, RankCache, item_arrays
from dinrec.serving.service import RankingService, ServeConfig
from dinrec.serving.stores import Behavior, Versions, open_store

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


def _behaviors(user: str, items: list[str]) -> list[Behavior]:
    """The events of _events, as another process writes them to the store directly."""
    return [Behavior(str(e.user_id), str(e.item_id), str(e.category), float(e.timestamp))
            for e in _events(user, items).events]


def _rank(service: RankingService, user: str = "u1", **extra: Any) -> dict[str, Any]:
    return service.rank(RankRequest.model_validate(
        {"user_id": user, "candidates": CANDIDATES, **extra}
    ))


class LookupSpy:
    """Counts the store reads of a service: (limit, number of items) per lookup."""

    def __init__(self, service: RankingService, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int]] = []
        real = service.store.lookup

        def lookup(user_id: str, limit: int, items: list[str]) -> Any:
            self.calls.append((limit, len(items)))
            return real(user_id, limit, items)

        monkeypatch.setattr(service.store, "lookup", lookup)


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


def test_a_rank_call_at_an_earlier_time_is_answered_as_the_store_was_then(
    services: Services, store_url: str, demo_bundle: Path,
) -> None:
    cached, _ = services
    cached.append(_events("u1", ["i1", "i2", "i3", "i4"]))  # at 100, 101, 102, 103
    now = _rank(cached, timestamp=200)  # cached
    then = _rank(cached, timestamp=102)  # i3 at 102 had not happened yet
    assert (now["history_length"], then["history_length"]) == (4, 2)
    # the same answer as a store that only ever held the first two events
    other = (store_url.replace("store.db", "past.db") if store_url.startswith("sqlite")
             else store_url[:-1] + "past:")  # a fresh SQLite file or Redis key prefix
    past = _service(demo_bundle, other, users=0, items=0)
    past.append(_events("u1", ["i1", "i2"]))
    assert then["items"] == _rank(past, timestamp=102)["items"] != now["items"]
    past.close()
    assert _rank(cached, timestamp=200) == now  # the bounded view was not cached


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


def test_an_event_for_another_user_keeps_this_users_entry(
    services: Services, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached, plain = services
    cached.append(_events("u1", ["i1", "i2", "i5", "i6", "i7", "i8"]))  # categorizes candidates
    first = _rank(cached)
    spy = LookupSpy(cached, monkeypatch)
    other = open_store(store_url)  # another server process
    try:
        cached.append(_events("u2", ["i1", "i5"]))  # known items, same categories
        other.append(_behaviors("u3", ["i2"]), keep=8)
        assert _rank(cached) == first == _rank(plain)
        assert cached.cache.hits == 1 and spy.calls == []  # nothing re-read at all
        # A new item's category moves the item generation: items are re-read, u1 is not.
        other.append(_behaviors("u2", ["i9"]), keep=8)
        assert _rank(cached) == _rank(plain)
        assert cached.cache.hits == 2 and spy.calls == [(0, len(CANDIDATES))]
    finally:
        other.close()


def test_events_by_another_process_are_seen_on_the_users_next_call(
    services: Services, store_url: str
) -> None:
    cached, plain = services
    cached.append(_events("u1", ["i1"]))
    cached.append(_events("u2", ["i2"]))
    assert _rank(cached)["history_length"] == 1
    assert _rank(cached, "u2")["history_length"] == 1
    other = open_store(store_url)
    try:
        other.append([Behavior("u1", "i3", "c3", 500.0)], keep=8)
        after = _rank(cached)
        assert after["history_length"] == 2 and after == _rank(plain)
        hits = cached.cache.hits
        assert _rank(cached, "u2") == _rank(plain, "u2")
        assert cached.cache.hits == hits + 1  # u2 stayed cached through u1's event
    finally:
        other.close()


def test_a_category_change_by_an_event_is_seen(services: Services, store_url: str) -> None:
    cached, plain = services
    cached.append(_events("u1", ["i1", "i5"]))
    before = _rank(cached)
    other = open_store(store_url)
    try:
        # i5 moves from c5 to c2: an event of another user carries the new category.
        other.append([Behavior("u7", "i5", "c2", 1.0)], keep=8)
        after = _rank(cached)
        assert after == _rank(plain)
        score = {e["item_id"]: e["score"] for e in after["items"]}
        assert score["i5"] != {e["item_id"]: e["score"] for e in before["items"]}["i5"]
    finally:
        other.close()


def test_a_bulk_load_is_seen_and_spares_users_it_does_not_name(
    services: Services, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached, plain = services
    for user in ("u1", "u2", "u3"):
        cached.append(_events(user, ["i1"]))
        _rank(cached, user)
    spy = LookupSpy(cached, monkeypatch)
    loader = open_store(store_url)  # what `dinrec store load` calls, in its chunks
    try:
        loader.replace_users({"u1": [("i2", "c2", 1.0), ("i4", "c4", 2.0)], "u4": []},
                             {"u1": {"gender": "f"}, "u2": {"gender": "m"}})
        loader.put_items({"i5": "c1", "i6": "c0"})
    finally:
        loader.close()
    for user in ("u1", "u2", "u3", "u4"):
        assert _rank(cached, user) == _rank(plain, user)
    # u1, u2 and u4 (loaded) were re-read, u3 (not loaded) was not; the candidates once.
    assert spy.calls == [(8, len(CANDIDATES)), (8, 0), (8, 0)]
    assert _rank(cached)["history_length"] == 2
    assert _rank(cached, "u2")["defaulted"] == []


def _old_schema_store(path: Path) -> None:
    """A store file as written before per-user versions existed, holding u1's behaviors."""
    write_previous_schema_store(path, """
        INSERT INTO behaviors (user_id, ts, item_id, category) VALUES
            ('u1', 1, 'i1', 'c1'), ('u1', 2, 'i2', 'c2');
        INSERT INTO items VALUES ('i1', 'c1'), ('i2', 'c2'), ('i5', 'c5');
    """)


def test_a_store_file_of_the_previous_schema_is_served_and_cached(
    demo_bundle: Path, tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    _old_schema_store(path)
    url = f"sqlite:///{path}"
    cached, plain = _service(demo_bundle, url), _service(demo_bundle, url, users=0, items=0)
    try:
        first = _rank(cached)
        assert first["history_length"] == 2 and _rank(cached) == first == _rank(plain)
        assert cached.cache.hits == 1  # cached at version 0: u1 has no version row yet
        other = open_store(url)
        other.append([Behavior("u1", "i3", "c3", 9.0)], keep=8)  # creates u1's row at 1
        other.close()
        assert _rank(cached)["history_length"] == 3
        assert _rank(cached) == _rank(plain)
    finally:
        cached.close()
        plain.close()


def _user(n: int) -> CachedUser:
    return CachedUser(True, n, UserFeatures({}, ()))


def test_users_are_evicted_least_recently_used_first() -> None:
    cache = RankCache(max_users=2, max_items=10)
    at = Versions("e", 0, 7)
    cache.begin(at)
    cache.put_user(at, "a", _user(1))
    cache.put_user(at, "b", _user(2))
    assert cache.user(at, "a") == _user(1)  # a is now the most recent
    cache.put_user(at, "c", _user(3))
    assert (cache.user(at, "a"), cache.user(at, "b"), cache.user(at, "c")) == (
        _user(1), None, _user(3))


def test_a_user_entry_hits_only_at_its_own_version() -> None:
    cache = RankCache(max_users=5, max_items=5)
    a1, b1 = Versions("e", 0, 1), Versions("e", 0, 4)
    cache.begin(a1)
    cache.put_user(a1, "a", _user(1))
    cache.put_user(b1, "b", _user(2))
    a2 = Versions("e", 0, 2)  # a was written: only a misses
    cache.begin(a2)
    assert cache.user(a2, "a") is None and cache.user(b1, "b") == _user(2)
    cache.put_user(a2, "a", _user(3))
    cache.put_user(a1, "a", _user(1))  # a slower request that read version 1 comes last
    assert cache.user(a2, "a") == _user(3) and cache.user(a1, "a") is None


def test_items_follow_the_item_generation_and_the_epoch_empties_everything() -> None:
    cache = RankCache(max_users=5, max_items=5)
    item = CachedItem("c1", (4, 2))
    v1 = Versions("e", 1, 0)
    cache.begin(v1)
    cache.put_user(v1, "a", _user(1))
    cache.put_items(v1, ["i1"], [item])
    assert cache.items(v1, ["i1", "i2"]) == [item, None]
    v2 = Versions("e", 2, 0)
    cache.begin(v2)
    assert cache.items(v2, ["i1"]) == [None] and cache.user(v2, "a") == _user(1)
    cache.begin(v1)  # a request that read the older generation: no going back
    cache.put_items(v1, ["i1"], [item])  # read before the write that made generation 2
    assert cache.items(v2, ["i1"]) == [None] and cache.items(v1, ["i1"]) == [None]
    wiped = Versions(None, 0, 0)  # the store was wiped: counters restart
    cache.begin(wiped)
    assert cache.user(wiped, "a") is None and len(cache) == 0
    cache.begin(None)  # a store that cannot tell: nothing is cached, nothing changes
    cache.put_user(None, "z", _user(1))
    assert cache.user(None, "z") is None and len(cache) == 0


def test_item_arrays_has_one_column_per_candidate_input() -> None:
    arrays = item_arrays(("item_id", "cate_id"), [CachedItem("c1", (4, 2)),
                                                  CachedItem(None, (7, 1))])
    assert {k: v.tolist() for k, v in arrays.items()} == {"item_id": [4, 7], "cate_id": [2, 1]}
    assert all(v.dtype.name == "int64" and v.flags.c_contiguous for v in arrays.values())
