"""Behavior types in the stores: kept per type, read per history group, old files migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.unit.serving.store_files import write_previous_schema_store

from dinrec.serving.stores import Behavior, BehaviorStore, GroupRead, open_store

CLICKS = GroupRead((None, "pv"), 10)
BUYS = GroupRead(("buy", "cart"), 10)


def _typed(user: str, spec: str, start: float = 0.0) -> list[Behavior]:
    """Events from 'item:type' words (type '-' is untyped), one second apart."""
    out = []
    for i, word in enumerate(spec.split()):
        item, kind = word.split(":")
        out.append(Behavior(user, item, f"c-{item}", start + i, None if kind == "-" else kind))
    return out


def test_each_group_reads_the_latest_of_its_own_types_oldest_first(
    store: BehaviorStore,
) -> None:
    store.append(_typed("u", "a:pv b:buy c:- d:fav e:cart f:pv"), keep=10)
    record, _ = store.lookup("u", 10, [], [CLICKS, BUYS, GroupRead(("buy",), 1)])
    assert record.groups == (
        [("a", "c-a", 0.0, 1.0), ("c", "c-c", 2.0, 1.0), ("f", "c-f", 5.0, 1.0)],
        [("b", "c-b", 1.0, 1.0), ("e", "c-e", 4.0, 1.0)],
        [("b", "c-b", 1.0, 1.0)],
    )
    # Untyped readers still see every behavior, whatever its type.
    assert [b[0] for b in record.history] == ["a", "b", "c", "d", "e", "f"]


def test_a_group_limit_takes_the_most_recent_of_its_types(store: BehaviorStore) -> None:
    store.append(_typed("u", "a:buy b:pv c:buy d:buy e:pv"), keep=10)
    record, _ = store.lookup("u", 0, [], [GroupRead(("buy",), 2)])
    assert record.known and record.groups == ([("c", "c-c", 2.0, 1.0), ("d", "c-d", 3.0, 1.0)],)


def test_trim_keeps_the_latest_of_each_type_so_clicks_never_push_out_buys(
    store: BehaviorStore,
) -> None:
    store.append(_typed("u", "b1:buy"), keep=3)
    trimmed = store.append(_typed("u", "p1:pv p2:pv p3:pv p4:pv p5:- p6:-", start=10), keep=3)
    assert trimmed == 1  # p1: the 4th latest pv
    record, _ = store.lookup("u", 10, [], [GroupRead(("pv",), 10), GroupRead(("buy",), 10),
                                           GroupRead((None,), 10)])
    assert [[b[0] for b in group] for group in record.groups] == [
        ["p2", "p3", "p4"], ["b1"], ["p5", "p6"]]
    assert store.counts()["behaviors"] == 6


def test_a_user_with_only_other_types_is_known_with_empty_groups(store: BehaviorStore) -> None:
    store.append(_typed("u", "a:fav"), keep=5)
    record, _ = store.lookup("u", 0, [], [BUYS])
    assert record.known and record.groups == ([],)
    ghost, _ = store.lookup("ghost", 0, [], [BUYS])
    assert not ghost.known and ghost.groups == ([],)


def test_replace_users_keeps_the_types_given(store: BehaviorStore) -> None:
    store.replace_users({"u": [("a", "x", 1.0, "buy"), ("b", None, 2.0)]}, {})
    record, _ = store.lookup("u", 5, [], [BUYS, CLICKS])
    assert record.groups == ([("a", "x", 1.0, 1.0)], [("b", None, 2.0, 1.0)])


def test_a_sqlite_file_from_before_types_gets_the_column_and_reads_as_untyped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    write_previous_schema_store(path, """
        INSERT INTO behaviors (user_id, ts, item_id, category) VALUES ('u', 1, 'a', 'x');
    """)
    store = open_store(f"sqlite:///{path}")
    again = open_store(f"sqlite:///{path}")  # a second open finds the column there
    try:
        store.append([Behavior("u", "b", "x", 2.0, "buy")], keep=5)
        record, _ = again.lookup("u", 5, [], [CLICKS, BUYS])
        assert record.groups == ([("a", "x", 1.0, 1.0)], [("b", "x", 2.0, 1.0)])
        assert record.history == [("a", "x", 1.0, 1.0), ("b", "x", 2.0, 1.0)]
    finally:
        store.close()
        again.close()
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(behaviors)")]
    indexes = [row[1] for row in conn.execute("PRAGMA index_list(behaviors)")]
    conn.close()
    assert columns[-2:] == ["behavior", "weight"] and "behaviors_by_user_type" in indexes


def test_redis_members_from_before_types_read_as_untyped(redis_url: str) -> None:
    import redis

    url = f"{redis_url}?prefix=oldtypes:"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.zadd("oldtypes:h:u", {'0000000000000001|["a", "x"]': 1.0})
    store = open_store(url)
    try:
        store.append([Behavior("u", "b", None, 2.0, "buy")], keep=1)
        record, _ = store.lookup("u", 5, [], [CLICKS, BUYS])
        assert record.groups == ([("a", "x", 1.0, 1.0)], [("b", None, 2.0, 1.0)])
    finally:
        store.close()
        for key in client.scan_iter(match="oldtypes:*"):
            client.delete(key)
        client.close()
