"""Behavior weights in the stores: kept with their events, read by every kind of lookup,
1.0 for events without one and for what older versions stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.unit.serving.store_files import write_previous_schema_store

from dinrec.serving.stores import Behavior, BehaviorStore, GroupRead, open_store

BUYS = GroupRead(("buy",), 10)
UNTYPED = GroupRead((None,), 10)


def test_appended_weights_come_back_with_their_behaviors(store: BehaviorStore) -> None:
    store.append([Behavior("u", "a", "x", 1.0, None, 0.5), Behavior("u", "b", None, 2.0),
                  Behavior("u", "c", "y", 3.0, "buy", 2.25)], keep=10)
    record, _ = store.lookup("u", 10, [], [BUYS, UNTYPED])
    assert record.history == [("a", "x", 1.0, 0.5), ("b", None, 2.0, 1.0),
                              ("c", "y", 3.0, 2.25)]
    assert record.groups == ([("c", "y", 3.0, 2.25)], [("a", "x", 1.0, 0.5),
                                                       ("b", None, 2.0, 1.0)])
    plain, _ = store.lookup("u", 2, [])  # the untyped read keeps the newest 2 with weights
    assert plain.history == [("b", None, 2.0, 1.0), ("c", "y", 3.0, 2.25)]


def test_trimming_keeps_the_weights_of_the_behaviors_it_keeps(store: BehaviorStore) -> None:
    store.append([Behavior("u", f"i{t}", None, float(t), "buy", t / 4) for t in range(5)],
                 keep=2)
    record, _ = store.lookup("u", 0, [], [BUYS])
    assert record.groups == ([("i3", None, 3.0, 0.75), ("i4", None, 4.0, 1.0)],)


def test_an_append_of_weighted_events_bumps_the_users_version(store: BehaviorStore) -> None:
    store.append([Behavior("u", "a", None, 1.0, None, 2.0)], keep=5)
    before = store.versions("u")
    store.append([Behavior("u", "a", None, 1.0, None, 3.0)], keep=5)  # same event, new weight
    assert store.versions("u").user == before.user + 1


def test_replace_users_takes_an_optional_weight_after_the_type(store: BehaviorStore) -> None:
    store.replace_users({"u": [("a", "x", 1.0, None, 0.5), ("b", None, 2.0, "buy", 4.0),
                               ("c", None, 3.0, "buy"), ("d", None, 4.0)]}, {})
    record, _ = store.lookup("u", 10, [], [BUYS])
    assert [b[3] for b in record.history] == [0.5, 4.0, 1.0, 1.0]
    assert record.groups == ([("b", None, 2.0, 4.0), ("c", None, 3.0, 1.0)],)


def test_a_sqlite_file_from_before_weights_gets_the_column_and_reads_as_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    write_previous_schema_store(path, """
        ALTER TABLE behaviors ADD COLUMN behavior TEXT DEFAULT NULL;
        INSERT INTO behaviors (user_id, ts, item_id, category, behavior)
            VALUES ('u', 1, 'a', 'x', 'buy');
    """)
    store = open_store(f"sqlite:///{path}")
    store.append([Behavior("u", "b", "x", 2.0, "buy", 0.5)], keep=5)
    record, _ = store.lookup("u", 5, [], [BUYS])
    store.close()
    assert record.groups == ([("a", "x", 1.0, 1.0), ("b", "x", 2.0, 0.5)],)
    assert record.history == [("a", "x", 1.0, 1.0), ("b", "x", 2.0, 0.5)]
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(behaviors)")]
    weights = conn.execute("SELECT weight FROM behaviors ORDER BY seq").fetchall()
    conn.close()
    assert columns[-2:] == ["behavior", "weight"] and weights == [(None,), (0.5,)]


def test_redis_members_from_before_weights_read_as_one(redis_url: str) -> None:
    import redis

    url = f"{redis_url}?prefix=oldweights:"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.zadd("oldweights:h:u", {'0000000000000001|["a", "x", "buy"]': 1.0,
                                   '0000000000000002|["b", "x"]': 2.0})
    store = open_store(url)
    try:
        store.append([Behavior("u", "c", None, 3.0, "buy", 0.5)], keep=5)
        record, _ = store.lookup("u", 5, [], [BUYS, UNTYPED])
        assert record.groups == ([("a", "x", 1.0, 1.0), ("c", None, 3.0, 0.5)],
                                 [("b", "x", 2.0, 1.0)])
        # Weight 1.0 writes the members as before weights; another weight one more field.
        assert sorted(m.split("|", 1)[1] for m in client.zrange("oldweights:h:u", 0, -1)) == [
            '["a", "x", "buy"]', '["b", "x"]', '["c", null, "buy", 0.5]']
    finally:
        store.close()
        for key in client.scan_iter(match="oldweights:*"):
            client.delete(key)
        client.close()
