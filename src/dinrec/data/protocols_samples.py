"""Samples as sample builders produce them: raw ids plus history spans into a sorted log.

A builder does not copy each sample's history: it records, per sample, a span
[hist_start, hist_start + hist_len) into `Samples.history`, an EventLog sorted by
(user, timestamp, input row). The dataset writer encodes the history log once and gathers the
spans a row group at a time, so building Amazon-sized data never holds a [N, maxlen] array of
strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dinrec.data.events import EventLog
from dinrec.data.vocabulary import as_str_array

USER_ID = "user_id"
ITEM_ID = "item_id"
CATE_ID = "cate_id"
HIST_ITEM_ID = "hist_item_id"
HIST_CATE_ID = "hist_cate_id"
HIST_LEN = "hist_len"
LABEL = "label"
TIMESTAMP = "timestamp"
# A dense index of the raw user over the whole dataset: groups samples for GAUC even where
# user_id is 1 (a user unseen in training would otherwise merge with all other unknowns).
USER_KEY = "user_key"
RESERVED_COLUMNS = (
    USER_ID, ITEM_ID, CATE_ID, HIST_ITEM_ID, HIST_CATE_ID, HIST_LEN, LABEL, TIMESTAMP, USER_KEY,
)


@dataclass(frozen=True)
class SampleSet:
    """The samples of one split, before encoding.

    Args:
        user: [N] raw user ids (str).
        item: [N] raw candidate item ids (str).
        category: [N] raw candidate category ids (str).
        timestamp: [N] int64 seconds of the sample (the target event's time).
        label: [N] int8 in {0, 1}.
        profile: {column: [N] raw str}, taken from the target event's row.
        hist_start: [N] int64 first row of the history span in Samples.history.
        hist_len: [N] int64 span length, <= maxlen (the most recent events kept).
    """

    user: np.ndarray
    item: np.ndarray
    category: np.ndarray
    timestamp: np.ndarray
    label: np.ndarray
    hist_start: np.ndarray
    hist_len: np.ndarray
    profile: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.user)
        cols = {"item": self.item, "category": self.category, "timestamp": self.timestamp,
                "label": self.label, "hist_start": self.hist_start, "hist_len": self.hist_len,
                **self.profile}
        for name, col in cols.items():
            if len(col) != n:
                raise ValueError(f"SampleSet column {name} has {len(col)} rows, user has {n}")

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray) -> SampleSet:
        """Rows selected by an integer or boolean index."""
        return SampleSet(
            user=self.user[index], item=self.item[index], category=self.category[index],
            timestamp=self.timestamp[index], label=self.label[index],
            hist_start=self.hist_start[index], hist_len=self.hist_len[index],
            profile={k: v[index] for k, v in self.profile.items()},
        )


@dataclass(frozen=True)
class Samples:
    """A protocol's output: train and test samples, their history log, and what to fit on.

    Args:
        protocol: "rating", "next-item" or "click-log".
        options: the protocol's options (JSON-ready), stored in dataset.json.
        maxlen: history length T every sample is padded to.
        train: training samples.
        test: test samples.
        history: EventLog sorted by (user, timestamp, input row); spans index into it.
        fit_values: {feature: raw ids of the training period, one per event}: what the
            vocabularies are fitted on (never test events).
        source: where the log came from.
    """

    protocol: str
    options: dict[str, Any]
    maxlen: int
    train: SampleSet
    test: SampleSet
    history: EventLog
    fit_values: dict[str, np.ndarray]
    source: str = "events"

    @property
    def profile_columns(self) -> list[str]:
        """Profile feature names, in the order of the input log's profile dict."""
        return list(self.train.profile)


def check_maxlen(maxlen: int) -> int:
    """Validate a history length; returns it as int."""
    if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 1:
        raise ValueError(f"maxlen must be a positive int, got {maxlen!r}")
    return int(maxlen)


def check_profile(log: EventLog) -> None:
    """Profile columns become features: their names must not clash with built-in columns."""
    clash = sorted(set(log.profile) & set(RESERVED_COLUMNS))
    if clash:
        raise ValueError(
            f"EventLog from {log.source}: profile columns {clash} clash with dataset columns "
            f"{list(RESERVED_COLUMNS)}; rename them"
        )


def user_codes(*users: np.ndarray) -> list[np.ndarray]:
    """Shared int64 codes for raw users of several logs (ascending raw id order).

    Args:
        users: arrays [N_i] of raw user ids.

    Returns:
        one [N_i] int64 code array per input.
    """
    arrays = [as_str_array(u) for u in users]
    _, inverse = np.unique(np.concatenate(arrays) if arrays else np.zeros(0, str),
                           return_inverse=True)
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    inverse = inverse.reshape(-1).astype(np.int64)
    return [inverse[bounds[i]:bounds[i + 1]] for i in range(len(arrays))]


def sort_by_user_time(log: EventLog, codes: np.ndarray) -> tuple[EventLog, np.ndarray]:
    """Rows ordered by (user code, timestamp, input row); ties keep the input order.

    Args:
        log: the events.
        codes: [N] int64 user codes of the rows (from user_codes).

    Returns:
        (sorted log, [N] sorted codes).
    """
    order = np.lexsort((np.arange(len(log)), log.timestamp, codes))
    return log.take(order), codes[order]


def history_ends(
    hist_codes: np.ndarray, hist_ts: np.ndarray, query_codes: np.ndarray, query_ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the span of history rows of its user with a strictly earlier timestamp.

    One merge of both row sets replaces a per-user loop: at equal (user, timestamp) queries sort
    before history rows, so an event at the query's own second is not "earlier".

    Args:
        hist_codes: [M] user codes of the history log, sorted by (code, timestamp).
        hist_ts: [M] int64 timestamps of the history log.
        query_codes: [N] user codes of the samples.
        query_ts: [N] int64 timestamps of the samples.

    Returns:
        (first [N], end [N]) int64: the user's history rows are [first, end), all of them
        strictly before the query; truncate with recent_window().
    """
    m, n = len(hist_codes), len(query_codes)
    codes = np.concatenate([hist_codes, query_codes])
    ts = np.concatenate([hist_ts, query_ts])
    is_query = np.concatenate([np.zeros(m, np.int8), np.ones(n, np.int8)])
    order = np.lexsort((1 - is_query, ts, codes))  # [M + N], stable: history keeps its order
    in_hist = order < m
    hist_before: np.ndarray = np.cumsum(in_hist) - in_hist  # history rows before each position
    end = np.empty(n, dtype=np.int64)
    end[order[~in_hist] - m] = hist_before[~in_hist]
    first = np.searchsorted(hist_codes, query_codes, side="left").astype(np.int64)
    return first, end


def recent_window(first: np.ndarray, end: np.ndarray, maxlen: int) -> tuple[np.ndarray, np.ndarray]:
    """The most recent `maxlen` rows of each span [first, end), as (start [N], length [N])."""
    start = np.maximum(end - maxlen, first)
    return start, end - start


def covered_rows(m: int, first: np.ndarray, end: np.ndarray) -> np.ndarray:
    """[M] bool: rows inside at least one span [first, end), by a difference array."""
    delta = np.zeros(m + 1, dtype=np.int64)
    np.add.at(delta, first, 1)
    np.add.at(delta, end, -1)
    return np.cumsum(delta[:m]) > 0


def gather_spans(
    values: np.ndarray, start: np.ndarray, length: np.ndarray, maxlen: int
) -> np.ndarray:
    """Spans of `values` as a post-padded matrix (0 after each span).

    Args:
        values: [M] int64 encoded history values.
        start: [N] int64 span starts.
        length: [N] int64 span lengths, each <= maxlen.
        maxlen: T.

    Returns:
        [N, T] int64, row i = values[start[i] : start[i] + length[i]] then zeros.
    """
    steps = np.arange(maxlen, dtype=np.int64)
    index = start[:, None] + steps[None, :]  # [N, T]
    valid = steps[None, :] < length[:, None]  # [N, T]
    if len(values) == 0:
        return np.zeros(index.shape, dtype=np.int64)
    # Clip so padded positions index something; np.where then zeroes them.
    picked = values[np.minimum(index, len(values) - 1)]
    return np.where(valid, picked, 0).astype(np.int64)


def event_values(log: EventLog) -> dict[str, np.ndarray]:
    """{feature: raw ids} of a log's events: user_id, item_id, cate_id and profile columns."""
    return {USER_ID: log.user, ITEM_ID: log.item, CATE_ID: log.category, **log.profile}


def as_str_log(log: EventLog) -> EventLog:
    """The log with its raw id columns as numpy unicode arrays (object or int arrays too)."""
    return EventLog(
        user=as_str_array(log.user), item=as_str_array(log.item),
        category=as_str_array(log.category), timestamp=log.timestamp, rating=log.rating,
        label=log.label, behavior=log.behavior,
        profile={k: as_str_array(v) for k, v in log.profile.items()}, source=log.source,
    )
