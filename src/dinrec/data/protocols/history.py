"""History spans, vectorised: users coded, a log sorted by (user, time), each sample's window.

What every protocol does to find a sample's behaviors: the user's events with a strictly
earlier timestamp, the most recent `maxlen` kept, as a span [start, start + len) into the
sorted log (see samples.py).
"""

from __future__ import annotations

import numpy as np

from dinrec.data.events import EventLog
from dinrec.data.protocols.samples import CATE_ID, ITEM_ID, USER_ID, SampleSet
from dinrec.data.vocabulary import as_str_array


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


def sample_set(
    log: EventLog, label: np.ndarray, hist_start: np.ndarray, hist_len: np.ndarray
) -> SampleSet:
    """One sample per row of a sorted log."""
    return SampleSet(
        user=log.user, item=log.item, category=log.category, timestamp=log.timestamp,
        label=label, hist_start=hist_start, hist_len=hist_len, profile=dict(log.profile),
    )
