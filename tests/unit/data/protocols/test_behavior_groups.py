"""behavior_histories: per-type histories of samples, never holding a later event."""

from __future__ import annotations

import numpy as np
import pytest

from dinrec.data.events import EventLog
from dinrec.data.protocols.behavior_groups import behavior_histories

HOUR = 3600


def log():
    # u: pv a@0h, buy b@1h, pv c@2h, buy d@3h, pv e@3h (same second as a sample), pv f@5h
    # v: buy g@1h
    return EventLog(
        user=np.array(["u", "u", "u", "u", "u", "u", "v"]),
        item=np.array(["a", "b", "c", "d", "e", "f", "g"]),
        category=np.array(["x", "y", "x", "y", "x", "x", "y"]),
        timestamp=np.array([0, 1, 2, 3, 3, 5, 1], dtype=np.int64) * HOUR,
        behavior=np.array(["pv", "buy", "pv", "buy", "pv", "pv", "buy"]),
    )


def codes(_feature, raw):
    return np.array([ord(r) - ord("a") + 2 for r in raw.tolist()], dtype=np.int64)


def test_each_group_holds_its_types_strictly_before_the_sample():
    out = behavior_histories(np.array(["u", "u", "v"]), np.array([3, 6, 1]) * HOUR, log(),
                             {"": ["pv"], "buy": ["buy"]}, encode=codes, maxlen=3)
    # u at 3h: pv a, c (e is at the same second: not earlier); buy b (d at 3h excluded)
    # u at 6h: pv c, e, f (the latest 3 of a c e f); buys b, d; v at 1h: nothing earlier
    assert out["hist_item_id"].tolist() == [[2, 4, 0], [4, 6, 7], [0, 0, 0]]
    assert out["hist_len"].tolist() == [2, 3, 0]
    assert out["buy_hist_item_id"].tolist() == [[3, 0, 0], [3, 5, 0], [0, 0, 0]]
    assert out["buy_hist_cate_id"].tolist() == [[26, 0, 0], [26, 26, 0], [0, 0, 0]]
    assert out["buy_hist_len"].tolist() == [1, 2, 0]


def test_no_history_holds_an_event_at_or_after_its_sample():
    events = log()
    users = np.array(["u"] * 7)
    times = np.arange(7, dtype=np.int64) * HOUR
    out = behavior_histories(users, times, events, {"": ["pv", "buy"]},
                             encode=lambda _, raw: np.arange(2, 2 + len(raw)), maxlen=10)
    # encoded ids 2.. follow the (user, time)-sorted log: id - 2 indexes its events
    order = np.lexsort((events.timestamp, events.user))
    event_time = events.timestamp[order]
    for row in range(7):
        ids = out["hist_item_id"][row][: out["hist_len"][row]]
        assert (event_time[ids - 2] < times[row]).all()


def test_time_gap_is_log1p_hours_before_the_sample_and_zero_at_padding():
    out = behavior_histories(np.array(["u"]), np.array([3 * HOUR]), log(), {"": ["pv"]},
                             encode=codes, maxlen=3)
    np.testing.assert_allclose(out["hist_time_gap"], [[np.log1p(3.0), np.log1p(1.0), 0.0]],
                               rtol=1e-6)
    assert out["hist_time_gap"].dtype == np.float32


def test_a_type_the_log_lacks_is_an_error_naming_the_group():
    with pytest.raises(ValueError, match=r"behavior group 'buy': types \['cart'\] \(not in "
                                         r"the log: \['cart'\]\)"):
        behavior_histories(np.array(["u"]), np.array([0]), log(), {"buy": ["cart"]},
                           encode=codes)
