"""The DIN reference next-item protocol (Amazon): predict each user's next item vs a negative.

For a user's time-ordered items i1..in (users with n >= 3), training predicts i(k+1) from
i1..ik for k = 1..n-2, test predicts in from i1..i(n-1); each positive comes with one sampled
negative item that the user never interacted with, with the same history.
"""

from __future__ import annotations

import numpy as np

from dinrec.data.events import EventLog
from dinrec.data.protocols.history import (
    as_str_log,
    event_values,
    history_ends,
    recent_window,
    sort_by_user_time,
    user_codes,
)
from dinrec.data.protocols.samples import Samples, SampleSet, check_maxlen, check_profile
from dinrec.data.splits import group_starts

MIN_EVENTS = 3
NEGATIVE_SAMPLING = ("uniform", "popularity")
# Rejection sampling redraws only the collisions; each round shrinks them geometrically, so
# this bound is only reached when a user has touched nearly the whole pool.
_MAX_ROUNDS = 10_000


def build_next_item(
    log: EventLog,
    *,
    maxlen: int = 50,
    seed: int = 0,
    negatives: str = "uniform",
    strictly_earlier: bool = False,
) -> Samples:
    """Next-item samples with one sampled negative per positive, split as the DIN reference.

    Negatives are drawn (seeded) from the item pool of the training period (every user's items
    but the last), so a negative always has a vocabulary id; `negatives="popularity"` draws in
    proportion to training counts. A negative's category is the category of that item's first
    training event. Users with fewer than 3 events are dropped. Rows: per user in time order,
    each positive followed by its negative.

    Args:
        log: events; rating and label are ignored (every event is a positive interaction).
        maxlen: history length T kept (the most recent).
        seed: seed of the negative sampler.
        negatives: "uniform" or "popularity".
        strictly_earlier: history = the user's events with a strictly earlier timestamp
            instead of the reference's "items before it in sequence order" (which counts
            same-second events placed earlier).

    Returns:
        Samples with train (2 per k = 1..n-2 per user) and test (2 per user).
    """
    maxlen = check_maxlen(maxlen)
    if negatives not in NEGATIVE_SAMPLING:
        raise ValueError(f"negatives must be one of {NEGATIVE_SAMPLING}, got {negatives!r}")
    check_profile(log)
    log = as_str_log(log)
    (codes,) = user_codes(log.user)
    log, codes = sort_by_user_time(log, codes)
    start, size = group_starts(codes)
    keep = size >= MIN_EVENTS
    log, codes, start, size = log.take(keep), codes[keep], *group_starts(codes[keep])

    rows = np.arange(len(log), dtype=np.int64)
    position = rows - start  # [M] 0-based rank within the user
    is_last = position == size - 1
    if strictly_earlier:
        first, end = history_ends(codes, log.timestamp, codes, log.timestamp)
    else:
        first, end = start, rows
    hist_start, hist_len = recent_window(first, end, maxlen)

    train_rows = np.flatnonzero((position >= 1) & ~is_last)
    test_rows = np.flatnonzero(is_last)
    neg_item, neg_cate = _sample_negatives(
        log, codes, ~is_last, np.concatenate([train_rows, test_rows]), seed, negatives
    )
    n_train = len(train_rows)
    train = _pairs(log, train_rows, neg_item[:n_train], neg_cate[:n_train], hist_start, hist_len)
    test = _pairs(log, test_rows, neg_item[n_train:], neg_cate[n_train:], hist_start, hist_len)
    options = {"maxlen": maxlen, "seed": int(seed), "negatives": negatives,
               "strictly_earlier": bool(strictly_earlier), "min_events": MIN_EVENTS}
    return Samples(
        protocol="next-item", options=options, maxlen=maxlen, train=train, test=test,
        history=log, fit_values=event_values(log.take(~is_last)), source=log.source,
    )


