"""Behavior groups: one history per behavior type set, built from a typed log (e.g. Taobao).

Taobao UserBehavior marks each event pv / cart / fav / buy. DIN's history_groups attends to
each group separately; this builds their inputs for given samples: per group, the user's
events of the group's types with a strictly earlier timestamp than the sample (as every
protocol's history: an event at the sample's own second never leaks in), the most recent
`maxlen` kept, oldest first, 0-padded at the end, plus the time since each behavior.

Names follow DIN's convention (dinrec.history_groups): group "" gives `hist_item_id`,
`hist_cate_id`, `hist_len`, `hist_time_gap`; group "buy" gives `buy_hist_item_id`, ...

BehaviorGroups sorts and encodes each group's events once; `histories` then answers any
slice of samples, so the dataset writer builds the groups a row group at a time and never
holds an [N, maxlen] matrix of a whole split.

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
from dataclasses import dataclass

import numpy as np

from dinrec.data.events import EventLog
from dinrec.data.protocols.history import (
    as_str_log,
    gather_spans,
    history_ends,
    recent_window,
)
from dinrec.data.protocols.samples import CATE_ID, ITEM_ID, check_maxlen
from dinrec.data.vocabulary import as_str_array

# Time since a behavior enters the model as log1p(hours): days-old and minutes-old behaviors
# then differ by a few units, a scale an activation unit's first layer takes as it comes.
SECONDS_PER_UNIT = 3600.0
TIME_GAP = "time_gap"


def group_prefix(group: str) -> str:
    """Input-name prefix of a group: "hist_" for "" (DeepCTR's), else "<group>_hist_"."""
    return f"{group}_hist_" if group else "hist_"


def time_gaps(timestamps: np.ndarray, when: np.ndarray, length: np.ndarray) -> np.ndarray:
    """log1p(hours from each behavior to its sample), 0 at padding.

    Args:
        timestamps: [N] int64 seconds of the samples.
        when: [N, T] int64 seconds of the behaviors (anything at padding).
        length: [N] behaviors per row.

    Returns:
        [N, T] float32.
    """
    hours = np.maximum(timestamps[:, None] - when, 0) / SECONDS_PER_UNIT  # [N, T]
    valid = np.arange(when.shape[1])[None, :] < length[:, None]  # [N, T]
    return np.where(valid, np.log1p(hours), 0.0).astype(np.float32)


@dataclass(frozen=True)
class _GroupLog:
    """One group's events sorted by (user code, time), ids already encoded."""

    codes: np.ndarray  # [M] int64 user codes (BehaviorGroups.users order)
    timestamp: np.ndarray  # [M] int64
    item: np.ndarray  # [M] int64 encoded
    category: np.ndarray  # [M] int64 encoded
    maxlen: int


class BehaviorGroups:
    """Each group's events of a typed log, sorted and encoded once; histories on demand.

    Args:
        log: the behavior log, with `behavior` (types per event).
        groups: group name ("" for DeepCTR's hist_*) -> the behavior types it holds,
            e.g. {"": ["pv"], "buy": ["buy"]}.
        encode: (feature, raw ids [M]) -> int64 ids [M], e.g. Vocabularies.encode with
            feature "item_id" or "cate_id".
        maxlen: T per group (one int for all, or {group: T}).

    Raises:
        ValueError naming a group that is empty or names a type absent from the log.
    """

    def __init__(
        self,
        log: EventLog,
        groups: Mapping[str, Sequence[str]],
        *,
        encode: Callable[[str, np.ndarray], np.ndarray],
        maxlen: int | Mapping[str, int] = 50,
    ) -> None:
        if log.behavior is None:
            raise ValueError(f"behavior groups: EventLog from {log.source} has no behavior "
                             "column")
        log = as_str_log(log)
        behavior = as_str_array(log.behavior)
        known = set(np.unique(behavior).tolist())
        # Sorted distinct users: a sample's user code is its position (searchsorted).
        self.users = np.unique(log.user)
        codes = np.searchsorted(self.users, log.user).astype(np.int64)  # [M]
        self._groups: dict[str, _GroupLog] = {}
        self.types = {group: list(types) for group, types in groups.items()}
        for group, types in groups.items():
            missing = [t for t in types if t not in known]
            if not types or missing:
                raise ValueError(f"behavior group {group!r}: types {list(types)} "
                                 f"(not in the log: {missing}); the log has {sorted(known)}")
            t = check_maxlen(maxlen[group] if isinstance(maxlen, Mapping) else maxlen)
            rows = np.flatnonzero(np.isin(behavior, np.asarray(list(types))))
            # Ties keep the input order, as sort_by_user_time does for every protocol.
            rows = rows[np.lexsort((rows, log.timestamp[rows], codes[rows]))]
            self._groups[group] = _GroupLog(
                codes=codes[rows], timestamp=log.timestamp[rows],
                item=encode(ITEM_ID, log.item[rows]), category=encode(CATE_ID, log.category[rows]),
                maxlen=t)

    @property
    def names(self) -> list[str]:
        return list(self._groups)

    def maxlen(self, group: str) -> int:
        return self._groups[group].maxlen

    def histories(
        self, users: np.ndarray, timestamps: np.ndarray, time_gap: bool = True
    ) -> dict[str, np.ndarray]:
        """Each group's history of the samples (users [N], timestamps [N]) as model inputs.

        Returns:
            {prefix + "item_id" / "cate_id": [N, T] int64, prefix + "len": [N] int64,
             and with time_gap prefix + "time_gap": [N, T] float32 log1p(hours before the
             sample), 0 at padding}.
        """
        users = as_str_array(np.asarray(users))
        timestamps = np.asarray(timestamps, dtype=np.int64)
        if users.shape != timestamps.shape or users.ndim != 1:
            raise ValueError(f"users {users.shape} and timestamps {timestamps.shape} must be "
                             "matching [N] arrays")
        at = np.searchsorted(self.users, users)
        found = at < len(self.users)
        found[found] = self.users[at[found]] == users[found]
        # A user with no behavior gets a code no event has: an empty span.
        sample_codes = np.where(found, at, len(self.users)).astype(np.int64)  # [N]
        out: dict[str, np.ndarray] = {}
        for group, part in self._groups.items():
            first, end = history_ends(part.codes, part.timestamp, sample_codes, timestamps)
            start, length = recent_window(first, end, part.maxlen)
            prefix = group_prefix(group)
            out[prefix + ITEM_ID] = gather_spans(part.item, start, length, part.maxlen)
            out[prefix + CATE_ID] = gather_spans(part.category, start, length, part.maxlen)
            out[prefix + "len"] = length
            if time_gap:
                when = gather_spans(part.timestamp, start, length, part.maxlen)  # [N, T] s
                out[prefix + TIME_GAP] = time_gaps(timestamps, when, length)
        return out


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

    BehaviorGroups(log, groups, encode=encode, maxlen=maxlen).histories(users, timestamps):
    see BehaviorGroups for the arguments and histories() for what it returns.
    """
    return BehaviorGroups(log, groups, encode=encode, maxlen=maxlen).histories(users, timestamps)
