"""Store files as older dinrec versions wrote them (upgrade tests; importable as
`tests.unit.serving.store_files`, like tests/integration/cli_process.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# The SQLite store's tables as written before per-user versions existed (for upgrade tests).
PREVIOUS_SQLITE_SCHEMA = """
    CREATE TABLE behaviors (seq INTEGER PRIMARY KEY, user_id TEXT NOT NULL,
        ts REAL NOT NULL, item_id TEXT NOT NULL, category TEXT);
    CREATE INDEX behaviors_by_user ON behaviors (user_id, ts, seq);
    CREATE TABLE profiles (user_id TEXT PRIMARY KEY, profile TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE items (item_id TEXT PRIMARY KEY, category TEXT NOT NULL) WITHOUT ROWID;
"""


def write_previous_schema_store(path: Path, rows_sql: str) -> None:
    """A SQLite store file of the previous schema holding the rows `rows_sql` inserts."""
    conn = sqlite3.connect(path)
    conn.executescript(PREVIOUS_SQLITE_SCHEMA + rows_sql)
    conn.close()
