"""Behavior stores: what the ranking service knows about users and items, by raw id.

A store holds, keyed by RAW ids (never vocabulary-encoded ones, so a store outlives model
versions and vocabularies):

- each user's most recent behaviors (item, category, timestamp), trimmed to what the model
  reads; ordered by timestamp, ties by arrival;
- each user's profile (a JSON object of raw values, e.g. {"gender": "f"});
- each item's category, so a rank request need only name candidate item ids.

Two implementations share the BehaviorStore protocol and one test suite: SQLite (embedded,
the default: WAL, indexed by user) and Redis (shared by several servers).

URLs: sqlite:///relative/path.db, sqlite:////absolute/path.db (SQLAlchemy's convention),
redis://HOST:PORT/DB (optionally ?prefix=KEYPREFIX, default "dinrec:").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

SQLITE_SCHEME = "sqlite:///"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class Behavior:
    """One behavior event, by raw ids.

    Args:
        user_id: raw user id.
        item_id: raw item id.
        category: raw category id of the item, or None when unknown.
        timestamp: seconds (int or float); orders a user's history.
    """

    user_id: str
    item_id: str
    category: str | None
    timestamp: float


@dataclass(frozen=True)
class UserRecord:
    """What a store holds about one user.

    Args:
        known: the store has a profile or at least one behavior for the user.
        profile: raw profile values by feature name.
        history: (item, category) behaviors, oldest first, at most the limit asked for.
    """

    known: bool
    profile: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, str | None]] = field(default_factory=list)


class Versions(NamedTuple):
    """What a rank call reads from the store before anything else, to validate its cache.

    Within one epoch both counters only grow, and every write bumps them in the same
    transaction as its data (or after it), so data read after a Versions is never older
    than it: a cached entry stays exact while the counter it was read under is unchanged.

    Args:
        epoch: the store's identity, set when it is created; a store wiped or replaced gets
            another one (or None until its first write), so counters that restart never
            meet entries cached before.
        items: bumped whenever an item's stored category is added or changed.
        user: the user's own counter, bumped by every write of the user's history or
            profile; 0 for a user never written.
    """

    epoch: str | None
    items: int
    user: int


class BehaviorStore(Protocol):
    """The operations the server and `dinrec store load` need."""

    url: str

    def lookup(
        self, user_id: str, limit: int, items: Sequence[str]
    ) -> tuple[UserRecord, list[str | None]]:
        """(the user's record with its `limit` latest behaviors, each item's category)."""
        ...

    def append(self, events: Sequence[Behavior], keep: int) -> int | None:
        """Add events atomically; then keep only each touched user's `keep` latest ones.
        Events with a category also set their item's category. Returns how many of these
        events that trim removed at once (older than the user's `keep` latest), or None
        when the store cannot tell."""
        ...

    def replace_users(
        self,
        histories: Mapping[str, Sequence[tuple[str, str | None, float]]],
        profiles: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Set these users' whole histories ((item, category, timestamp), oldest first)
        and profiles, replacing what was stored for them."""
        ...

    def put_items(self, categories: Mapping[str, str]) -> None:
        """Set item -> category entries."""
        ...

    def counts(self) -> dict[str, int]:
        """{"users": with a history or profile, "behaviors": ..., "items": ...}."""
        ...

    def ping(self) -> None:
        """Raise if the store cannot be reached."""
        ...

    def versions(self, user_id: str) -> Versions | None:
        """The store's epoch, item generation and the user's version, in one cheap read
        that sees every write committed before it, whoever made it (another thread, server
        process or `dinrec store load`). None: cannot tell (the server caches nothing).
        Optional: a store without this method is never cached."""
        ...

    def close(self) -> None: ...


def open_store(url: str) -> BehaviorStore:
    """A store by URL (see the module docstring); created empty if absent."""
    if url.startswith(SQLITE_SCHEME):
        from dinrec.serving.store_sqlite import SQLiteStore

        path = url[len(SQLITE_SCHEME):]
        if not path:
            raise ValueError(f"store URL {url!r} names no file; e.g. sqlite:///dinrec-store.db")
        return SQLiteStore(path)
    if url.startswith(REDIS_SCHEMES):
        from dinrec.serving.store_redis import RedisStore

        return RedisStore(url)
    raise ValueError(
        f"unknown store URL {url!r}; use sqlite:///PATH (sqlite:////abs/path) or "
        "redis://HOST:PORT/DB"
    )


def redact(url: str) -> str:
    """The URL without a password, for logs and /readyz; a SQLite file by its name only
    (/readyz needs no key, and a client has no use for the server's directories)."""
    if url.startswith(SQLITE_SCHEME):
        name = url[len(SQLITE_SCHEME):].rsplit("/", 1)[-1]
        return f"{SQLITE_SCHEME}{name}" if "/" not in url[len(SQLITE_SCHEME):] else (
            f"{SQLITE_SCHEME}.../{name}")
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in creds else '***'}@{host}"
