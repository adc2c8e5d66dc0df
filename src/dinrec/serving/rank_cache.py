"""What a rank call reads and encodes, cached between calls while what it came from is unchanged.

A rank call for a known user re-reads the same history, profile and candidate categories
from the store and maps them through the same vocabularies every time (~0.5-1 ms of Python
per call for 100 candidates and a 50-behavior history). RankCache keeps, per model:

- per user (bounded LRU): its encoded user-side input arrays (~1 kB at maxlen 50);
- per candidate item (bounded, oldest out first): its stored category and encoded ids.

Validity, per user: every rank call first reads the store's Versions for its user (epoch,
item generation, the user's version; BehaviorStore.versions(), one cheap read BEFORE the
store is read, so data cached under a version is never older than it). A user entry is
stamped with the user's version it was read under and hits only while the store still
reports that version: a write for user V leaves user U's entry alone, while any write for U,
by this process, another one or `dinrec store load`, makes U's next call re-read. Item
entries belong to one item generation, which moves only when a category is added or
changed; a newer one empties them. Another epoch (a store wiped or replaced) empties
everything. A store that cannot tell (None) is never cached. A reload brings a new model and
a new RankCache, since encoded ids depend on the vocabulary.

The cached arrays are shared by concurrent requests: the backends only read their inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dinrec.serving.encoding import Arrays, UserFeatures
from dinrec.serving.stores import Versions

DEFAULT_USERS = 10_000
DEFAULT_ITEMS = 200_000
_NO_EPOCH = object()  # before the first request (None is an epoch: a store never written)


@dataclass(frozen=True)
class CachedUser:
    """One user's encoded inputs, and what a rank response says about the stored user.

    Args:
        known: the store had a profile or a behavior of the user.
        history_length: behaviors the model reads.
        features: the user-side input arrays (history and stored profile, encoded).
        history_lengths: behaviors read per history, for a model with history groups.
        newest: the latest timestamp among the stored behaviors read (None: none): a rank
            call for an earlier time must not use these inputs (service.py).
    """

    known: bool
    history_length: int
    features: UserFeatures
    history_lengths: dict[str, int] | None = None
    newest: float | None = None


@dataclass(frozen=True)
class CachedItem:
    """A candidate's stored category and its encoded ids, one per candidate input."""

    category: str | None
    codes: tuple[int, ...]


class RankCache:
    """Bounded caches of users (LRU, each stamped with its version) and items (oldest first
    out, all of one item generation) for one model; safe to use from several threads.

    Args:
        max_users: users kept (least recently used dropped first); 0 disables user caching.
        max_items: items kept; 0 disables item caching.
    """

    def __init__(self, max_users: int = DEFAULT_USERS, max_items: int = DEFAULT_ITEMS) -> None:
        self.max_users = max_users
        self.max_items = max_items
        self._lock = threading.Lock()
        self._epoch: object = _NO_EPOCH
        self._item_generation = -1
        self._users: OrderedDict[str, tuple[int, CachedUser]] = OrderedDict()
        self._items: OrderedDict[Any, CachedItem] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def begin(self, versions: Versions | None) -> None:
        """Start a request that read `versions` from the store: another epoch drops every
        entry, a newer item generation every item."""
        if versions is None:
            return
        with self._lock:
            if versions.epoch != self._epoch:
                self._users.clear()
                self._items.clear()
                self._epoch = versions.epoch
                self._item_generation = versions.items
            elif versions.items > self._item_generation:
                # Only forward: a request that read an older generation (a write landed
                # between two requests' reads) must not throw out entries that are newer.
                self._items.clear()
                self._item_generation = versions.items

    def user(self, versions: Versions | None, user_id: str) -> CachedUser | None:
        """The cached user, if cached under the user's version in `versions`."""
        if versions is None or self.max_users <= 0:
            return None
        with self._lock:
            if versions.epoch != self._epoch:
                return None
            found = self._users.get(user_id)
            if found is None or found[0] != versions.user:
                self.misses += 1
                return None
            self._users.move_to_end(user_id)
            self.hits += 1
            return found[1]

    def put_user(self, versions: Versions | None, user_id: str, entry: CachedUser) -> None:
        """Cache a user read after `versions` was current (kept unless a read under a newer
        version of the user is cached already)."""
        if versions is None or self.max_users <= 0:
            return
        with self._lock:
            if versions.epoch != self._epoch:
                return
            current = self._users.get(user_id)
            if current is not None and current[0] > versions.user:
                return
            self._users[user_id] = (versions.user, entry)
            self._users.move_to_end(user_id)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def _items_current(self, versions: Versions | None) -> bool:
        return (
            versions is not None and self.max_items > 0 and versions.epoch == self._epoch
            and versions.items == self._item_generation
        )

    def items(
        self, versions: Versions | None, candidates: Sequence[Any]
    ) -> list[CachedItem | None]:
        """Per candidate: its cached entry under the item generation in `versions`, or None."""
        with self._lock:
            if not self._items_current(versions):
                return [None] * len(candidates)
            get = self._items.get
            # Plain lookups: items are evicted oldest-put first, which spares the hot path
            # a move_to_end per candidate; the bound is there for memory, not for hit rate.
            return [get(c) for c in candidates]

    def put_items(
        self, versions: Versions | None, candidates: Sequence[Any], entries: Sequence[CachedItem]
    ) -> None:
        with self._lock:
            if not self._items_current(versions):
                return
            for candidate, entry in zip(candidates, entries, strict=True):
                self._items[candidate] = entry
                self._items.move_to_end(candidate)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._users)


def item_arrays(names: Sequence[str], entries: Sequence[CachedItem]) -> Arrays:
    """Candidate input arrays [C] from cached entries, one array per candidate input."""
    codes = np.array([e.codes for e in entries], dtype=np.int64).reshape(len(entries), len(names))
    return {name: np.ascontiguousarray(codes[:, i]) for i, name in enumerate(names)}
