"""Behavior stores: one suite, run against SQLite and a real redis-server."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from tests.unit.serving.store_files import write_previous_schema_store

from dinrec.serving.stores import Behavior, BehaviorStore, open_store, redact


def _events(user: str, items: list[str], start: float = 0.0) -> list[Behavior]:
    return [Behavior(user, item, f"c-{item}", start + i) for i, item in enumerate(items)]


def test_unknown_user_is_not_known_and_has_nothing(store: BehaviorStore) -> None:
    record, cats = store.lookup("ghost", 5, ["a", "b"])
    assert (record.known, record.profile, record.history) == (False, {}, [])
    assert cats == [None, None]


def test_appended_behaviors_come_back_oldest_first(store: BehaviorStore) -> None:
    store.append(_events("u", ["a", "b", "c"]), keep=10)
    record, _ = store.lookup("u", 10, [])
    assert record.known
    assert record.history == [("a", "c-a", 0.0, 1.0), ("b", "c-b", 1.0, 1.0),
                              ("c", "c-c", 2.0, 1.0)]


def test_history_is_ordered_by_timestamp_and_ties_keep_arrival_order(
    store: BehaviorStore,
) -> None:
    store.append([Behavior("u", "late", None, 50.0), Behavior("u", "early", None, 10.0)], keep=9)
    store.append([Behavior("u", "tie1", None, 20.0), Behavior("u", "tie2", None, 20.0)], keep=9)
    record, _ = store.lookup("u", 9, [])
    assert [b[0] for b in record.history] == ["early", "tie1", "tie2", "late"]
    assert record.history[0] == ("early", None, 10.0, 1.0)


def test_lookup_limit_returns_the_most_recent(store: BehaviorStore) -> None:
    store.append(_events("u", ["a", "b", "c", "d"]), keep=10)
    record, _ = store.lookup("u", 2, [])
    assert [b[0] for b in record.history] == ["c", "d"]


def test_append_trims_each_user_to_keep(store: BehaviorStore) -> None:
    store.append(_events("u", ["a", "b", "c"]), keep=3)
    store.append(_events("u", ["d", "e"], start=10) + _events("v", ["x"]), keep=3)
    record, _ = store.lookup("u", 100, [])
    assert [b[0] for b in record.history] == ["c", "d", "e"]
    assert store.counts()["behaviors"] == 4


def test_append_says_how_many_new_events_the_trim_removed(store: BehaviorStore) -> None:
    assert store.append([Behavior("u", f"i{t}", None, float(t)) for t in (10, 11, 12)],
                        keep=3) == 0
    assert store.append([Behavior("u", "old", None, 1.0)], keep=3) == 1  # older than all 3
    assert store.append([Behavior("u", "new", None, 20.0), Behavior("u", "old2", None, 2.0),
                         Behavior("v", "x", None, 1.0)], keep=3) == 1
    record, _ = store.lookup("u", 10, [])
    assert [b[0] for b in record.history] == ["i11", "i12", "new"]
    assert store.append([Behavior("w", f"j{t}", None, float(t)) for t in range(5)],
                        keep=2) == 3  # one call beyond keep: its 3 oldest


def test_events_with_a_category_fill_the_item_map(store: BehaviorStore) -> None:
    store.append([Behavior("u", "i1", "c1", 1.0), Behavior("u", "i2", None, 2.0)], keep=5)
    store.put_items({"i3": "c3"})
    _, cats = store.lookup("anyone", 5, ["i1", "i2", "i3", "i1"])
    assert cats == ["c1", None, "c3", "c1"]


def test_replace_users_sets_history_and_profile(store: BehaviorStore) -> None:
    store.append(_events("u", ["old"]), keep=5)
    store.replace_users({"u": [("a", "x", 5.0), ("b", None, 5.0)]}, {"u": {"gender": "f"}})
    record, _ = store.lookup("u", 5, [])
    assert record.history == [("a", "x", 5.0, 1.0), ("b", None, 5.0, 1.0)]
    assert record.profile == {"gender": "f"}
    store.replace_users({}, {"p": {"age": "30"}})
    assert store.lookup("p", 5, [])[0].known  # a profile alone makes a user known
    assert store.counts()["users"] == 2


def test_raw_ids_with_separators_and_unicode_survive(store: BehaviorStore) -> None:
    store.append([Behavior("user:1|x", "item|1:\"q\"", "cät", 1.0)], keep=5)
    record, cats = store.lookup("user:1|x", 5, ['item|1:"q"'])
    assert record.history == [('item|1:"q"', "cät", 1.0, 1.0)]
    assert cats == ["cät"]


def test_concurrent_writer_and_readers_see_no_errors(store_url: str) -> None:
    """One writer appends while readers look up, each thread with the shared store."""
    store = open_store(store_url)
    errors: list[BaseException] = []
    seen: list[int] = []

    def writer() -> None:
        try:
            for i in range(60):
                store.append([Behavior("u", f"i{i}", "c", float(i))], keep=5)
        except BaseException as err:  # collected for the assertion below
            errors.append(err)

    def reader() -> None:
        try:
            for _ in range(60):
                record, _ = store.lookup("u", 5, ["i1"])
                seen.append(len(record.history))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader)
                                                    for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert errors == []
    assert max(seen) <= 5
    final = open_store(store_url)
    assert [b[0] for b in final.lookup("u", 5, [])[0].history] == [f"i{i}" for i in range(55, 60)]
    final.close()


def test_sqlite_store_is_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    conn = store._conn()  # type: ignore[attr-defined]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_store_urls_are_checked_and_redacted() -> None:
    with pytest.raises(ValueError, match="unknown store URL"):
        open_store("postgres://x")
    with pytest.raises(ValueError, match="names no file"):
        open_store("sqlite:///")
    assert redact("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("sqlite:///a.db") == "sqlite:///a.db"
    assert redact("sqlite:////srv/private/dir/a.db") == "sqlite:///.../a.db"


def test_versions_move_per_user_and_per_item_change_and_not_on_reads(
    store: BehaviorStore, store_url: str
) -> None:
    start = store.versions("u")
    assert start is not None and (start.items, start.user) == (0, 0)
    store.lookup("u", 5, ["a"])
    store.ping()
    assert store.versions("u") == start  # reads leave it alone
    other = open_store(store_url)  # another writer: another process, or `dinrec store load`
    try:
        store.append(_events("u", ["a"]), keep=5)  # u's history and a new item category
        first = store.versions("u")
        assert first.epoch is not None and (first.items, first.user) == (1, 1)
        assert other.versions("u") == first
        other.append(_events("v", ["a"]), keep=5)  # another user, a known category
        assert store.versions("u") == first and store.versions("v").user == 1
        other.append(_events("u", ["a"]), keep=5)
        assert store.versions("u") == first._replace(user=2)
        other.replace_users({"w": [("c", None, 1.0)]}, {"x": {"gender": "f"}})
        assert [store.versions(n).user for n in ("u", "w", "x")] == [2, 1, 1]
        other.put_items({"a": "c-a"})  # the same category: nothing changed
        assert store.versions("u").items == 1
        other.put_items({"a": "new"})
        other.append([Behavior("y", "b", "c-b", 1.0)], keep=5)  # a category first seen
        assert store.versions("u") == first._replace(items=3, user=2)
    finally:
        other.close()


def test_sqlite_store_of_the_previous_schema_opens_and_versions_from_zero(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    write_previous_schema_store(path, """
        INSERT INTO behaviors (user_id, ts, item_id, category) VALUES ('u', 1, 'a', 'x');
        INSERT INTO profiles VALUES ('u', '{"gender": "f"}');
        INSERT INTO items VALUES ('a', 'x');
    """)
    store = open_store(f"sqlite:///{path}")
    again = open_store(f"sqlite:///{path}")  # a second opener keeps the first one's epoch
    try:
        record, cats = store.lookup("u", 5, ["a"])
        assert (record.history, record.profile, cats) == ([("a", "x", 1.0, 1.0)], {"gender": "f"},
                                                        ["x"])
        before = store.versions("u")
        assert before.epoch is not None and (before.items, before.user) == (0, 0)
        assert again.versions("u") == before
        store.append([Behavior("u", "b", "x", 2.0)], keep=5)  # the first write makes 1
        assert again.versions("u") == before._replace(items=1, user=1)
        assert store.counts() == {"users": 1, "behaviors": 2, "items": 2}
    finally:
        store.close()
        again.close()


def test_a_wiped_redis_store_never_repeats_an_epoch(redis_url: str) -> None:
    url = f"{redis_url}?prefix=wipe{uuid.uuid4().hex[:8]}:"
    store = open_store(url)
    try:
        store.append(_events("u", ["a"]), keep=5)
        cached = store.versions("u")
        client = store.client  # type: ignore[attr-defined]
        client.delete(*client.keys(store.prefix + "*"))  # type: ignore[attr-defined]
        assert store.versions("u").epoch is None  # no longer the epoch anything was cached in
        store.append(_events("u", ["b"]), keep=5)  # counters restart...
        now = store.versions("u")
        assert (now.items, now.user) == (cached.items, cached.user)
        assert now.epoch not in (None, cached.epoch)  # ...under a new epoch
    finally:
        store.close()
