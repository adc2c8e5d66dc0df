"""The DIN reference next-item protocol: counts, histories, negatives."""

from __future__ import annotations

import numpy as np
import pytest

from dinrec.data.events import EventLog
from dinrec.data.protocols import build_samples
from dinrec.data.protocols.samples import Samples, SampleSet


def make_log(rows: list[tuple]) -> EventLog:
    """rows of (user, item, category, timestamp)."""
    user, item, cate, ts = zip(*rows, strict=True)
    return EventLog(user=np.array(user), item=np.array(item), category=np.array(cate),
                    timestamp=np.array(ts, dtype=np.int64))


def histories(samples: Samples, part: SampleSet) -> list[list[str]]:
    return [
        samples.history.item[s:s + n].tolist()
        for s, n in zip(part.hist_start, part.hist_len, strict=True)
    ]


def many_users(n_users: int = 30, n_items: int = 12, seed: int = 3) -> EventLog:
    """Users with 3..8 distinct items each, item k in category k % 3."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        picks = rng.choice(n_items, size=int(rng.integers(3, 9)), replace=False)
        rows += [(f"u{u}", f"i{k}", f"c{k % 3}", t) for t, k in enumerate(picks)]
    return make_log(rows)


FOUR = [("u", "a", "x", 1), ("u", "b", "x", 2), ("u", "c", "y", 3), ("u", "d", "y", 4),
        ("v", "e", "x", 1), ("v", "f", "y", 2), ("v", "g", "z", 3), ("v", "h", "z", 4)]


def test_n_items_give_n_minus_2_train_pairs_and_one_test_pair() -> None:
    log = make_log([*FOUR, ("short", "a", "x", 1), ("short", "b", "x", 2)])
    s = build_samples("next-item", log)
    assert s.train.user.tolist() == ["u"] * 4 + ["v"] * 4
    assert s.test.user.tolist() == ["u", "u", "v", "v"]
    assert s.train.label.tolist() == [1, 0] * 4
    assert s.test.label.tolist() == [1, 0] * 2
    assert s.train.item[::2].tolist() == ["b", "c", "f", "g"]
    assert s.test.item[::2].tolist() == ["d", "h"]


def test_histories_are_the_items_before_the_target_shared_by_the_negative() -> None:
    s = build_samples("next-item", make_log(FOUR))
    assert histories(s, s.train) == [["a"], ["a"], ["a", "b"], ["a", "b"],
                                     ["e"], ["e"], ["e", "f"], ["e", "f"]]
    assert histories(s, s.test) == [["a", "b", "c"]] * 2 + [["e", "f", "g"]] * 2
    assert s.train.timestamp.tolist() == [2, 2, 3, 3, 2, 2, 3, 3]


def test_negative_is_never_an_item_of_its_user() -> None:
    log = many_users()
    s = build_samples("next-item", log, seed=11)
    own: dict[str, set[str]] = {}
    for user, item in zip(log.user.tolist(), log.item.tolist(), strict=True):
        own.setdefault(user, set()).add(item)
    for part in (s.train, s.test):
        negs = part.label == 0
        for user, item in zip(part.user[negs].tolist(), part.item[negs].tolist(), strict=True):
            assert item not in own[user]
    for start, n, user in zip(s.train.hist_start, s.train.hist_len, s.train.user, strict=True):
        assert set(s.history.item[start:start + n].tolist()) <= own[str(user)]


def test_negative_category_is_that_items_category() -> None:
    s = build_samples("next-item", many_users(), seed=5)
    negs = s.train.label == 0
    expected = [f"c{int(item[1:]) % 3}" for item in s.train.item[negs].tolist()]
    assert s.train.category[negs].tolist() == expected


def test_negatives_come_from_the_training_pool() -> None:
    log = many_users()
    s = build_samples("next-item", log, seed=2, negatives="popularity")
    pool = set(s.fit_values["item_id"].tolist())
    assert set(s.train.item[s.train.label == 0].tolist()) <= pool
    assert set(s.test.item[s.test.label == 0].tolist()) <= pool


def test_same_seed_same_negatives_other_seed_others() -> None:
    log = many_users()
    first = build_samples("next-item", log, seed=7).train.item
    again = build_samples("next-item", log, seed=7).train.item
    other = build_samples("next-item", log, seed=8).train.item
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()


def test_training_period_excludes_each_users_last_item() -> None:
    s = build_samples("next-item", make_log(FOUR))
    assert s.fit_values["item_id"].tolist() == ["a", "b", "c", "e", "f", "g"]


def test_user_who_saw_the_whole_pool_raises() -> None:
    log = make_log([("u", "a", "x", 1), ("u", "b", "x", 2), ("u", "c", "x", 3),
                    ("v", "a", "x", 1), ("v", "b", "x", 2), ("v", "c", "x", 3)])
    with pytest.raises(ValueError, match="no negative"):
        build_samples("next-item", log)


def test_strictly_earlier_option_drops_same_second_items() -> None:
    log = make_log([("u", "a", "x", 1), ("u", "b", "x", 2), ("u", "c", "x", 2),
                    ("u", "d", "x", 3), ("v", "e", "x", 1), ("v", "f", "x", 2),
                    ("v", "g", "x", 3)])
    reference = build_samples("next-item", log)
    strict = build_samples("next-item", log, strictly_earlier=True)
    # u's target c (second 2) follows b in sequence but not in time.
    assert histories(reference, reference.train)[2] == ["a", "b"]
    assert histories(strict, strict.train)[2] == ["a"]


def test_unknown_negative_sampling_raises() -> None:
    with pytest.raises(ValueError, match="negatives"):
        build_samples("next-item", make_log(FOUR), negatives="hard")
