"""generate_group_log: typed behaviors before the impressions, known click probabilities."""

from __future__ import annotations

import numpy as np

from dinrec.data.synthetic_groups import generate_group_log


def small(**kw):
    return generate_group_log(n_users=30, n_items=200, n_categories=20, n_clicks=8, n_buys=3,
                              impressions=4, **kw)


def test_counts_types_and_every_behavior_is_before_its_users_impressions():
    log = small(seed=3)
    beh = log.behaviors
    assert len(beh) == 30 * (8 + 3)
    assert (beh.behavior == "click").sum() == 240 and (beh.behavior == "buy").sum() == 90
    first_impression = {u: t for u, t in zip(log.users[::-1], log.timestamps[::-1],
                                             strict=True)}
    assert all(t < first_impression[u] for u, t in zip(beh.user, beh.timestamp, strict=True))
    assert log.index.tolist()[:8] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_same_seed_same_log_and_labels_follow_the_probabilities():
    a, b = small(seed=5), small(seed=5)
    np.testing.assert_array_equal(a.click_prob, b.click_prob)
    np.testing.assert_array_equal(a.behaviors.item, b.behaviors.item)
    big = generate_group_log(n_users=400, n_items=300, n_categories=20, seed=1)
    assert abs(big.label.mean() - big.click_prob.mean()) < 0.01


def test_buys_only_count_while_recent():
    kw = {"n_users": 50, "n_items": 200, "n_categories": 20, "click_scale": 0.0, "seed": 2}
    # Without clicks' share p = sigmoid(6 * max_j cos_j * exp(-age_j / decay) - 3): buys a
    # second old at most (decay 1e-6 days) add nothing, so p is sigmoid(-3) everywhere.
    forgotten = generate_group_log(decay_days=1e-6, **kw)
    np.testing.assert_allclose(forgotten.click_prob, 1 / (1 + np.exp(3.0)))
    remembered = generate_group_log(decay_days=1e9, **kw)
    assert remembered.click_prob.max() > 0.9
