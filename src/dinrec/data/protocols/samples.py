"""Samples as sample builders produce them: the dataset's column names, SampleSet / Samples.

A sample is raw ids plus a history span into a sorted log.

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
