"""RedisStore: the behavior store shared by several servers.

Keys (PREFIX defaults to "dinrec:"):

    PREFIX h:USER   sorted set: one member per behavior, score = timestamp; the member is
                    "SEQ|[item, category]" with SEQ a zero-padded arrival number, so equal
                    timestamps keep arrival order and identical events stay distinct
    PREFIX p:USER   string: the profile as JSON
    PREFIX items    hash: item -> category
    PREFIX seq      counter handing out SEQ
    PREFIX gen      counter bumped by every write (generation(): cached reads stay valid
                    while it is unchanged); a writer bumps it after its data is in

A rank lookup is one round trip (a pipeline of ZRANGE, GET, HMGET); an append is one
MULTI/EXEC transaction, so a reader sees all of it or none of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dinrec.serving.stores import Behavior, UserRecord

DEFAULT_PREFIX = "dinrec:"
SEQ_WIDTH = 16  # hex digits of the arrival number in a member
PIPELINE_CHUNK = 2000


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

    @property
    def _generation_key(self) -> str:
        return f"{self.prefix}gen"

    def _member(self, seq: int, item: str, category: str | None) -> str:
        return f"{seq:0{SEQ_WIDTH}x}|" + json.dumps([item, category], ensure_ascii=False)

    @staticmethod
    def _behavior(member: str) -> tuple[str, str | None]:
        item, category = json.loads(member.split("|", 1)[1])
        return str(item), None if category is None else str(category)

    def lookup(
        self, user_id: str, limit: int, items: Sequence[str]
    ) -> tuple[UserRecord, list[str | None]]:
        pipe = self.client.pipeline(transaction=False)
        if limit > 0:
            pipe.zrange(self._history_key(user_id), -limit, -1)
        else:
            pipe.exists(self._history_key(user_id))
        pipe.get(self._profile_key(user_id))
        if items:
            pipe.hmget(self._items_key, list(items))
        results = pipe.execute()
        members, profile_json = results[0], results[1]
        categories: list[str | None] = list(results[2]) if items else []
        history = [self._behavior(m) for m in members] if limit > 0 else []
        known = bool(members) or profile_json is not None
        profile = json.loads(profile_json) if profile_json is not None else {}
        return UserRecord(known, profile, history), categories

    def _next_seqs(self, n: int) -> int:
        """The first of n fresh arrival numbers."""
        last = int(self.client.incrby(f"{self.prefix}seq", n))
        return last - n + 1

    def append(self, events: Sequence[Behavior], keep: int) -> None:
        if not events:
            return
        seq = self._next_seqs(len(events))
        pipe = self.client.pipeline(transaction=True)
        for i, event in enumerate(events):
            member = self._member(seq + i, event.item_id, event.category)
            pipe.zadd(self._history_key(event.user_id), {member: float(event.timestamp)})
        for user in sorted({e.user_id for e in events}):
            # Keep the `keep` highest-ranked (latest) members.
            pipe.zremrangebyrank(self._history_key(user), 0, -(max(keep, 1) + 1))
        cats: dict[Any, Any] = {e.item_id: e.category for e in events if e.category is not None}
        if cats:
            pipe.hset(self._items_key, mapping=cats)
        pipe.incr(self._generation_key)  # in the same transaction as the data
        pipe.execute()

    def replace_users(
        self,
        histories: Mapping[str, Sequence[tuple[str, str | None, float]]],
        profiles: Mapping[str, Mapping[str, Any]],
    ) -> None:
        total = sum(len(h) for h in histories.values())
        seq = self._next_seqs(total) if total else 0
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        for user, events in histories.items():
            key = self._history_key(user)
            pipe.delete(key)
            if events:
                members = {}
                for item, category, ts in events:
                    members[self._member(seq, item, category)] = float(ts)
                    seq += 1
                pipe.zadd(key, members)
            queued += 1
            if queued >= PIPELINE_CHUNK:
                pipe.execute()
                queued = 0
        for user, profile in profiles.items():
            pipe.set(self._profile_key(user), json.dumps(dict(profile), sort_keys=True))
            queued += 1
            if queued >= PIPELINE_CHUNK:
                pipe.execute()
                queued = 0
        pipe.execute()
        self.client.incr(self._generation_key)  # after every chunk is in

    def put_items(self, categories: Mapping[str, str]) -> None:
        entries = list(categories.items())
        for lo in range(0, len(entries), PIPELINE_CHUNK * 10):
            self.client.hset(self._items_key, mapping=dict(entries[lo : lo + PIPELINE_CHUNK * 10]))
        self.client.incr(self._generation_key)

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

    def generation(self) -> int:
        return int(self.client.get(self._generation_key) or 0)

    def close(self) -> None:
        self.client.close()
