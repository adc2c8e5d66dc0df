"""Sample builders: leakage-free histories, truncation, labels, splits, fit values."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from dinrec.data.events import EventLog
from dinrec.data.protocols import TimeSplit, build_samples
from dinrec.data.protocols.samples import Samples, SampleSet
from dinrec.data.vocabulary import OOV_ID, Vocabularies


def make_log(rows: list[tuple], **extra: Any) -> EventLog:
    """rows of (user, item, category, timestamp, rating)."""
    user, item, cate, ts, rating = zip(*rows, strict=True)
    return EventLog(
        user=np.array(user), item=np.array(item), category=np.array(cate),
        timestamp=np.array(ts, dtype=np.int64), rating=np.array(rating, dtype=np.float32),
        **extra,
    )


def histories(samples: Samples, part: SampleSet) -> list[list[str]]:
    """Each sample's history as raw item ids, oldest first."""
    return [
        samples.history.item[s:s + n].tolist()
        for s, n in zip(part.hist_start, part.hist_len, strict=True)
    ]


NO_TEST = TimeSplit(cutoff=10**12)


def test_history_never_holds_the_target_or_a_later_event() -> None:
    log = make_log([("u", "c", "x", 30, 5), ("u", "a", "x", 10, 5), ("u", "b", "x", 20, 5)])
    s = build_samples("rating", log, split=NO_TEST)
    assert s.train.item.tolist() == ["a", "b", "c"]
    assert histories(s, s.train) == [[], ["a"], ["a", "b"]]


def test_equal_timestamps_are_not_earlier() -> None:
    log = make_log([("u", "a", "x", 10, 5), ("u", "b", "x", 20, 5), ("u", "c", "x", 20, 5)])
    s = build_samples("rating", log, split=NO_TEST)
    assert histories(s, s.train) == [[], ["a"], ["a"]]


def test_histories_do_not_cross_users() -> None:
    log = make_log([("u", "a", "x", 10, 5), ("v", "b", "x", 5, 5), ("v", "c", "x", 20, 5)])
    s = build_samples("rating", log, split=NO_TEST)
    assert s.train.user.tolist() == ["u", "v", "v"]
    assert histories(s, s.train) == [[], [], ["b"]]


def test_truncation_keeps_most_recent_maxlen_in_time_order() -> None:
    log = make_log([("u", it, "x", t, 5) for it, t in zip("abcde", [1, 2, 3, 4, 5], strict=True)])
    s = build_samples("rating", log, maxlen=2, split=NO_TEST)
    assert histories(s, s.train) == [[], ["a"], ["a", "b"], ["b", "c"], ["c", "d"]]
    assert s.train.hist_len.tolist() == [0, 1, 2, 2, 2]


def test_rating_label_is_rating_at_or_above_threshold() -> None:
    log = make_log([("u", "a", "x", 1, 5), ("u", "b", "x", 2, 4), ("u", "c", "x", 3, 3.5),
                    ("u", "d", "x", 4, 1)])
    assert build_samples("rating", log, split=NO_TEST).train.label.tolist() == [1, 1, 0, 0]
    labels = build_samples("rating", log, split=NO_TEST, threshold=3).train.label
    assert labels.tolist() == [1, 1, 1, 0] and labels.dtype == np.int8


def test_rating_positive_history_skips_low_ratings() -> None:
    log = make_log([("u", "a", "x", 1, 5), ("u", "b", "x", 2, 2), ("u", "c", "x", 3, 4)])
    s = build_samples("rating", log, split=NO_TEST, history="positive")
    assert histories(s, s.train) == [[], ["a"], ["a"]]


def test_per_user_last_fraction_goes_to_test() -> None:
    rows = [("u", f"i{k}", "x", k, 5) for k in range(5)] + [("v", "j", "x", 3, 5)]
    s = build_samples("rating", make_log(rows), split=TimeSplit(test_fraction=0.2))
    assert s.train.item.tolist() == ["i0", "i1", "i2", "i3"]
    # A one-sample user keeps floor(1 * 0.8) = 0 for training.
    assert s.test.item.tolist() == ["i4", "j"]
    # Test histories hold all earlier events, train ones included.
    assert histories(s, s.test) == [["i0", "i1", "i2", "i3"], []]


def test_global_cutoff_sends_samples_at_or_after_it_to_test() -> None:
    log = make_log([("u", "a", "x", 1, 5), ("u", "b", "x", 5, 5), ("v", "c", "x", 9, 5)])
    s = build_samples("rating", log, split=TimeSplit(cutoff=5))
    assert s.train.item.tolist() == ["a"]
    assert s.test.item.tolist() == ["b", "c"]


def test_vocabulary_fit_values_hold_only_training_events() -> None:
    log = make_log([("u", "a", "x", 1, 5), ("u", "b", "y", 2, 5), ("u", "late", "z", 9, 5)])
    s = build_samples("rating", log, split=TimeSplit(cutoff=5))
    assert s.fit_values["item_id"].tolist() == ["a", "b"]
    vocabs = Vocabularies.fit(s.fit_values)
    assert vocabs.encode("item_id", s.test.item).tolist() == [OOV_ID]
    assert vocabs.encode("cate_id", s.test.category).tolist() == [OOV_ID]


