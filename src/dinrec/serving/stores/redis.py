"""RedisStore: the behavior store shared by several servers.

Keys (PREFIX defaults to "dinrec:"):

    PREFIX h:USER   sorted set: one member per behavior, score = timestamp; the member is
                    "SEQ|[item, category]" (untyped) or "SEQ|[item, category, type]", and
                    "SEQ|[item, category, type or null, weight]" for a weight other than 1.0
                    (members without one weigh 1.0), with SEQ a zero-padded arrival number,
                    so equal timestamps keep arrival order and identical events stay distinct
    PREFIX p:USER   string: the profile as JSON
    PREFIX items    hash: item -> category
    PREFIX seq      counter handing out SEQ
    PREFIX v:USER   counter: the user's version, INCR'd with every write of h:USER or p:USER
    PREFIX igen     counter: the item generation, INCR'd when an item's category is added or
                    changed (not when an event repeats a known one)
    PREFIX epoch    random token, SET NX by every write: after a wipe the counters restart,
                    under a new epoch, so they never meet entries cached before

versions() is one MGET of epoch, igen and v:USER. Every write bumps what it changes in the
same MULTI/EXEC as its data, so data read after a version is never older than it.

A rank lookup is one round trip (a pipeline of ZRANGE, GET, HMGET; a model with history
groups reads the user's whole set, which the trim bounds, and splits it by type); an append
is one
MULTI/EXEC transaction, so a reader sees all of it or none of it; replace_users writes each
user in one MULTI/EXEC too (in chunks of users).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dinrec.serving.stores.base import (
    Behavior,
    GroupRead,
    StoredBehavior,
    UserRecord,
    Versions,
    typed,
    weighed,
)

DEFAULT_PREFIX = "dinrec:"
SEQ_WIDTH = 16  # hex digits of the arrival number in a member
PIPELINE_CHUNK = 2000
# KEYS: items hash, igen; ARGV: item, category, item, category, ...  Sets the categories and
# bumps igen only if one was new or different, atomically (a script runs alone).
SET_CATEGORIES = """
local changed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed = changed + 1
  end
end
if changed > 0 then redis.call('INCR', KEYS[2]) end
return changed
"""

# KEYS: a user's history; ARGV: keep. Keeps the `keep` latest members of each behavior type
# (untyped ones count as one type), in the append's MULTI/EXEC; a set within `keep` costs
# one ZCARD.
TRIM_PER_TYPE = """
local keep = tonumber(ARGV[1])
if redis.call('ZCARD', KEYS[1]) <= keep then return 0 end
local counts = {}
local removed = 0
for _, m in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, -1)) do
  local fields = cjson.decode(string.sub(m, string.find(m, '|', 1, true) + 1))
  local kind = fields[3]
  if kind == nil or kind == cjson.null then kind = 'u' else kind = 't' .. kind end
  counts[kind] = (counts[kind] or 0) + 1
  if counts[kind] > keep then
    redis.call('ZREM', KEYS[1], m)
    removed = removed + 1
  end
end
return removed
"""


def _split_prefix(url: str) -> tuple[str, str]:
    """(url without ?prefix=, the prefix)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


