"""The behavior store's types: events, user records, versions and the BehaviorStore protocol.

See dinrec.serving.stores for what a store holds and the URLs that open one.
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
        behavior: the behavior's type (e.g. "pv", "buy"), or None: untyped. A model with
            history groups reads each group from the types that feed it.
        weight: the behavior's weight (e.g. dwell time), read by a history with a
            weight_name; 1.0 for events that give none.
    """

    user_id: str
    item_id: str
    category: str | None
    timestamp: float
    behavior: str | None = None
    weight: float = 1.0


# A stored behavior as a read returns it: (item, category, timestamp, weight); behaviors
# stored before weights existed read with weight 1.0.
StoredBehavior = tuple[str, str | None, float, float]


def typed(event: tuple[Any, ...]) -> str | None:
    """The behavior type of a replace_users event: its 4th element, None if absent."""
    kind = event[3] if len(event) > 3 else None
    return None if kind is None else str(kind)


def weighed(event: tuple[Any, ...]) -> float:
    """The weight of a replace_users event: its 5th element, 1.0 if absent (or None)."""
    weight = event[4] if len(event) > 4 else None
    return 1.0 if weight is None else float(weight)


class GroupRead(NamedTuple):
    """One history group's read: the latest `limit` behaviors of these types.

    Args:
        types: behavior types feeding the group; None among them: untyped events.
        limit: most behaviors returned (the group's maxlen, or more to backfill).
    """

    types: tuple[str | None, ...]
    limit: int


@dataclass(frozen=True)
class UserRecord:
    """What a store holds about one user.

    Args:
        known: the store has a profile or at least one behavior for the user.
        profile: raw profile values by feature name.
        history: behaviors of every type (item, category, timestamp, weight), oldest
            first, at most the limit asked for.
        groups: per GroupRead asked for, its behaviors (item, category, timestamp, weight),
            oldest first.
    """

    known: bool
    profile: dict[str, Any] = field(default_factory=dict)
    history: list[StoredBehavior] = field(default_factory=list)
    groups: tuple[list[StoredBehavior], ...] = ()


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
        self, user_id: str, limit: int, items: Sequence[str], groups: Sequence[GroupRead] = ()
    ) -> tuple[UserRecord, list[str | None]]:
        """(the user's record with its `limit` latest behaviors of any type and, per
        GroupRead, the latest of its types; each item's category), from one snapshot."""
        ...

    def append(self, events: Sequence[Behavior], keep: int) -> int | None:
        """Add events atomically; then keep only each touched user's `keep` latest ones of
        each behavior type (untyped ones count as one type), so frequent clicks never push
        a user's rare purchases out. Events with a category also set their item's
        category. Returns how many of these events that trim removed at once (older than
        the user's `keep` latest of their type), or None when the store cannot tell."""
        ...

    def replace_users(
        self,
        histories: Mapping[str, Sequence[tuple[Any, ...]]],
        profiles: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Set these users' whole histories ((item, category, timestamp), optionally then
        the behavior type and then the weight (default 1.0), oldest first) and profiles,
        replacing what was stored for them."""
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
