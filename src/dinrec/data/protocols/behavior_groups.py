"""Behavior groups: one history per behavior type set, built from a typed log (e.g. Taobao).

Taobao UserBehavior marks each event pv / cart / fav / buy. DIN's history_groups attends to
each group separately; this builds their inputs for given samples: per group, the user's
events of the group's types with a strictly earlier timestamp than the sample (as every
protocol's history: an event at the sample's own second never leaks in), the most recent
`maxlen` kept, oldest first, 0-padded at the end, plus the time since each behavior.

Names follow DIN's convention (dinrec.history_groups): group "" gives `hist_item_id`,
`hist_cate_id`, `hist_len`, `hist_time_gap`; group "buy" gives `buy_hist_item_id`, ...

Example:
    >>> import numpy as np
    >>> from dinrec.data.events import EventLog
    >>> log = EventLog(user=np.array(["u"] * 3), item=np.array(["a", "b", "c"]),
    ...                category=np.array(["x"] * 3), timestamp=np.array([1, 5, 9]),
    ...                behavior=np.array(["pv", "buy", "pv"]))
    >>> out = behavior_histories(np.array(["u"]), np.array([9]), log, {"buy": ["buy"]},
    ...                          encode=lambda _, raw: np.arange(2, 2 + len(raw)), maxlen=2)
    >>> out["buy_hist_item_id"].tolist(), out["buy_hist_len"].tolist()
    ([[2, 0]], [1])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from dinrec.data.events import EventLog
from dinrec.data.protocols.history import (
    as_str_log,
    gather_spans,
    history_ends,
    recent_window,
    sort_by_user_time,
    user_codes,
)
from dinrec.data.protocols.samples import CATE_ID, ITEM_ID, check_maxlen

# Time since a behavior enters the model as log1p(hours): days-old and minutes-old behaviors
# then differ by a few units, a scale an activation unit's first layer takes as it comes.
SECONDS_PER_UNIT = 3600.0


def group_prefix(group: str) -> str:
    """Input-name prefix of a group: "hist_" for "" (DeepCTR's), else "<group>_hist_"."""
    return f"{group}_hist_" if group else "hist_"


def behavior_histories(
    users: np.ndarray,
    timestamps: np.ndarray,
    log: EventLog,
    groups: Mapping[str, Sequence[str]],
    *,
    encode: Callable[[str, np.ndarray], np.ndarray],
    maxlen: int | Mapping[str, int] = 50,
) -> dict[str, np.ndarray]:
    """Each group's history of the samples (users [N], timestamps [N]) as model inputs.

    Args:
        users: [N] raw user ids of the samples.
        timestamps: [N] int64 seconds of the samples (the target event's time).
        log: the behavior log, with `behavior` (types per event).
        groups: group name ("" for DeepCTR's hist_*) -> the behavior types it holds,
            e.g. {"": ["pv"], "buy": ["buy"]}.
        encode: (feature, raw ids [M]) -> int64 ids [M], e.g. Vocabularies.encode with
            feature "item_id" or "cate_id".
        maxlen: T per group (one int for all, or {group: T}).

    Returns:
        {prefix + "item_id" / "cate_id": [N, T] int64, prefix + "len": [N] int64,
         prefix + "time_gap": [N, T] float32 log1p(hours before the sample), 0 at padding}.
    """
    if log.behavior is None:
        raise ValueError(f"behavior groups: EventLog from {log.source} has no behavior column")
    users, timestamps = np.asarray(users), np.asarray(timestamps, dtype=np.int64)
    if users.shape != timestamps.shape or users.ndim != 1:
        raise ValueError(f"users {users.shape} and timestamps {timestamps.shape} must be "
                         "matching [N] arrays")
    log = as_str_log(log)
    assert log.behavior is not None
    known = set(np.unique(log.behavior).tolist())
    out: dict[str, np.ndarray] = {}
    for group, types in groups.items():
        missing = [t for t in types if t not in known]
        if not types or missing:
            raise ValueError(f"behavior group {group!r}: types {list(types)} "
                             f"(not in the log: {missing}); the log has {sorted(known)}")
        t = check_maxlen(maxlen[group] if isinstance(maxlen, Mapping) else maxlen)
        part = log.take(np.isin(log.behavior, np.asarray(list(types))))
        codes, sample_codes = user_codes(part.user, users)
        part, codes = sort_by_user_time(part, codes)
        first, end = history_ends(codes, part.timestamp, sample_codes, timestamps)
        start, length = recent_window(first, end, t)
        prefix = group_prefix(group)
        out[prefix + ITEM_ID] = gather_spans(encode(ITEM_ID, part.item), start, length, t)
        out[prefix + CATE_ID] = gather_spans(encode(CATE_ID, part.category), start, length, t)
        out[prefix + "len"] = length
        when = gather_spans(part.timestamp, start, length, t)  # [N, T] seconds, 0 = padding
        hours = np.maximum(timestamps[:, None] - when, 0) / SECONDS_PER_UNIT
        valid = np.arange(t)[None, :] < length[:, None]
        out[prefix + "time_gap"] = np.where(valid, np.log1p(hours), 0.0).astype(np.float32)
    return out
