"""What the behavior store holds, checked against the model served.

The store keeps raw ids and outlives models, so what it holds need not suit the model now
served: a model without a vocabulary takes encoded integers within its tables, and an event
appended for another model (or written by another tool) may hold an id this one refuses.
Such a value must never fail a rank call: the caller cannot fix what is stored. So

- events are checked when they arrive (a 422 naming the event's field), and
- at rank time a stored behavior, a stored candidate category or a stored profile value
  the model cannot take is left out (the behavior skipped, the category unknown, the
  profile value defaulted) and counted in dinrec_store_values_skipped_total, never an
  error. So is a behavior whose stored weight is not a finite float32, for a weighted
  history.

With vocabularies (or hashed ids) every raw id encodes, and all of this costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dinrec.serving.behavior_feeds import BehaviorFeeds
from dinrec.serving.encoding import FLOAT32_MAX, FeatureEncoder, IdCodec, RequestError
from dinrec.serving.http.schemas import Event
from dinrec.serving.stores.base import BehaviorStore, GroupRead, UserRecord

# A rank call reads at most this many times maxlen stored behaviors to fill the places of
# skipped ones: a user whose store holds mostly values the model cannot take costs a bound.
BACKFILL_WINDOW = 8


def _codecs(encoder: FeatureEncoder, position: int) -> list[IdCodec]:
    """The codecs a stored value at `position` (0: item, 1: category) is fed to: as a
    behavior (each history's input it feeds) and as a candidate's (candidate input)."""
    names = [col.name for group in encoder.groups
             for col, slot in zip(group.columns, encoder.slots[group.name], strict=True)
             if slot == position]
    if len(encoder.candidates) > position:
        names.append(encoder.candidates[position])
    return [encoder.codecs[name] for name in dict.fromkeys(names)]


def check_events(encoder: FeatureEncoder, events: Sequence[Event]) -> None:
    """Raise RequestError naming the first event field the model cannot take."""
    for position, attribute in ((0, "item_id"), (1, "category")):
        for codec in _codecs(encoder, position):
            if codec.takes_any_id:
                continue
            for i, event in enumerate(events):
                value = getattr(event, attribute)
                if value is not None:  # raises naming the field when the codec refuses it
                    codec.encode([value], f"events[{i}].{attribute}", indexed=False)


def usable_history(
    encoder: FeatureEncoder, history: Sequence[tuple[Any, ...]], limit: int | None = None,
    group: str = "", before: float | None = None,
) -> tuple[list[tuple[Any, ...]], int]:
    """(the latest `limit` (default: all) stored behaviors the model can take, oldest first;
    how many it could not take among those newer than the oldest one kept, i.e. skipped),
    for one history (`group`, "" for history_feature_list's). With `before` (a rank call's
    own timestamp) only behaviors strictly earlier count, as the data pipeline builds a
    sample's history; later ones are not skipped, they had not happened yet."""
    if before is not None:
        history = [b for b in history if not _at_or_after(b, before)]
    found = [g for g in encoder.groups if g.name == group]
    columns = found[0].columns if found else ()
    checks: list[tuple[int, Callable[[Any], bool]]] = [
        (position, codec.accepts)
        for col, position in zip(columns, encoder.slots.get(group, ()), strict=True)
        if not (codec := encoder.codecs[col.name]).takes_any_id
    ]
    if group in encoder.history_weights:  # the weight of a StoredBehavior
        checks.append((3, _finite_weight))
    if not checks:
        every = list(history)
        return (every if limit is None else every[max(len(every) - limit, 0):]), 0
    kept: list[tuple[Any, ...]] = []
    skipped = 0
    for behavior in reversed(history):  # newest first
        if limit is not None and len(kept) >= limit:
            break
        if all(len(behavior) <= position or behavior[position] is None
               or accepts(behavior[position]) for position, accepts in checks):
            kept.append(behavior)
        else:
            skipped += 1
    return kept[::-1], skipped


def _finite_weight(weight: Any) -> bool:
    """A stored weight a float32 input takes (events are checked so; other writers may not
    be)."""
    return (isinstance(weight, (int, float)) and not isinstance(weight, bool)
            and math.isfinite(weight) and abs(weight) <= FLOAT32_MAX)


def usable_categories(
    encoder: FeatureEncoder, categories: Sequence[str | None]
) -> tuple[list[str | None], int]:
    """(stored candidate categories, None where the model cannot take one; how many)."""
    if len(encoder.candidates) < 2:
        return list(categories), 0
    codec = encoder.codecs[encoder.candidates[1]]
    if codec.takes_any_id:
        return list(categories), 0
    out = [c if c is None or codec.accepts(c) else None for c in categories]
    return out, sum(1 for a, b in zip(out, categories, strict=True) if a != b)


def usable_profile(
    encoder: FeatureEncoder, profile: Mapping[str, Any]
) -> tuple[dict[str, Any], int]:
    """(the stored profile values the model can take; how many were left out)."""
    kept: dict[str, Any] = {}
    for name, value in profile.items():
        codec = encoder.codecs.get(name) if name in encoder.profile_sparse else None
        if not (codec is not None and codec.takes_any_id and isinstance(value, (str, int))
                and not isinstance(value, bool)):
            try:  # the encoder's own checks, on this one value (user id 0 is always valid)
                encoder.user(0, {name: value}, [])
            except RequestError:
                continue
        kept[name] = value
    return kept, len(profile) - len(kept)


def _at_or_after(behavior: tuple[Any, ...], before: float) -> bool:
    """Whether a stored (item, category, timestamp, ...) is at or after `before`."""
    return len(behavior) > 2 and behavior[2] is not None and float(behavior[2]) >= before


def newest_timestamp(behaviors: Sequence[tuple[Any, ...]]) -> float | None:
    """The latest timestamp among stored behaviors (None: none has one)."""
    times = [float(b[2]) for b in behaviors if len(b) > 2 and b[2] is not None]
    return max(times) if times else None


def backfilled_history(
    store: BehaviorStore, encoder: FeatureEncoder, user_id: str,
    history: Sequence[tuple[Any, ...]], maxlen: int, before: float | None = None,
) -> tuple[list[tuple[Any, ...]], int]:
    """(the latest `maxlen` stored behaviors the model can take, oldest first; how many
    were skipped): a skipped one's place is filled from older stored behaviors, read in
    windows of 2x, 4x, ... maxlen up to BACKFILL_WINDOW x maxlen, when the store keeps more
    than maxlen (by default `append` keeps history_keep = maxlen)."""
    limit = maxlen
    while True:
        usable, skipped = usable_history(encoder, history, maxlen, before=before)
        if len(usable) >= maxlen or len(history) < limit or limit >= BACKFILL_WINDOW * maxlen:
            return usable, skipped
        limit *= 2
        history = store.lookup(user_id, limit, [])[0].history


def usable_groups(
    store: BehaviorStore, encoder: FeatureEncoder, feeds: BehaviorFeeds, user_id: str,
    record: UserRecord, before: float | None = None,
) -> tuple[dict[str, list[tuple[Any, ...]]], int]:
    """({history name: its latest maxlen stored behaviors the model can take, oldest first},
    how many were skipped) for a model with history groups, from record.groups (read with
    feeds.reads()): as backfilled_history, per history, each read again with a longer window
    only when skipped ones left it short."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    total = 0
    for feed, behaviors in zip(feeds.feeds, record.groups, strict=True):
        name, maxlen = feed.group.name, feed.group.maxlen
        factor = 1
        while True:
            usable, skipped = usable_history(encoder, behaviors, maxlen, name, before)
            if (len(usable) >= maxlen or len(behaviors) < factor * maxlen
                    or factor >= BACKFILL_WINDOW):
                break
            factor *= 2
            read = GroupRead(feed.types, factor * maxlen)
            behaviors = store.lookup(user_id, 0, [], (read,))[0].groups[0]
        out[name] = usable
        total += skipped
    return out, total
