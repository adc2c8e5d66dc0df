"""The rating and click-log protocols: labels given by the log, samples split by time.

- ``rating``: one sample per rating event, label = rating >= threshold (the DIN paper's
  MovieLens task: 4 and 5 positive).
- ``click-log``: explicit click labels from impressions, histories from a behavior log.

A sample's history is its user's events with a strictly earlier timestamp (an event at the
same second is not earlier, so the target itself and anything logged with it never leak in),
the most recent `maxlen` kept, in chronological order.
"""

from __future__ import annotations

import numpy as np

from dinrec.data.events import EventLog
from dinrec.data.protocols.history import (
    as_str_log,
    covered_rows,
    event_values,
    history_ends,
    recent_window,
    sample_set,
    sort_by_user_time,
    user_codes,
)
from dinrec.data.protocols.samples import (
    CATE_ID,
    ITEM_ID,
    USER_ID,
    Samples,
    check_maxlen,
    check_profile,
)
from dinrec.data.splits import TimeSplit

DEFAULT_SPLIT = TimeSplit(test_fraction=0.2)
RATING_HISTORY = ("all", "positive")


def build_rating(
    log: EventLog,
    *,
    maxlen: int = 50,
    threshold: float = 4.0,
    split: TimeSplit | None = None,
    history: str = "all",
) -> Samples:
    """Rating samples: one per event, label = rating >= threshold, split by time.

    Args:
        log: events with `rating`.
        maxlen: history length T kept (the most recent).
        threshold: ratings at or above it are positive (default 4: 4 and 5).
        split: TimeSplit; default each user's last 20% of samples to test.
        history: "all" rated events form the history, or only the "positive" ones.

    Returns:
        Samples; rows per split in (user, timestamp, input row) order; the vocabularies are
        to be fitted on the training events only.
    """
    maxlen = check_maxlen(maxlen)
    split = DEFAULT_SPLIT if split is None else split
    if log.rating is None:
        raise ValueError(f"rating protocol: EventLog from {log.source} has no rating column")
    if history not in RATING_HISTORY:
        raise ValueError(f"rating history must be one of {RATING_HISTORY}, got {history!r}")
    check_profile(log)
    log = as_str_log(log)
    (codes,) = user_codes(log.user)
    log, codes = sort_by_user_time(log, codes)
    assert log.rating is not None
    label = (log.rating >= threshold).astype(np.int8)  # [N]
    keep = np.ones(len(log), bool) if history == "all" else label == 1
    hist_log, hist_codes = log.take(keep), codes[keep]
    first, end = history_ends(hist_codes, hist_log.timestamp, codes, log.timestamp)
    samples = sample_set(log, label, *recent_window(first, end, maxlen))
    test = split.test_mask(codes, log.timestamp)
    options = {"maxlen": maxlen, "threshold": float(threshold), "history": history,
               "split": split.to_dict()}
    return Samples(
        protocol="rating", options=options, maxlen=maxlen, train=samples.take(~test),
        test=samples.take(test), history=hist_log,
        fit_values=event_values(log.take(~test)), source=log.source,
    )


def build_click_log(
    impressions: EventLog,
    behaviors: EventLog | None = None,
    *,
    maxlen: int = 50,
    split: TimeSplit | None = None,
) -> Samples:
    """Click-log samples: one per impression with its explicit label, split by time.

    Args:
        impressions: events with `label` (1 = clicked); profiles come from these rows.
        behaviors: the behavior log histories are drawn from (every row counts; filter it
            first to keep e.g. only clicks or buys). None: the impressions' clicked rows.
        maxlen: history length T kept (the most recent).
        split: TimeSplit; default each user's last 20% of impressions to test.

    Returns:
        Samples; the vocabularies' training values are the training impressions plus the
        behaviors that precede some training impression of their user.
    """
    maxlen = check_maxlen(maxlen)
    split = DEFAULT_SPLIT if split is None else split
    if impressions.label is None:
        raise ValueError(
            f"click-log protocol: EventLog from {impressions.source} has no label column"
        )
    check_profile(impressions)
    source = "behaviors" if behaviors is not None else "clicked-impressions"
    impressions = as_str_log(impressions)
    if behaviors is None:
        assert impressions.label is not None
        behaviors = impressions.take(impressions.label == 1)
    behaviors = as_str_log(behaviors)
    codes, beh_codes = user_codes(impressions.user, behaviors.user)
    impressions, codes = sort_by_user_time(impressions, codes)
    behaviors, beh_codes = sort_by_user_time(behaviors, beh_codes)
    assert impressions.label is not None
    label = impressions.label.astype(np.int8)
    if len(label) and not np.isin(label, (0, 1)).all():
        raise ValueError(f"click-log protocol: labels of {impressions.source} must be 0 or 1")
    first, end = history_ends(beh_codes, behaviors.timestamp, codes, impressions.timestamp)
    samples = sample_set(impressions, label, *recent_window(first, end, maxlen))
    test = split.test_mask(codes, impressions.timestamp)
    # Behaviors before some training impression are training-period data; fit on them too.
    seen = behaviors.take(covered_rows(len(behaviors), first[~test], end[~test]))
    fit_values = event_values(impressions.take(~test))
    for name, extra in ((USER_ID, seen.user), (ITEM_ID, seen.item), (CATE_ID, seen.category)):
        fit_values[name] = np.concatenate([fit_values[name], extra])
    options = {"maxlen": maxlen, "history_source": source, "split": split.to_dict()}
    return Samples(
        protocol="click-log", options=options, maxlen=maxlen, train=samples.take(~test),
        test=samples.take(test), history=behaviors, fit_values=fit_values,
        source=impressions.source,
    )
