"""Sample builders (protocols): an EventLog -> train/test samples with behavior histories.

Three protocols, all vectorised (no per-user Python loop):

- ``rating``: one sample per rating event, label = rating >= threshold (the DIN paper's
  MovieLens task: 4 and 5 positive); split by time (TimeSplit).
- ``next-item``: the DIN reference protocol for Amazon (see protocols.nextitem); fixed split.
- ``click-log``: explicit click labels from impressions, histories from a behavior log;
  split by time.

In rating and click-log, a sample's history is its user's events with a strictly earlier
timestamp (an event at the same second is not earlier, so the target itself and anything
logged with it never leak in), the most recent `maxlen` kept, in chronological order.

Example:
    >>> import numpy as np
    >>> from dinrec.data.events import EventLog
    >>> log = EventLog(user=np.array(["u", "u", "u"]), item=np.array(["a", "b", "c"]),
    ...                category=np.array(["x", "x", "y"]), timestamp=np.array([1, 2, 2]),
    ...                rating=np.array([5, 3, 4], dtype=np.float32))
    >>> s = build_samples("rating", log, split=TimeSplit(cutoff=2))
    >>> s.train.item.tolist(), s.test.item.tolist(), s.test.hist_len.tolist()
    (['a'], ['b', 'c'], [1, 1])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from dinrec.data.events import EventLog
from dinrec.data.protocols.labelled import DEFAULT_SPLIT, build_click_log, build_rating
from dinrec.data.protocols.nextitem import build_next_item
from dinrec.data.protocols.samples import Samples, SampleSet
from dinrec.data.splits import TimeSplit

__all__ = [
    "DEFAULT_SPLIT", "PROTOCOLS", "SampleSet", "Samples", "TimeSplit", "build_click_log",
    "build_next_item", "build_rating", "build_samples",
]

PROTOCOLS: dict[str, Callable[..., Samples]] = {
    "rating": build_rating,
    "next-item": build_next_item,
    "click-log": build_click_log,
}


def build_samples(
    protocol: str, log: EventLog, *, behaviors: EventLog | None = None, **options: Any
) -> Samples:
    """Build samples with a protocol chosen by name (what the CLI and configs call).

    Args:
        protocol: "rating", "next-item" or "click-log".
        log: the events (impressions for click-log).
        behaviors: click-log only: the behavior log for histories.
        options: the protocol's keyword options (maxlen, split, threshold, seed, ...);
            a `split` given as a dict is turned into a TimeSplit. Unknown names raise.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}")
    builder = PROTOCOLS[protocol]
    allowed = [
        p.name for p in inspect.signature(builder).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"protocol {protocol!r} has no options {unknown}; its options are {allowed}"
        )
    if isinstance(options.get("split"), dict):
        options["split"] = TimeSplit.from_dict(options["split"])
    if protocol == "click-log":
        return build_click_log(log, behaviors, **options)
    if behaviors is not None:
        raise ValueError(f"protocol {protocol!r} takes no behaviors log")
    return builder(log, **options)
