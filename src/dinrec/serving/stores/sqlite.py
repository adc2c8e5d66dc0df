"""SQLiteStore: the embedded behavior store (one file, WAL, indexed by user).

WAL lets readers run while one writer commits, also across processes (several server
workers, or `dinrec store load` beside a running server). Each thread gets its own
connection: a sqlite3 connection must not be used by two threads at once.

versions() (what the rank cache checks per request) is one indexed SELECT of the store's
epoch, its item generation and the user's version (~5 us). Every write bumps the versions
it affects in the same transaction as its data: the user's row in user_versions on a write
of their history or profile, `items` in meta only when an item's category is added or
changed (so a steady stream of events does not empty every cached item). Files written
before these tables existed are migrated on open: the tables are created, and a user without
a row is version 0 until their first write makes it 1. Files from before behavior types get
the `behavior` column on open, NULL (untyped) for the rows already there; files from before
weights the `weight` column, NULL (read as 1.0).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dinrec.serving.stores.base import (
    SQLITE_SCHEME,
    Behavior,
    GroupRead,
    StoredBehavior,
    UserRecord,
    Versions,
    typed,
    weighed,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS behaviors (
    seq INTEGER PRIMARY KEY,   -- arrival order: breaks timestamp ties
    user_id TEXT NOT NULL,
    ts REAL NOT NULL,
    item_id TEXT NOT NULL,
    category TEXT,
    behavior TEXT,             -- the behavior's type; NULL: untyped
    weight REAL                -- the behavior's weight; NULL (rows from before it): 1.0
);
CREATE INDEX IF NOT EXISTS behaviors_by_user ON behaviors (user_id, ts, seq);
CREATE TABLE IF NOT EXISTS profiles (user_id TEXT PRIMARY KEY, profile TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, category TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_versions (user_id TEXT PRIMARY KEY, version INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('items', 0);
"""
# Files from before behavior types (or weights) gain the column, NULL in the old rows
# (untyped; weight 1.0); the index serves a history group's read of its types (after the
# column exists, so not in SCHEMA).
ADDED_COLUMNS = {"behavior": "ALTER TABLE behaviors ADD COLUMN behavior TEXT DEFAULT NULL",
                 "weight": "ALTER TABLE behaviors ADD COLUMN weight REAL DEFAULT NULL"}
BEHAVIOR_INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS behaviors_by_user_type ON behaviors (user_id, behavior, ts, seq)"
)
# What a read returns of each behavior: a StoredBehavior.
READ_COLUMNS = "item_id, category, ts, COALESCE(weight, 1.0)"
INSERT_SQL = ("INSERT INTO behaviors (user_id, ts, item_id, category, behavior, weight) "
              "VALUES (?, ?, ?, ?, ?, ?)")
# The epoch is set once, by whoever creates the file (or migrates an old one).
EPOCH_SQL = "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)"
VERSIONS_SQL = (
    "SELECT (SELECT value FROM meta WHERE key = 'epoch'), "
    "(SELECT value FROM meta WHERE key = 'items'), "
    "(SELECT version FROM user_versions WHERE user_id = ?)"
)
# SQLite's default limit on bound parameters is 32766 since 3.32, 999 before; stay under both.
CHUNK = 900
BUSY_TIMEOUT_S = 10.0


