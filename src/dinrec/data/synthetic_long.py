"""Synthetic long-history click log: clicks depend on behaviors OLDER than the recent ones.

The world, in the order it is drawn:

* Categories have unit latent centers in D dims; each item belongs to one category and has a
  unit latent vector near its center (same-category cosine ~0.5-0.9, unrelated ~0 +- 1/sqrt(D)).
* Each user has a few long-term interests (distinct categories) and a behavior history of
  ``min_len``..``max_len`` events in time order. All but the most recent ``recent`` behaviors
  are drawn from the user's interests (a category by the user's weights, then an item in it);
  the most recent ``recent`` are drawn uniformly from all items: they say nothing about the
  user, so a model that sees only the last 50 or 100 behaviors is left with item popularity.
* Each user then sees ``impressions`` candidates, all later than every behavior: with
  probability ``interest_rate`` from one of the user's interest categories, else uniform.
* The click probability of a candidate c is KNOWN:
  ``p = sigmoid(relevance_scale * max_j cos(v_c, v_j) + click_bias)``, j over the user's
  behaviors older than the recent ``recent`` (the "long-term" part). The oracle AUC is the AUC
  of p against the drawn labels; impressions are not added to the history.

A sample's history is the user's whole behavior list (strictly earlier than the impression);
``model_inputs`` keeps its most recent ``maxlen`` behaviors, oldest first, padded with 0 at
the end, in DeepCTR's input layout.

Example:
    >>> log = generate_long_log(n_users=20, n_items=300, n_categories=10, seed=1)
    >>> x = model_inputs(log, np.arange(log.num_samples), maxlen=600)
    >>> x["hist_item_id"].shape, int(x["seq_length"].max()) <= 600
    ((240, 600), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinrec.data.synthetic import _EPOCH_START, _sigmoid, _unit


@dataclass(frozen=True)
class LongHistoryLog:
    """A generated long-history log. Ids are model-ready codes: 0 is padding, items 1..I,
    categories 1..C, users 1..U (row u - 1 of the per-user arrays).

    Args:
        hist_item: [U, L] int64 item ids of each user's behaviors, oldest first, 0-padded.
        hist_time: [U, L] int64 timestamps (strictly increasing per user), 0 where padded.
        hist_len: [U] int64 number of behaviors of each user.
        recent: the most recent behaviors of every user that carry no signal.
        sample_user: [N] int64 user id of each impression (1..U), grouped by user.
        sample_item: [N] int64 candidate item id.
        sample_time: [N] int64 timestamp, later than every behavior of the user.
        sample_index: [N] int64 position of the impression among its user's (0-based, in
            time order): split by it to hold out each user's latest impressions.
        click_prob: [N] float64 the true click probability (the oracle's score).
        label: [N] int8 clicks drawn from click_prob.
        item_category: [I + 1] int64 category id of each item id (0 for padding).
        item_vectors: [I + 1, D] float32 unit latent vectors (row 0 zeros, for padding).
        user_interests: [U, K] int64 interest category ids of each user, 0-padded.
    """

    hist_item: np.ndarray
    hist_time: np.ndarray
    hist_len: np.ndarray
    recent: int
    sample_user: np.ndarray
    sample_item: np.ndarray
    sample_time: np.ndarray
    sample_index: np.ndarray
    click_prob: np.ndarray
    label: np.ndarray
    item_category: np.ndarray
    item_vectors: np.ndarray
    user_interests: np.ndarray

    @property
    def num_samples(self) -> int:
        return int(self.label.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.item_category.shape[0] - 1)

    @property
    def num_categories(self) -> int:
        return int(self.item_category.max())

    @property
    def num_users(self) -> int:
        return int(self.hist_len.shape[0])


def long_term_relevance(log: LongHistoryLog, rows: np.ndarray) -> np.ndarray:
    """max_j cos(candidate, behavior j) over the user's behaviors older than the recent ones.

    Args:
        log: the generated log.
        rows: [n] sample rows.

    Returns:
        [n] float64; -1 where a user has no long-term behavior (min_len == recent).
    """
    out = np.empty(len(rows), dtype=np.float64)
    for a in range(0, len(rows), 1024):  # bounds memory to 1024 * L * D floats
        r = rows[a : a + 1024]
        u = log.sample_user[r] - 1
        hist = log.item_vectors[log.hist_item[u]]  # [n, L, D]
        sims = np.matmul(hist, log.item_vectors[log.sample_item[r], :, None])[:, :, 0]  # [n, L]
        old = np.arange(log.hist_item.shape[1])[None, :] < (log.hist_len[u] - log.recent)[:, None]
        out[a : a + 1024] = np.where(old, sims, -1.0).max(axis=1, initial=-1.0)
    return out


def generate_long_log(
    *,
    n_users: int = 2400,
    n_items: int = 5000,
    n_categories: int = 100,
    latent_dim: int = 32,
    interests_per_user: tuple[int, int] = (2, 4),
    min_len: int = 300,
    max_len: int = 1000,
    recent: int = 100,
    impressions: int = 12,
    interest_rate: float = 0.4,
    item_noise: float = 1.0,
    relevance_scale: float = 4.0,
    click_bias: float = -3.6,
    seed: int = 0,
) -> LongHistoryLog:
    """A long-history impression log with known click probabilities.

    Args:
        n_users, n_items, n_categories: sizes of the world (n_items >= n_categories).
        latent_dim: dimension D of the item vectors.
        interests_per_user: (min, max) interest categories per user, distinct, uniform.
        min_len, max_len: each user's number of behaviors, uniform in [min_len, max_len].
        recent: the most recent behaviors, drawn uniformly over items (no signal); needs
            min_len >= recent.
        impressions: candidates per user, after the whole history.
        interest_rate: probability that a candidate comes from the user's interests.
        item_noise: spread of an item's vector around its category center (as a multiple
            of 1/sqrt(D) per coordinate); larger = items within a category less alike.
        relevance_scale, click_bias: the click logit is
            ``relevance_scale * long_term_relevance + click_bias``.
        seed: same arguments and seed give identical arrays.

    The defaults give 28,800 impressions (CTR ~0.31) with an oracle AUC of ~0.79, while the
    max cosine over the last 50 behaviors alone scores ~0.50.

    Returns:
        the LongHistoryLog (samples grouped by user, in time order within a user).
    """
    lo_k, hi_k = interests_per_user
    if not 1 <= lo_k <= hi_k <= n_categories:
        raise ValueError(f"interests_per_user={interests_per_user} must satisfy "
                         f"1 <= min <= max <= n_categories={n_categories}")
    if not 0 <= recent <= min_len <= max_len:
        raise ValueError(f"need 0 <= recent ({recent}) <= min_len ({min_len}) <= max_len "
                         f"({max_len}): every user needs its uninformative recent behaviors")
    if n_items < n_categories or n_users < 1 or impressions < 1:
        raise ValueError(f"need n_items ({n_items}) >= n_categories ({n_categories}), "
                         f"n_users ({n_users}) >= 1 and impressions ({impressions}) >= 1")
    if not 0.0 <= interest_rate <= 1.0:
        raise ValueError(f"interest_rate must be in [0, 1], got {interest_rate}")
    rng = np.random.default_rng(seed)
    d = latent_dim

    # Items: every category gets one item first, the rest uniformly; sorted by category so a
    # category is the contiguous id range [cat_lo[c], cat_lo[c + 1]).
    item_cat = np.sort(np.concatenate([np.arange(n_categories),
                                       rng.integers(0, n_categories, n_items - n_categories)]))
    cat_lo = np.searchsorted(item_cat, np.arange(n_categories + 1))  # [C + 1]
    center = _unit(rng.standard_normal((n_categories, d)))
    vectors = _unit(center[item_cat] + item_noise * rng.standard_normal((n_items, d)) / np.sqrt(d))
    item_vectors = np.vstack([np.zeros((1, d)), vectors]).astype(np.float32)  # [I + 1, D]
    item_category = np.concatenate([[0], item_cat + 1]).astype(np.int64)  # [I + 1]

    # Users: k distinct interest categories (first k of a random permutation), equal weight.
    n_int = rng.integers(lo_k, hi_k + 1, size=n_users)  # [U]
    perm = np.argsort(rng.random((n_users, n_categories)), axis=1)[:, :hi_k]  # [U, K]
    has = np.arange(hi_k)[None, :] < n_int[:, None]
    user_interests = np.where(has, perm + 1, 0).astype(np.int64)

    def from_interests(users: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Item indices (0-based) drawn from the users' interests: [len(users), *shape]."""
        pick = (rng.random((len(users), *shape)) * n_int[users].reshape(-1, *[1] * len(shape)))
        cat = np.take_along_axis(perm[users], pick.astype(np.int64).reshape(len(users), -1),
                                 axis=1).reshape(len(users), *shape)
        span = cat_lo[cat + 1] - cat_lo[cat]
        return cat_lo[cat] + (rng.random(cat.shape) * span).astype(np.int64)

    # Histories [U, L]: positions < len - recent from interests, the last `recent` uniform.
    hist_len = rng.integers(min_len, max_len + 1, size=n_users).astype(np.int64)
    width = int(hist_len.max())
    pos = np.arange(width)[None, :]
    old = pos < (hist_len - recent)[:, None]
    valid = pos < hist_len[:, None]
    users = np.arange(n_users)
    items = np.where(old, from_interests(users, (width,)),
                     rng.integers(0, n_items, size=(n_users, width)))
    hist_item = np.where(valid, items + 1, 0).astype(np.int64)
    # Timestamps: users start within 30 days; gaps ~ exponential (mean 1 h), at least 1 s.
    start = _EPOCH_START + rng.integers(0, 30 * 86400, size=(n_users, 1))
    gaps = 1 + rng.exponential(3600, size=(n_users, width + impressions)).astype(np.int64)
    times = start + np.cumsum(gaps, axis=1)  # [U, L + S] strictly increasing
    hist_time = np.where(valid, times[:, :width], 0).astype(np.int64)
    # Impression s of user u comes at times[u, len_u + s]: after the user's last behavior.
    s_idx = np.arange(impressions)[None, :]
    sample_time = np.take_along_axis(times, hist_len[:, None] + s_idx, axis=1)  # [U, S]

    cand = np.where(rng.random((n_users, impressions)) < interest_rate,
                    from_interests(users, (impressions,)),
                    rng.integers(0, n_items, size=(n_users, impressions)))
    sample_user = np.repeat(users + 1, impressions).astype(np.int64)
    sample_item = (cand + 1).reshape(-1).astype(np.int64)
    coin = rng.random(n_users * impressions)
    log = LongHistoryLog(
        hist_item=hist_item, hist_time=hist_time, hist_len=hist_len, recent=recent,
        sample_user=sample_user, sample_item=sample_item,
        sample_time=sample_time.reshape(-1).astype(np.int64),
        sample_index=np.tile(np.arange(impressions), n_users).astype(np.int64),
        click_prob=np.zeros(0), label=np.zeros(0, dtype=np.int8),
        item_category=item_category, item_vectors=item_vectors, user_interests=user_interests,
    )
    relevance = long_term_relevance(log, np.arange(len(sample_user)))
    click_prob = _sigmoid(relevance_scale * relevance + click_bias)
    return LongHistoryLog(**{**log.__dict__, "click_prob": click_prob,
                             "label": (coin < click_prob).astype(np.int8)})


