"""Synthetic typed behavior log: clicks depend on a second behavior type and its recency.

The world, in the order it is drawn:

* Categories have unit latent centers in D dims; each item belongs to one category and has a
  unit latent vector near its center (same-category cosine high, unrelated ~0).
* Each user has browse interests (``browse_categories`` categories) and, disjoint from them,
  purchase intents (``buy_categories``). Over the ``days`` before the impressions the user
  makes ``n_clicks`` "click" behaviors (from the browse interests with probability
  ``interest_rate``, else uniform) and ``n_buys`` "buy" behaviors (from the purchase
  intents likewise), at uniform random times.
* Each user then sees ``impressions`` candidates, one minute apart after the last day: a
  third from the purchase intents, a third from the browse interests, a third uniform.
* The click probability of candidate c is KNOWN:
  ``p = sigmoid(buy_scale * max_j cos(v_c, v_j) * exp(-age_j / decay_days)
  + click_scale * max_i cos(v_c, v_i) + bias)``, j over the buys, i over the clicks,
  ages in days before the impression. So the buys drive the label, the more the more recent
  they are; a DIN that pools clicks and buys in one history cannot tell which is which, one
  with a buy group can, and the time since each behavior tells it how much a buy counts.

Example:
    >>> log = generate_group_log(n_users=10, n_items=200, n_categories=20, seed=1)
    >>> sorted(set(log.behaviors.behavior.tolist())), log.impressions_per_user
    (['buy', 'click'], 12)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinrec.data.events import EventLog
from dinrec.data.synthetic import _EPOCH_START, _sigmoid, _unit

DAY = 86_400


@dataclass(frozen=True)
class GroupLog:
    """A generated typed log. Raw ids are decimal strings of codes: items 0..I-1, categories
    0..C-1, users 0..U-1 (encode as int + 2 to keep 0 for padding and 1 for unknown).

    Args:
        behaviors: EventLog of clicks and buys (behavior "click" / "buy"), every one earlier
            than its user's impressions.
        users / items / categories: [N] raw ids of the impressions, grouped by user, in time
            order within a user.
        timestamps: [N] int64 seconds of the impressions.
        index: [N] position of the impression among its user's (split by it).
        click_prob: [N] float64 the true click probability (the oracle's score).
        label: [N] int8 clicks drawn from click_prob.
        impressions_per_user: impressions of each user.
    """

    behaviors: EventLog
    users: np.ndarray
    items: np.ndarray
    categories: np.ndarray
    timestamps: np.ndarray
    index: np.ndarray
    click_prob: np.ndarray
    label: np.ndarray
    impressions_per_user: int


def generate_group_log(
    *,
    n_users: int = 2000,
    n_items: int = 3000,
    n_categories: int = 60,
    dim: int = 16,
    browse_categories: int = 3,
    buy_categories: int = 2,
    n_clicks: int = 60,
    n_buys: int = 10,
    interest_rate: float = 0.8,
    days: int = 30,
    impressions: int = 12,
    buy_scale: float = 6.0,
    click_scale: float = 1.0,
    decay_days: float = 7.0,
    bias: float = -3.0,
    item_noise: float = 0.6,
    seed: int = 0,
) -> GroupLog:
    """Draw the world described in the module docstring (seeded, vectorised)."""
    rng = np.random.default_rng(seed)
    item_cat = rng.integers(0, n_categories, n_items)
    center = _unit(rng.standard_normal((n_categories, dim)))
    noise = item_noise * rng.standard_normal((n_items, dim)) / np.sqrt(dim)
    vectors = _unit(center[item_cat] + noise)  # [I, D]
    by_cat = [np.flatnonzero(item_cat == c) for c in range(n_categories)]
    by_cat = [c if len(c) else np.arange(n_items) for c in by_cat]
    # Browse and buy categories of each user: the first columns of a random permutation.
    perm = np.argsort(rng.random((n_users, n_categories)), axis=1)
    browse = perm[:, :browse_categories]  # [U, Kb]
    buy = perm[:, browse_categories : browse_categories + buy_categories]  # [U, Kp]

    def draw(cats: np.ndarray, count: int) -> np.ndarray:
        """[U, count] items: from a random one of each user's cats w.p. interest_rate."""
        pick = cats[np.arange(n_users)[:, None], rng.integers(0, cats.shape[1], (n_users, count))]
        within = np.array([by_cat[c][rng.integers(0, len(by_cat[c]))] for c in pick.ravel()])
        uniform = rng.integers(0, n_items, n_users * count)
        keep = rng.random(n_users * count) < interest_rate
        return np.where(keep, within, uniform).reshape(n_users, count)

    clicks, buys = draw(browse, n_clicks), draw(buy, n_buys)
    start = _EPOCH_START
    click_t = start + rng.integers(0, days * DAY, (n_users, n_clicks))
    buy_t = start + rng.integers(0, days * DAY, (n_users, n_buys))
    # Impressions after the last day, one minute apart.
    imp_t = start + days * DAY + 60 * np.arange(1, impressions + 1)[None, :].repeat(n_users, 0)
    thirds = rng.integers(0, 3, (n_users, impressions))
    cand = np.where(thirds == 0, draw(buy, impressions),
                    np.where(thirds == 1, draw(browse, impressions),
                             rng.integers(0, n_items, (n_users, impressions))))
    cos_buy = np.einsum("ucd,ubd->ucb", vectors[cand], vectors[buys])  # [U, M, Nb]
    age = (imp_t[:, :, None] - buy_t[:, None, :]) / DAY  # [U, M, Nb] days
    buy_term = (np.clip(cos_buy, 0.0, None) * np.exp(-age / decay_days)).max(axis=2)
    click_term = np.einsum("ucd,uld->ucl", vectors[cand], vectors[clicks]).max(axis=2)
    prob = _sigmoid(buy_scale * buy_term + click_scale * click_term + bias)  # [U, M]
    label = (rng.random(prob.shape) < prob).astype(np.int8)

    user_ids = np.arange(n_users)
    behaviors = EventLog(
        user=_raw(np.concatenate([user_ids.repeat(n_clicks), user_ids.repeat(n_buys)])),
        item=_raw(np.concatenate([clicks.ravel(), buys.ravel()])),
        category=_raw(item_cat[np.concatenate([clicks.ravel(), buys.ravel()])]),
        timestamp=np.concatenate([click_t.ravel(), buy_t.ravel()]).astype(np.int64),
        behavior=np.array(["click"] * (n_users * n_clicks) + ["buy"] * (n_users * n_buys)),
        source="synthetic-groups",
    )
    return GroupLog(
        behaviors=behaviors, users=_raw(user_ids.repeat(impressions)), items=_raw(cand.ravel()),
        categories=_raw(item_cat[cand.ravel()]), timestamps=imp_t.ravel().astype(np.int64),
        index=np.tile(np.arange(impressions), n_users), click_prob=prob.ravel(),
        label=label.ravel(), impressions_per_user=impressions,
    )


def encode_codes(_feature: str, raw: np.ndarray) -> np.ndarray:
    """A GroupLog's raw ids -> model ids (code + 2: 0 stays padding, 1 unknown)."""
    return raw.astype(np.int64) + 2


def _raw(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.int64).astype(str)