def _add_columns(conn: sqlite3.Connection) -> None:
    """Give a file from before behavior types or weights its `behavior` column (and index)
    and its `weight` column."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(behaviors)")}
    for name, sql in ADDED_COLUMNS.items():
        if name in columns:
            continue
        try:
            conn.execute(sql)
        except sqlite3.OperationalError as err:  # another process migrated it meanwhile
            if "duplicate column" not in str(err):
                raise
    conn.execute(BEHAVIOR_INDEX_SQL)


def _stored(rows: list[Any]) -> list[StoredBehavior]:
    """Rows of READ_COLUMNS, newest first, as StoredBehaviors oldest first: the columns'
    affinities (TEXT, REAL; COALESCE of a REAL) make each row one already."""
    return rows[::-1]


class StoreFileGone(OSError):
    """The SQLite file a store opened is no longer at its path."""


class SQLiteStore:
    """A BehaviorStore in one SQLite file.

    Args:
        path: the database file (created with its tables if absent).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = SQLITE_SCHEME + str(path)
        if str(self.path.parent) not in ("", "."):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # executescript commits on its own; IF NOT EXISTS / OR IGNORE make a concurrent open
        # (or one of a file from before user_versions existed) harmless.
        conn = self._conn()
        conn.executescript(SCHEMA)
        _add_columns(conn)
        conn.execute(EPOCH_SQL, (secrets.token_hex(8),))
        # The file opened: connections keep writing to it after it is deleted or replaced,
        # into data lost at the next open, so ping() and every write check it is still there.
        self._identity = self._file_identity()

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def check_file(self) -> None:
        """Raise StoreFileGone if the database file was deleted or replaced since it was
        opened (SELECT 1 would still answer, from the deleted file)."""
        now = self._file_identity()
        if now != self._identity:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreFileGone(f"store file {self.path.name} was {what} since the server "
                                "opened it; restart the server to open the current one")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process crash; only an OS crash can
            # lose the last transactions (no fsync per commit, which would cap events/s).
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front (no upgrade deadlocks)."""
        self.check_file()
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def lookup(
        self, user_id: str, limit: int, items: Sequence[str], groups: Sequence[GroupRead] = ()
    ) -> tuple[UserRecord, list[str | None]]:
        conn = self._conn()
        # One read transaction: profile, histories and categories from the same snapshot.
        conn.execute("BEGIN")
        try:
            rows = conn.execute(
                f"SELECT {READ_COLUMNS} FROM behaviors WHERE user_id = ? "
                "ORDER BY ts DESC, seq DESC LIMIT ?",
                (user_id, max(limit, 0)),
            ).fetchall()
            per_group = [self._group_rows(conn, user_id, read) for read in groups]
            found = conn.execute(
                "SELECT profile FROM profiles WHERE user_id = ?", (user_id,)
            ).fetchone()
            has_any = bool(rows) or any(per_group) or found is not None or (
                limit <= 0 and conn.execute(
                    "SELECT 1 FROM behaviors WHERE user_id = ? LIMIT 1", (user_id,)
                ).fetchone() is not None
            )
            categories = self._categories(conn, items)
        finally:
            conn.execute("COMMIT")
        profile = json.loads(found[0]) if found is not None else {}
        return UserRecord(has_any, profile, _stored(rows), tuple(per_group)), categories

    @staticmethod
    def _group_rows(
        conn: sqlite3.Connection, user_id: str, read: GroupRead
    ) -> list[StoredBehavior]:
        """The latest read.limit behaviors of read.types, oldest first."""
        named = [t for t in read.types if t is not None]
        where = []
        if named:
            where.append(f"behavior IN ({','.join('?' * len(named))})")
        if None in read.types:
            where.append("behavior IS NULL")
        if not where or read.limit <= 0:
            return []
        rows = conn.execute(
            f"SELECT {READ_COLUMNS} FROM behaviors WHERE user_id = ? AND "
            f"({' OR '.join(where)}) ORDER BY ts DESC, seq DESC LIMIT ?",
            (user_id, *named, read.limit),
        ).fetchall()
        return _stored(rows)

    @staticmethod
    def _categories(conn: sqlite3.Connection, items: Sequence[str]) -> list[str | None]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(items))
        for lo in range(0, len(unique), CHUNK):
            part = unique[lo : lo + CHUNK]
            marks = ",".join("?" * len(part))
            found.update(conn.execute(
                f"SELECT item_id, category FROM items WHERE item_id IN ({marks})", part
            ).fetchall())
        return [found.get(item) for item in items]

    def append(self, events: Sequence[Behavior], keep: int) -> int:
        if not events:
            return 0
        with self._write() as db:
            # The write lock is held: the rows inserted now are exactly those after `last`.
            [(last,)] = db.execute("SELECT COALESCE(MAX(seq), 0) FROM behaviors").fetchall()
            db.executemany(
                INSERT_SQL,
                [(e.user_id, float(e.timestamp), e.item_id, e.category, e.behavior,
                  float(e.weight)) for e in events],
            )
            users = {e.user_id for e in events}
            self._trim(db, {(e.user_id, e.behavior) for e in events}, keep)
            self._bump_users(db, users)
            cats = {e.item_id: e.category for e in events if e.category is not None}
            self._upsert_items(db, cats)
            [(kept,)] = db.execute(
                "SELECT COUNT(*) FROM behaviors WHERE seq > ?", (last,)
            ).fetchall()
        return len(events) - int(kept)

    @staticmethod
    def _trim(db: sqlite3.Connection, kinds: set[tuple[str, str | None]], keep: int) -> None:
        """Keep the `keep` latest behaviors of each (user, type); `IS` matches NULL too."""
        db.executemany(
            "DELETE FROM behaviors WHERE seq IN (SELECT seq FROM behaviors WHERE user_id = ? "
            "AND behavior IS ? ORDER BY ts DESC, seq DESC LIMIT -1 OFFSET ?)",
            [(user, kind, max(keep, 1))
             for user, kind in sorted(kinds, key=lambda k: (k[0], k[1] or ""))],
        )

    @staticmethod
    def _bump_users(db: sqlite3.Connection, users: Iterable[str]) -> None:
        """Advance these users' versions (a first write creates the row at 1, so an entry
        cached at version 0 is stale too)."""
        db.executemany(
            "INSERT INTO user_versions (user_id, version) VALUES (?, 1) "
            "ON CONFLICT(user_id) DO UPDATE SET version = version + 1",
            [(user,) for user in sorted(users)],
        )

    @staticmethod
    def _upsert_items(db: sqlite3.Connection, categories: Mapping[str, str]) -> None:
        """Set categories; bump the item generation only if one was added or changed: events
        mostly repeat known categories, which must not empty every cached item."""
        before = db.total_changes
        db.executemany(
            "INSERT INTO items (item_id, category) VALUES (?, ?) "
            "ON CONFLICT(item_id) DO UPDATE SET category = excluded.category "
            "WHERE items.category IS NOT excluded.category",
            list(categories.items()),
        )
        if db.total_changes != before:
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'items'")

    def replace_users(
        self,
        histories: Mapping[str, Sequence[tuple[Any, ...]]],
        profiles: Mapping[str, Mapping[str, Any]],
    ) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM behaviors WHERE user_id = ?", [(u,) for u in histories])
            db.executemany(
                INSERT_SQL,
                [(user, float(event[2]), event[0], event[1], typed(event), weighed(event))
                 for user, events in histories.items() for event in events],
            )
            db.executemany(
                "INSERT INTO profiles (user_id, profile) VALUES (?, ?) "
                "ON CONFLICT(user_id) DO UPDATE SET profile = excluded.profile",
                [(u, json.dumps(dict(p), sort_keys=True)) for u, p in profiles.items()],
            )
            # Only the users replaced: a bulk load leaves everyone else's cache entries be.
            self._bump_users(db, {*histories, *profiles})

    def put_items(self, categories: Mapping[str, str]) -> None:
        with self._write() as db:
            self._upsert_items(db, categories)

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        users = conn.execute(
            "SELECT COUNT(*) FROM (SELECT user_id FROM behaviors UNION SELECT user_id FROM "
            "profiles)"
        ).fetchone()[0]
        behaviors = conn.execute("SELECT COUNT(*) FROM behaviors").fetchone()[0]
        items = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return {"users": int(users), "behaviors": int(behaviors), "items": int(items)}

    def ping(self) -> None:
        self.check_file()
        self._conn().execute("SELECT 1").fetchone()

    def versions(self, user_id: str) -> Versions:
        # One statement in autocommit mode: one read snapshot, the latest commit of any
        # connection in any process (WAL); fetchall runs it to the end, so no read
        # transaction (and no old snapshot) is left open for the next call.
        [(epoch, items, user)] = self._conn().execute(VERSIONS_SQL, (user_id,)).fetchall()
        return Versions(None if epoch is None else str(epoch), int(items or 0), int(user or 0))

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