def test_profile_values_come_from_each_samples_row() -> None:
    log = make_log([("u", "a", "x", 1, 5), ("v", "b", "x", 2, 5)],
                   profile={"gender": np.array(["F", "M"])})
    s = build_samples("rating", log, split=NO_TEST)
    assert s.profile_columns == ["gender"]
    assert s.train.profile["gender"].tolist() == ["F", "M"]
    assert s.fit_values["gender"].tolist() == ["F", "M"]


def test_profile_column_may_not_reuse_a_dataset_column_name() -> None:
    log = make_log([("u", "a", "x", 1, 5)], profile={"label": np.array(["1"])})
    with pytest.raises(ValueError, match="clash"):
        build_samples("rating", log)


def test_unknown_protocol_or_option_raises() -> None:
    log = make_log([("u", "a", "x", 1, 5)])
    with pytest.raises(ValueError, match="unknown protocol"):
        build_samples("ratings", log)
    with pytest.raises(ValueError, match="no options"):
        build_samples("rating", log, max_len=5)


def test_split_given_as_dict_is_recorded_in_options() -> None:
    log = make_log([("u", "a", "x", 1, 5), ("u", "b", "x", 2, 5)])
    s = build_samples("rating", log, split={"cutoff": 2}, maxlen=7)
    assert s.options == {"maxlen": 7, "threshold": 4.0, "history": "all",
                         "split": {"test_fraction": None, "cutoff": 2}}


# --- click-log ---------------------------------------------------------------------------


def click_log(rows: list[tuple]) -> EventLog:
    """rows of (user, item, category, timestamp, label)."""
    user, item, cate, ts, label = zip(*rows, strict=True)
    return EventLog(user=np.array(user), item=np.array(item), category=np.array(cate),
                    timestamp=np.array(ts, dtype=np.int64), label=np.array(label, np.int8))


def test_click_log_history_has_only_behaviors_strictly_before_impression() -> None:
    behaviors = make_log([("u", "b1", "x", 1, 0), ("u", "b2", "x", 2, 0),
                          ("u", "b3", "y", 3, 0), ("u", "b5", "y", 5, 0),
                          ("w", "other", "x", 1, 0)])
    impressions = click_log([("u", "i1", "x", 3, 1), ("u", "i2", "x", 6, 0)])
    s = build_samples("click-log", impressions, behaviors=behaviors, split=NO_TEST)
    assert histories(s, s.train) == [["b1", "b2"], ["b1", "b2", "b3", "b5"]]
    assert s.train.label.tolist() == [1, 0]
    cates = [s.history.category[a:a + n].tolist()
             for a, n in zip(s.train.hist_start, s.train.hist_len, strict=True)]
    assert cates == [["x", "x"], ["x", "x", "y", "y"]]


def test_click_log_without_behaviors_uses_earlier_clicked_impressions() -> None:
    impressions = click_log([("u", "a", "x", 1, 1), ("u", "b", "x", 2, 0),
                             ("u", "c", "x", 3, 1), ("u", "d", "x", 4, 0)])
    s = build_samples("click-log", impressions, split=NO_TEST)
    assert histories(s, s.train) == [[], ["a"], ["a"], ["a", "c"]]
    assert s.options["history_source"] == "clicked-impressions"


def test_click_log_fit_values_skip_behaviors_after_training_impressions() -> None:
    behaviors = make_log([("u", "early", "x", 1, 0), ("u", "late", "y", 8, 0)])
    impressions = click_log([("u", "i1", "x", 3, 1), ("u", "i2", "x", 9, 0)])
    s = build_samples("click-log", impressions, behaviors=behaviors,
                      split=TimeSplit(cutoff=5))
    assert s.fit_values["item_id"].tolist() == ["i1", "early"]
    assert histories(s, s.test) == [["early", "late"]]


def test_click_log_needs_labels() -> None:
    with pytest.raises(ValueError, match="no label"):
        build_samples("click-log", make_log([("u", "a", "x", 1, 5)]))


# --- real data ---------------------------------------------------------------------------


def test_ml100k_rating_protocol_counts(shared_file) -> None:
    path = shared_file("ml-100k/ml-100k.inter")
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    cols = np.array([line.split("\t") for line in lines])  # user, item, rating, timestamp
    log = EventLog(user=cols[:, 0], item=cols[:, 1], category=np.full(len(cols), ""),
                   timestamp=cols[:, 3].astype(np.float64).astype(np.int64),
                   rating=cols[:, 2].astype(np.float32), source="ml-100k")
    began = time.perf_counter()
    s = build_samples("rating", log, maxlen=50)
    assert time.perf_counter() - began < 10
    assert len(s.train) + len(s.test) == 100_000
    assert len(np.unique(s.train.user)) == 943
    assert int(s.train.label.sum() + s.test.label.sum()) == 55_375  # ratings 4 and 5
    assert int(s.train.hist_len.max()) == 50
    nxt = build_samples("next-item", log, maxlen=50)
    assert len(nxt.test) == 2 * 943
    assert len(nxt.train) == 2 * (100_000 - 2 * 943)