def model_inputs(log: LongHistoryLog, rows: np.ndarray, maxlen: int) -> dict[str, np.ndarray]:
    """DeepCTR-style inputs of sample rows, histories truncated to the last maxlen behaviors.

    Args:
        log: the generated log.
        rows: [n] sample rows.
        maxlen: T, the most recent behaviors kept (oldest first, 0-padded at the end).

    Returns:
        {"user", "item_id", "cate_id": [n] int64; "hist_item_id", "hist_cate_id": [n, T]
        int64; "seq_length": [n] int64}.
    """
    if maxlen < 1:
        raise ValueError(f"maxlen must be >= 1, got {maxlen}")
    u = log.sample_user[rows] - 1
    lengths = np.minimum(log.hist_len[u], maxlen)  # [n]
    first = log.hist_len[u] - lengths  # [n] index of the oldest behavior kept
    col = first[:, None] + np.arange(maxlen)[None, :]  # [n, T]
    keep = np.arange(maxlen)[None, :] < lengths[:, None]
    width = log.hist_item.shape[1]
    hist = np.where(keep, log.hist_item[u[:, None], np.minimum(col, width - 1)], 0)
    item = log.sample_item[rows]
    return {
        "user": log.sample_user[rows].copy(),
        "item_id": item,
        "cate_id": log.item_category[item],
        "hist_item_id": hist.astype(np.int64),
        "hist_cate_id": log.item_category[hist],
        "seq_length": lengths.astype(np.int64),
    }
