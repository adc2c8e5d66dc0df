"""Tests for the long-history synthetic log (dinrec.data.synthetic_long)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dinrec.data.synthetic_long import (
    LongHistoryLog,
    generate_long_log,
    long_term_relevance,
    model_inputs,
)

TINY = {"n_users": 6, "n_items": 40, "n_categories": 5, "min_len": 12, "max_len": 20,
        "recent": 4, "impressions": 3}


def test_same_seed_gives_identical_arrays_and_another_seed_differs() -> None:
    a, b = generate_long_log(seed=3, **TINY), generate_long_log(seed=3, **TINY)
    for name, value in a.__dict__.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)
    c = generate_long_log(seed=4, **TINY)
    assert not np.array_equal(a.hist_item, c.hist_item)


def test_click_probability_is_sigmoid_of_max_cosine_over_old_behaviors() -> None:
    scale, bias = 4.0, -3.6
    log = generate_long_log(seed=1, relevance_scale=scale, click_bias=bias, **TINY)
    for row in range(log.num_samples):
        u = int(log.sample_user[row]) - 1
        old = log.hist_item[u, : int(log.hist_len[u]) - log.recent]  # the long-term part
        cand = log.item_vectors[log.sample_item[row]].astype(np.float64)
        best = max(float(np.dot(log.item_vectors[i].astype(np.float64), cand)) for i in old)
        expected = 1.0 / (1.0 + math.exp(-(scale * best + bias)))
        assert log.click_prob[row] == pytest.approx(expected, rel=1e-5)


def test_recent_behaviors_do_not_enter_the_click_probability() -> None:
    log = generate_long_log(seed=2, **TINY)
    rows = np.arange(log.num_samples)
    before = long_term_relevance(log, rows)
    # Replace every user's recent behaviors by the candidate of their first impression: if
    # they counted, relevance would rise to 1 for those rows.
    hist = log.hist_item.copy()
    for u in range(log.num_users):
        n = int(log.hist_len[u])
        hist[u, n - log.recent : n] = log.sample_item[u * 3]
    changed = LongHistoryLog(**{**log.__dict__, "hist_item": hist})
    np.testing.assert_array_equal(long_term_relevance(changed, rows), before)


def test_old_behaviors_come_from_the_users_interest_categories() -> None:
    log = generate_long_log(seed=5, **TINY)
    for u in range(log.num_users):
        old = log.hist_item[u, : int(log.hist_len[u]) - log.recent]
        interests = set(log.user_interests[u][log.user_interests[u] > 0].tolist())
        assert set(log.item_category[old].tolist()) <= interests


def test_no_history_event_is_at_or_after_its_impression() -> None:
    log = generate_long_log(seed=6, **TINY)
    u = log.sample_user - 1
    valid = np.arange(log.hist_item.shape[1])[None, :] < log.hist_len[u][:, None]
    hist_time = log.hist_time[u]  # [N, L]
    assert np.all(np.where(valid, hist_time < log.sample_time[:, None], True))
    assert np.all(log.hist_item[~(np.arange(log.hist_item.shape[1])[None, :]
                                  < log.hist_len[:, None])] == 0)
    for user in range(log.num_users):  # strictly increasing behavior times
        assert np.all(np.diff(log.hist_time[user, : int(log.hist_len[user])]) > 0)


def test_model_inputs_keep_the_most_recent_behaviors_oldest_first_padded_at_the_end() -> None:
    # User 1 has 5 behaviors (items 1..5), user 2 has 2 (items 6, 7); item i is in cate i%2+1.
    log = LongHistoryLog(
        hist_item=np.array([[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]]),
        hist_time=np.array([[1, 2, 3, 4, 5], [1, 2, 0, 0, 0]]),
        hist_len=np.array([5, 2]), recent=1,
        sample_user=np.array([1, 2]), sample_item=np.array([3, 6]),
        sample_time=np.array([9, 9]), sample_index=np.array([0, 0]),
        click_prob=np.array([0.5, 0.5]), label=np.array([1, 0], dtype=np.int8),
        item_category=np.array([0, 2, 1, 2, 1, 2, 1, 2]),
        item_vectors=np.zeros((8, 2), dtype=np.float32), user_interests=np.array([[1], [2]]),
    )
    x = model_inputs(log, np.array([0, 1]), maxlen=3)
    assert x["hist_item_id"].tolist() == [[3, 4, 5], [6, 7, 0]]
    assert x["hist_cate_id"].tolist() == [[2, 1, 2], [1, 2, 0]]
    assert x["seq_length"].tolist() == [3, 2]
    assert x["item_id"].tolist() == [3, 6] and x["cate_id"].tolist() == [2, 1]
    assert x["user"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [({"recent": 30, "min_len": 20}, "recent"),
     ({"interests_per_user": (3, 9), "n_categories": 5}, "interests_per_user"),
     ({"interest_rate": 1.5}, "interest_rate")],
)
def test_bad_settings_raise_naming_the_setting(kwargs: dict[str, object], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        generate_long_log(**{**TINY, **kwargs})  # type: ignore[arg-type]
