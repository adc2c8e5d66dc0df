"""Behavior stores: what the ranking service knows about users and items, by raw id.

A store holds, keyed by RAW ids (never vocabulary-encoded ones, so a store outlives model
versions and vocabularies):

- each user's most recent behaviors (item, category, timestamp, behavior type, weight), trimmed to
  what the model reads per type; ordered by timestamp, ties by arrival;
- each user's profile (a JSON object of raw values, e.g. {"gender": "f"});
- each item's category, so a rank request need only name candidate item ids.

Two implementations share the BehaviorStore protocol and one test suite: SQLite (embedded,
the default: WAL, indexed by user) and Redis (shared by several servers).

URLs: sqlite:///relative/path.db, sqlite:////absolute/path.db (SQLAlchemy's convention),
redis://HOST:PORT/DB (optionally ?prefix=KEYPREFIX, default "dinrec:").
"""

from dinrec.serving.stores.base import (
    REDIS_SCHEMES,
    SQLITE_SCHEME,
    Behavior,
    BehaviorStore,
    GroupRead,
    StoredBehavior,
    UserRecord,
    Versions,
)
from dinrec.serving.stores.urls import open_store, redact

__all__ = ["REDIS_SCHEMES", "SQLITE_SCHEME", "Behavior", "BehaviorStore", "GroupRead",
           "StoredBehavior", "UserRecord", "Versions", "open_store", "redact"]
