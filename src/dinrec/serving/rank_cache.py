"""What a rank call reads and encodes, cached between calls while the store is unchanged.

A rank call for a known user re-reads the same history, profile and candidate categories
from the store and maps them through the same vocabularies every time (~0.5-1 ms of Python
per call for 100 candidates and a 50-behavior history). RankCache keeps, per model:

- per user (bounded LRU): its encoded user-side input arrays (~1 kB at maxlen 50);
- per candidate item (bounded, oldest out first): its stored category and encoded ids.

Validity: every entry belongs to one store generation (BehaviorStore.generation(), read
BEFORE the store is read, so data cached under a generation is never older than it). A
request whose generation differs from the cache's empties it: any write to the store, by
this process or another one, invalidates everything, and the next call re-reads. A store
that cannot tell its generation (None) is never cached. A reload brings a new model and a new
RankCache, since encoded ids depend on the vocabulary.

The cached arrays are shared by concurrent requests: the backends only read their inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dinrec.serving.encoding import Arrays, UserFeatures

DEFAULT_USERS = 10_000
DEFAULT_ITEMS = 200_000


@dataclass(frozen=True)
class CachedUser:
    """One user's encoded inputs, and what a rank response says about the stored user.

    Args:
        known: the store had a profile or a behavior of the user.
        history_length: behaviors the model reads.
        features: the user-side input arrays (history and stored profile, encoded).
    """

    known: bool
    history_length: int
    features: UserFeatures


@dataclass(frozen=True)
class CachedItem:
    """A candidate's stored category and its encoded ids, one per candidate input."""

    category: str | None
    codes: tuple[int, ...]


class RankCache:
    """Bounded caches of users (LRU) and items (oldest first out) for one model, stamped with
    a store generation; safe to use from several threads.

    Args:
        max_users: users kept (least recently used dropped first); 0 disables user caching.
        max_items: items kept; 0 disables item caching.
    """

    def __init__(self, max_users: int = DEFAULT_USERS, max_items: int = DEFAULT_ITEMS) -> None:
        self.max_users = max_users
        self.max_items = max_items
        self._lock = threading.Lock()
        self._generation: Hashable = None
        self._users: OrderedDict[str, CachedUser] = OrderedDict()
        self._items: OrderedDict[Any, CachedItem] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def begin(self, generation: Hashable) -> None:
        """Start a request that read `generation` from the store: a different generation
        than the cached one drops every entry."""
        if generation is None:
            return
        with self._lock:
            if generation != self._generation:
                self._users.clear()
                self._items.clear()
                self._generation = generation

    def user(self, generation: Hashable, user_id: str) -> CachedUser | None:
        """The cached user, if cached under `generation`."""
        if generation is None or self.max_users <= 0:
            return None
        with self._lock:
            if generation != self._generation:
                return None
            entry = self._users.get(user_id)
            if entry is None:
                self.misses += 1
                return None
            self._users.move_to_end(user_id)
            self.hits += 1
            return entry

    def put_user(self, generation: Hashable, user_id: str, entry: CachedUser) -> None:
        """Cache a user read under `generation` (ignored if the store moved on since)."""
        if generation is None or self.max_users <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            self._users[user_id] = entry
            self._users.move_to_end(user_id)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def items(
        self, generation: Hashable, candidates: Sequence[Any]
    ) -> list[CachedItem | None]:
        """Per candidate: its cached entry under `generation`, or None."""
        if generation is None or self.max_items <= 0:
            return [None] * len(candidates)
        with self._lock:
            if generation != self._generation:
                return [None] * len(candidates)
            get = self._items.get
            # Plain lookups: items are evicted oldest-put first, which spares the hot path
            # a move_to_end per candidate; the bound is there for memory, not for hit rate.
            return [get(c) for c in candidates]

    def put_items(
        self, generation: Hashable, candidates: Sequence[Any], entries: Sequence[CachedItem]
    ) -> None:
        if generation is None or self.max_items <= 0:
            return
        with self._lock:
            if generation != self._generation:
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