class RedisStore:
    """A BehaviorStore in Redis.

    Args:
        url: redis://HOST:PORT/DB, optionally with ?prefix=KEYPREFIX.
        timeout_s: socket connect / read timeout.
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        import redis

        self.url = url
        plain, self.prefix = _split_prefix(url)
        # The client's pool is thread-safe; responses decoded to str.
        self.client = redis.Redis.from_url(
            plain, decode_responses=True, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )

    def _history_key(self, user: str) -> str:
        return f"{self.prefix}h:{user}"

    def _profile_key(self, user: str) -> str:
        return f"{self.prefix}p:{user}"

    @property
    def _items_key(self) -> str:
        return f"{self.prefix}items"

    def _version_key(self, user: str) -> str:
        return f"{self.prefix}v:{user}"

    @property
    def _item_generation_key(self) -> str:
        return f"{self.prefix}igen"

    @property
    def _epoch_key(self) -> str:
        return f"{self.prefix}epoch"

    def _begin_write(self, pipe: Any) -> None:
        """Queue what every write transaction starts with: the epoch, if the store has none."""
        pipe.set(self._epoch_key, secrets.token_hex(8), nx=True)

    def _set_categories(self, pipe: Any, categories: Mapping[str, str]) -> None:
        if categories:
            flat = [v for pair in categories.items() for v in pair]
            pipe.eval(SET_CATEGORIES, 2, self._items_key, self._item_generation_key, *flat)

    def _member(
        self, seq: int, item: str, category: str | None, kind: str | None = None,
        weight: float = 1.0,
    ) -> str:
        # The shortest form that holds it: members of weight 1.0 are as before weights.
        fields: list[Any] = [item, category]
        if kind is not None or weight != 1.0:
            fields.append(kind)
        if weight != 1.0:
            fields.append(float(weight))
        return f"{seq:0{SEQ_WIDTH}x}|" + json.dumps(fields, ensure_ascii=False)

    @staticmethod
    def _fields(member: str) -> tuple[str, str | None, str | None, float]:
        """(item, category, behavior type, weight) of a member; members written before
        types or weights were stored hold two or three fields (untyped; weight 1.0)."""
        fields = json.loads(member.split("|", 1)[1])
        category, kind = fields[1], fields[2] if len(fields) > 2 else None
        return (str(fields[0]), None if category is None else str(category),
                None if kind is None else str(kind),
                float(fields[3]) if len(fields) > 3 else 1.0)

    def lookup(
        self, user_id: str, limit: int, items: Sequence[str], groups: Sequence[GroupRead] = ()
    ) -> tuple[UserRecord, list[str | None]]:
        pipe = self.client.pipeline(transaction=False)
        key = self._history_key(user_id)
        if limit > 0:
            pipe.zrange(key, -limit, -1, withscores=True)
        else:
            pipe.exists(key)
        pipe.get(self._profile_key(user_id))
        if items:
            pipe.hmget(self._items_key, list(items))
        if groups:
            pipe.zrange(key, 0, -1, withscores=True)
        results = pipe.execute()
        members, profile_json = results[0], results[1]
        categories: list[str | None] = list(results[2]) if items else []
        history = self._behaviors(members) if limit > 0 else []
        per_group = self._split(results[-1], groups) if groups else ()
        known = bool(members) or any(per_group) or profile_json is not None
        profile = json.loads(profile_json) if profile_json is not None else {}
        return UserRecord(known, profile, history, per_group), categories

    def _split(
        self, scored: list[tuple[str, float]], groups: Sequence[GroupRead]
    ) -> tuple[list[StoredBehavior], ...]:
        """Each group's latest behaviors of its types, oldest first, from the whole set."""
        decoded = [(self._fields(m), float(ts)) for m, ts in scored]  # oldest first
        out = []
        for read in groups:
            wanted = set(read.types)
            mine = [(item, cat, ts, weight)
                    for (item, cat, kind, weight), ts in decoded if kind in wanted]
            out.append(mine[max(len(mine) - read.limit, 0):] if read.limit > 0 else [])
        return tuple(out)

    def _behaviors(self, scored: list[tuple[str, float]]) -> list[StoredBehavior]:
        """(member, timestamp) pairs, oldest first, as StoredBehaviors."""
        out = []
        for member, ts in scored:
            item, category, _, weight = self._fields(member)
            out.append((item, category, float(ts), weight))
        return out

    def _next_seqs(self, n: int) -> int:
        """The first of n fresh arrival numbers."""
        last = int(self.client.incrby(f"{self.prefix}seq", n))
        return last - n + 1

    def append(self, events: Sequence[Behavior], keep: int) -> int:
        if not events:
            return 0
        seq = self._next_seqs(len(events))
        pipe = self.client.pipeline(transaction=True)
        self._begin_write(pipe)
        members = []
        for i, event in enumerate(events):
            member = self._member(seq + i, event.item_id, event.category, event.behavior,
                                  event.weight)
            members.append((self._history_key(event.user_id), member))
            pipe.zadd(self._history_key(event.user_id), {member: float(event.timestamp)})
        for user in sorted({e.user_id for e in events}):
            # Keep the `keep` latest members of each type.
            pipe.eval(TRIM_PER_TYPE, 1, self._history_key(user), max(keep, 1))
            pipe.incr(self._version_key(user))  # in the same transaction as the data
        self._set_categories(
            pipe, {e.item_id: e.category for e in events if e.category is not None}
        )
        for key, member in members:  # last: which of the new members the trim removed
            pipe.zscore(key, member)
        scores = pipe.execute()[-len(members):]
        return sum(1 for score in scores if score is None)

    def replace_users(
        self,
        histories: Mapping[str, Sequence[tuple[Any, ...]]],
        profiles: Mapping[str, Mapping[str, Any]],
    ) -> None:
        total = sum(len(h) for h in histories.values())
        seq = self._next_seqs(total) if total else 0
        pipe = self.client.pipeline(transaction=True)
        queued = 0
        # Chunks of whole users, each one MULTI/EXEC: a user's data and the bump of its
        # version land together, so a reader never caches half a user under a new version.
        for user in dict.fromkeys([*histories, *profiles]):
            if not queued:
                self._begin_write(pipe)
            if user in histories:
                key = self._history_key(user)
                pipe.delete(key)
                members = {}
                for event in histories[user]:
                    member = self._member(seq, event[0], event[1], typed(event), weighed(event))
                    members[member] = float(event[2])
                    seq += 1
                if members:
                    pipe.zadd(key, members)
                queued += 2
            if user in profiles:
                pipe.set(self._profile_key(user), json.dumps(dict(profiles[user]), sort_keys=True))
                queued += 1
            pipe.incr(self._version_key(user))
            queued += 1
            if queued >= PIPELINE_CHUNK:
                pipe.execute()
                queued = 0
        if queued:
            pipe.execute()

    def put_items(self, categories: Mapping[str, str]) -> None:
        entries = list(categories.items())
        for lo in range(0, len(entries), PIPELINE_CHUNK * 10):
            pipe = self.client.pipeline(transaction=True)
            self._begin_write(pipe)
            self._set_categories(pipe, dict(entries[lo : lo + PIPELINE_CHUNK * 10]))
            pipe.execute()

    def counts(self) -> dict[str, int]:
        users: set[str] = set()
        behaviors = 0
        for key in self.client.scan_iter(match=f"{self.prefix}h:*", count=1000):
            users.add(key[len(self.prefix) + 2 :])
            behaviors += int(self.client.zcard(key))
        for key in self.client.scan_iter(match=f"{self.prefix}p:*", count=1000):
            users.add(key[len(self.prefix) + 2 :])
        items = int(self.client.hlen(self._items_key))
        return {"users": len(users), "behaviors": behaviors, "items": items}

    def ping(self) -> None:
        self.client.ping()

    def versions(self, user_id: str) -> Versions:
        # One MGET: atomic, so the three values belong to one moment of the store.
        epoch, items, user = self.client.mget(
            [self._epoch_key, self._item_generation_key, self._version_key(user_id)]
        )
        return Versions(None if epoch is None else str(epoch), int(items or 0), int(user or 0))

    def close(self) -> None:
        self.client.close()