def _pairs(
    log: EventLog, rows: np.ndarray, neg_item: np.ndarray, neg_cate: np.ndarray,
    hist_start: np.ndarray, hist_len: np.ndarray,
) -> SampleSet:
    """Each target row as a positive followed by its negative, both with the row's history."""
    twice = np.repeat(rows, 2)  # [2R]
    is_neg = np.tile(np.array([False, True]), len(rows))  # [2R]
    item = log.item[twice].copy()
    category = log.category[twice].copy()
    # Widen the unicode dtype first: a negative's raw id may be longer than any positive's.
    item = item.astype(np.result_type(item, neg_item))
    category = category.astype(np.result_type(category, neg_cate))
    item[is_neg] = neg_item
    category[is_neg] = neg_cate
    return SampleSet(
        user=log.user[twice], item=item, category=category, timestamp=log.timestamp[twice],
        label=(~is_neg).astype(np.int8), hist_start=hist_start[twice], hist_len=hist_len[twice],
        profile={k: v[twice] for k, v in log.profile.items()},
    )


def _sample_negatives(
    log: EventLog, codes: np.ndarray, fit_mask: np.ndarray, target_rows: np.ndarray,
    seed: int, negatives: str,
) -> tuple[np.ndarray, np.ndarray]:
    """One negative (item, category) per target row, never an item of that row's user.

    Args:
        log: sorted events; codes: [M] their user codes.
        fit_mask: [M] bool, training-period rows (they form the item pool).
        target_rows: [R] rows needing a negative, drawn in this order.
        seed: RNG seed; negatives: "uniform" or "popularity".

    Returns:
        ([R] raw negative item ids, [R] their raw categories).
    """
    items, item_codes = np.unique(log.item, return_inverse=True)
    item_codes = item_codes.reshape(-1).astype(np.int64)  # [M]
    n_items = len(items)
    fit_rows = np.flatnonzero(fit_mask)
    if len(target_rows) == 0:
        return log.item[:0], log.category[:0]
    # Pool in ascending raw id order; first_fit = each pool item's first training row.
    pool, first_fit, pool_counts = np.unique(
        item_codes[fit_rows], return_index=True, return_counts=True
    )
    pool_cate = log.category[fit_rows[first_fit]]
    seen = np.unique(codes * n_items + item_codes)  # sorted (user, item) keys the user touched
    _check_pool_not_exhausted(log, codes, seen, pool, n_items)

    rng = np.random.default_rng(seed)
    prob = pool_counts / pool_counts.sum() if negatives == "popularity" else None
    users = codes[target_rows]
    choice = np.zeros(len(target_rows), dtype=np.int64)  # index into pool
    todo = np.arange(len(target_rows))
    rounds = 0
    while len(todo):
        if rounds == _MAX_ROUNDS:
            raise RuntimeError("negative sampling did not converge; the item pool is too small")
        rounds += 1
        choice[todo] = rng.choice(len(pool), size=len(todo), p=prob)
        keys = users[todo] * n_items + pool[choice[todo]]
        hit = np.searchsorted(seen, keys)
        clash = seen[np.minimum(hit, len(seen) - 1)] == keys
        todo = todo[clash]
    return items[pool[choice]], pool_cate[choice]


def _check_pool_not_exhausted(
    log: EventLog, codes: np.ndarray, seen: np.ndarray, pool: np.ndarray, n_items: int
) -> None:
    """Raise if some user touched every pool item: no negative exists for them."""
    seen_item = seen % n_items
    in_pool = np.isin(seen_item, pool)
    per_user = np.bincount(seen[in_pool] // n_items, minlength=int(codes.max(initial=-1)) + 1)
    full = np.flatnonzero(per_user >= len(pool))
    if len(full):
        user = log.user[np.searchsorted(codes, full[0])]
        raise ValueError(
            f"next-item: user {user!r} interacted with every one of the {len(pool)} items in "
            "the training pool, so no negative can be sampled"
        )
