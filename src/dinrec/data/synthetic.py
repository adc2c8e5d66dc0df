"""Synthetic e-commerce impression log: the embedded default data that `dinrec demo` trains on.

The world, in the order it is drawn:

* Categories have latent centers; each category has a few sub-clusters whose centers lie near
  it; each item belongs to one sub-cluster and has a unit latent vector near that center. Item
  popularity is Zipf-like over a random ranking of the items.
* Each user has a few interests (sub-clusters in distinct categories) with Dirichlet weights,
  and a profile (gender, age bucket) weakly related to the categories of those interests.
* Each user sees a sequence of impressions at strictly increasing timestamps. A candidate comes
  from one of the user's interests (its sub-cluster, else anywhere in its category) or, with
  probability ``1 - interest_rate``, from global popularity.
* The click probability of a candidate is
  ``sigmoid(relevance_scale * max_j cos(v_candidate, v_j) + popularity_weight * pop_z + bias)``
  where j runs over the user's most recent ``history_window`` EARLIER CLICKS. Only the single
  most relevant past click matters, which is what attention pooling (DIN) can pick out and sum
  pooling (the paper's Base Model) blurs when a user has several interests. Before a user's
  first click, the candidate's cosine to the user's own interest centers stands in for it.

The user's behavior history for a sample is therefore the user's earlier clicked events
(label 1), the most recent ones kept; build samples with ``maxlen >= history_window`` to expose
all of the signal. Timestamps are strictly increasing per user, so "earlier" is unambiguous.

Example:
    >>> log = generate_log(n_users=50, n_items=200, n_categories=8, seed=1)
    >>> sorted(set(log.label.tolist()))
    [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinrec.data.events import EventLog

AGE_BUCKETS = ("18-24", "25-34", "35-44", "45-54", "55+")
GENDERS = ("F", "M")
# 2020-09-13; any fixed origin works, a realistic one keeps logs readable.
_EPOCH_START = 1_600_000_000


@dataclass(frozen=True)
class SyntheticTruth:
    """The latent world behind a generated log, for plots and behavior tests.

    Args:
        item_ids: [I] raw item ids (str) as they appear in the log; index i is item i below.
        item_vectors: [I, D] float32 unit latent vectors.
        item_category: [I] int64 category index (raw category id is ``f"c{k}"``).
        item_cluster: [I] int64 global sub-cluster index (category * clusters_per_category + s).
        item_popularity: [I] float64 sampling weights, summing to 1.
        user_ids: [U] raw user ids (str); index u is user u below.
        user_interests: [U, K] int64 sub-cluster indices of each user's interests, -1 padded.
        user_interest_weights: [U, K] float64 interest weights, 0 where padded.
    """

    item_ids: np.ndarray
    item_vectors: np.ndarray
    item_category: np.ndarray
    item_cluster: np.ndarray
    item_popularity: np.ndarray
    user_ids: np.ndarray
    user_interests: np.ndarray
    user_interest_weights: np.ndarray

    def item_index(self, raw_items: np.ndarray) -> np.ndarray:
        """Item indices [N] int64 of raw item ids [N]; raises KeyError on an unknown id."""
        order = np.argsort(self.item_ids)
        names = self.item_ids[order]
        pos = np.minimum(np.searchsorted(names, raw_items), len(names) - 1)
        missing = names[pos] != raw_items
        if np.any(missing):
            raise KeyError(f"unknown item id {np.asarray(raw_items)[missing][0]!r}")
        return order[pos].astype(np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _sample_in_groups(
    rng: np.random.Generator, cum: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Indices into the sorted item order drawn by weight within contiguous ranges [lo, hi).

    Args:
        cum: [I + 1] cumulative weights of the sorted items, starting at 0.
        lo, hi: [...] item-range bounds per draw (non-empty ranges).
    """
    u = cum[lo] + rng.random(lo.shape) * (cum[hi] - cum[lo])
    # side="right" maps u to the item whose cumulative interval contains it; the clip guards
    # against u landing exactly on cum[hi] through rounding.
    return np.clip(np.searchsorted(cum, u, side="right") - 1, lo, hi - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_log_with_truth(
    *,
    n_users: int = 2000,
    n_items: int = 4000,
    n_categories: int = 40,
    clusters_per_category: int = 3,
    interests_per_user: tuple[int, int] = (2, 5),
    mean_impressions: float = 75.0,
    latent_dim: int = 32,
    zipf_exponent: float = 0.9,
    interest_rate: float = 0.7,
    relevance_scale: float = 7.0,
    popularity_weight: float = 0.25,
    click_bias: float = -5.0,
    history_window: int = 50,
    seed: int = 0,
    user_seed: int | None = None,
    first_user: int = 0,
) -> tuple[EventLog, SyntheticTruth]:
    """A synthetic impression log with click labels, and the latent world that generated it.

    Args:
        n_users, n_items, n_categories: sizes of the world; needs n_items >= n_categories *
            clusters_per_category so that every sub-cluster has an item.
        clusters_per_category: sub-clusters (fine-grained interests) per category.
        interests_per_user: (min, max) interests per user, drawn uniformly, in distinct
            categories.
        mean_impressions: mean impressions per user (log-normal, at least 10, at most 4x).
        latent_dim: dimension D of the latent item vectors.
        zipf_exponent: item popularity is proportional to rank ** -zipf_exponent.
        interest_rate: probability that a candidate comes from one of the user's interests.
        relevance_scale, popularity_weight, click_bias: the click logit is
            ``relevance_scale * max_cos + popularity_weight * pop_z + click_bias``; before the
            user's first click, max_cos is taken over the user's interest centers instead.
        history_window: the click model looks at this many most recent earlier clicks.
        seed: same arguments and seed give identical arrays.
        user_seed: draw the users from their own stream (seed, user_seed) after the world
            (items, categories, popularity), which `seed` alone fixes: logs with one seed
            and different user seeds are disjoint user chunks of one world. None: one
            stream for both (the default logs).
        first_user: raw user ids start at u{first_user} (chunks: distinct ids).

    Returns:
        (log, truth): the EventLog, sorted by user then time, with label int8 [N] and profile
        columns "gender" and "age"; and the SyntheticTruth.
    """
    lo_k, hi_k = interests_per_user
    n_clusters = n_categories * clusters_per_category
    if not 1 <= lo_k <= hi_k <= n_categories:
        raise ValueError(f"interests_per_user={interests_per_user} must satisfy "
                         f"1 <= min <= max <= n_categories={n_categories}")
    if n_items < n_clusters:
        raise ValueError(f"n_items={n_items} < n_categories * clusters_per_category="
                         f"{n_clusters}: every sub-cluster needs an item")
    if n_users < 1 or history_window < 1 or mean_impressions < 1:
        raise ValueError("n_users, history_window and mean_impressions must be positive")
    rng = np.random.default_rng(seed)
    d = latent_dim

    # Latent geometry: sibling sub-clusters have cosine ~0.5, items in one sub-cluster ~0.85,
    # unrelated items ~0 +- 1/sqrt(D).
    cat_center = _unit(rng.standard_normal((n_categories, d)))
    sub_center = _unit(
        np.repeat(cat_center, clusters_per_category, axis=0)
        + rng.standard_normal((n_clusters, d)) / np.sqrt(d)
    )  # [C, D], cluster c belongs to category c // clusters_per_category
    # Every cluster gets one item first; the rest go to categories of Zipf-ish size.
    cat_weight = 1.0 / np.arange(1, n_categories + 1) ** 0.5
    extra_cat = rng.choice(n_categories, size=n_items - n_clusters, p=cat_weight / cat_weight.sum())
    extra_cluster = extra_cat * clusters_per_category + rng.integers(
        0, clusters_per_category, size=len(extra_cat))
    item_cluster = np.concatenate([np.arange(n_clusters), extra_cluster])
    item_cluster = item_cluster[rng.permutation(n_items)].astype(np.int64)
    item_category = item_cluster // clusters_per_category
    item_vectors = _unit(
        sub_center[item_cluster] + 0.42 * rng.standard_normal((n_items, d)) / np.sqrt(d)
    ).astype(np.float32)  # [I, D]
    rank = rng.permutation(n_items) + 1
    popularity = rank.astype(np.float64) ** -zipf_exponent
    popularity /= popularity.sum()
    log_pop = np.log(popularity)
    pop_z = (log_pop - log_pop.mean()) / log_pop.std()

    # Items sorted by cluster so that a category and a cluster are each a contiguous range.
    by_cluster = np.argsort(item_cluster, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(popularity[by_cluster])])  # [I + 1]
    cluster_lo = np.searchsorted(item_cluster[by_cluster], np.arange(n_clusters))
    cluster_hi = np.searchsorted(item_cluster[by_cluster], np.arange(n_clusters), side="right")
    cat_lo = cluster_lo[::clusters_per_category]
    cat_hi = cluster_hi[clusters_per_category - 1 :: clusters_per_category]

    if user_seed is not None:
        rng = np.random.default_rng([seed, user_seed])
    # Users: interests in distinct categories (Gumbel top-k picks popular categories more often).
    k_max = hi_k
    n_interests = rng.integers(lo_k, hi_k + 1, size=n_users)  # [U]
    keys = np.log(cat_weight) + rng.gumbel(size=(n_users, n_categories))
    user_cats = np.argsort(-keys, axis=1)[:, :k_max]  # [U, K]
    user_clusters = user_cats * clusters_per_category + rng.integers(
        0, clusters_per_category, size=(n_users, k_max))
    has = np.arange(k_max)[None, :] < n_interests[:, None]  # [U, K]
    weights = np.where(has, rng.gamma(1.0, size=(n_users, k_max)), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    user_interests = np.where(has, user_clusters, -1).astype(np.int64)

    # Profiles lean with the categories of a user's interests, weakly.
    gender_lean = rng.standard_normal(n_categories)
    age_pref = 0.8 * rng.standard_normal((n_categories, len(AGE_BUCKETS)))
    p_female = _sigmoid((weights * gender_lean[user_cats]).sum(axis=1))
    gender = np.where(rng.random(n_users) < p_female, 0, 1)
    age_logit = (weights[:, :, None] * age_pref[user_cats]).sum(axis=1)  # [U, A]
    age = np.argmax(age_logit + rng.gumbel(size=age_logit.shape), axis=1)

    # Impression counts; users sorted by count (descending) so the active users at step t are
    # a prefix, then relabelled at random below.
    sigma = 0.6
    counts = np.exp(np.log(mean_impressions) - sigma**2 / 2 + sigma * rng.standard_normal(n_users))
    counts = np.clip(np.round(counts), 10, 4 * mean_impressions).astype(np.int64)
    counts = np.sort(counts)[::-1]
    steps = int(counts[0])
    active = np.searchsorted(-counts, -np.arange(steps), side="right")  # users with count > t

    # Candidates [U, L]: interest j by weight, then its cluster (p=0.6) or its category (siblings
    # are where max pooling and mean pooling disagree most); or global popularity.
    cumw = np.cumsum(weights, axis=1)
    pick = np.minimum((rng.random((n_users, steps, 1)) > cumw[:, None, :]).sum(-1), k_max - 1)
    cluster = np.take_along_axis(user_clusters, pick, axis=1)  # [U, L]
    in_cluster = rng.random((n_users, steps)) < 0.6
    lo = np.where(in_cluster, cluster_lo[cluster], cat_lo[cluster // clusters_per_category])
    hi = np.where(in_cluster, cluster_hi[cluster], cat_hi[cluster // clusters_per_category])
    from_interest = by_cluster[_sample_in_groups(rng, cum, lo, hi)]
    global_draw = rng.choice(n_items, size=(n_users, steps), p=popularity)
    cand = np.where(rng.random((n_users, steps)) < interest_rate, from_interest, global_draw)

    # Clicks, step by step: each depends on the clicks before it. Ring buffer of the most recent
    # history_window clicked vectors per user.
    window = history_window
    interest_center = sub_center[user_clusters].astype(np.float32)  # [U, K, D]
    ring = np.zeros((n_users, window, d), dtype=np.float32)  # [U, W, D]
    n_clicks = np.zeros(n_users, dtype=np.int64)
    label = np.zeros((n_users, steps), dtype=np.int8)
    coin = rng.random((n_users, steps))
    slots = np.arange(window)
    for t in range(steps):
        k = int(active[t])
        items = cand[:k, t]
        vec = item_vectors[items]  # [k, D]
        sims = np.matmul(ring[:k], vec[:, :, None])[:, :, 0]  # [k, W]
        seen = slots[None, :] < n_clicks[:k, None]
        best = np.where(seen, sims, -np.inf).max(axis=1)
        # Before a user's first click, relevance is to the user's own interest centers:
        # without it, a cold user would click almost nothing and never build a history.
        cold = np.where(has[:k], np.matmul(interest_center[:k], vec[:, :, None])[:, :, 0],
                        -np.inf).max(axis=1)
        best = np.where(n_clicks[:k] > 0, best, cold)
        logit = relevance_scale * best + popularity_weight * pop_z[items] + click_bias
        clicked = coin[:k, t] < _sigmoid(logit)
        label[:k, t] = clicked
        who = np.flatnonzero(clicked)
        ring[who, n_clicks[who] % window] = vec[who]
        n_clicks[who] += 1

    # Timestamps: users start within the first 30 days; gaps ~ exponential, mean 3 hours.
    start = _EPOCH_START + rng.integers(0, 30 * 86400, size=(n_users, 1))
    gaps = 1 + rng.exponential(3 * 3600, size=(n_users, steps)).astype(np.int64)
    timestamp = start + np.cumsum(gaps, axis=1) - gaps[:, :1]  # [U, L], strictly increasing

    valid = np.arange(steps)[None, :] < counts[:, None]  # [U, L]
    user_rows = np.broadcast_to(np.arange(n_users)[:, None], valid.shape)[valid]
    relabel = rng.permutation(n_users)
    user_ids = np.array([f"u{i}" for i in range(first_user, first_user + n_users)])
    item_ids = np.array([f"i{i}" for i in range(n_items)])
    cat_ids = np.array([f"c{i}" for i in range(n_categories)])
    # Sorting by the new user label keeps each user's events contiguous and in time order.
    order = np.argsort(relabel[user_rows], kind="stable")
    user_rows = user_rows[order]
    item_rows = cand[valid][order]

    log = EventLog(
        user=user_ids[relabel[user_rows]],
        item=item_ids[item_rows],
        category=cat_ids[item_category[item_rows]],
        timestamp=timestamp[valid][order].astype(np.int64),
        label=label[valid][order],
        profile={
            "gender": np.array(GENDERS)[gender[user_rows]],
            "age": np.array(AGE_BUCKETS)[age[user_rows]],
        },
        source="synthetic",
    )
    inverse = np.argsort(relabel)  # new label -> internal user row
    truth = SyntheticTruth(
        item_ids=item_ids, item_vectors=item_vectors, item_category=item_category,
        item_cluster=item_cluster, item_popularity=popularity,
        user_ids=user_ids, user_interests=user_interests[inverse],
        user_interest_weights=weights[inverse],
    )
    return log, truth


def generate_log(
    *,
    n_users: int = 2000,
    n_items: int = 4000,
    n_categories: int = 40,
    clusters_per_category: int = 3,
    interests_per_user: tuple[int, int] = (2, 5),
    mean_impressions: float = 75.0,
    latent_dim: int = 32,
    zipf_exponent: float = 0.9,
    interest_rate: float = 0.7,
    relevance_scale: float = 7.0,
    popularity_weight: float = 0.25,
    click_bias: float = -5.0,
    history_window: int = 50,
    seed: int = 0,
    user_seed: int | None = None,
    first_user: int = 0,
) -> EventLog:
    """A synthetic impression log with click labels; args as ``generate_log_with_truth``.

    The defaults give about 150k impressions (2000 users, 4000 items, 40 categories) in well
    under 2 s: a DIN demo that trains in about a minute on two cores.
    """
    log, _ = generate_log_with_truth(
        n_users=n_users, n_items=n_items, n_categories=n_categories,
        clusters_per_category=clusters_per_category, interests_per_user=interests_per_user,
        mean_impressions=mean_impressions, latent_dim=latent_dim, zipf_exponent=zipf_exponent,
        interest_rate=interest_rate, relevance_scale=relevance_scale,
        popularity_weight=popularity_weight, click_bias=click_bias,
        history_window=history_window, seed=seed, user_seed=user_seed, first_user=first_user,
    )
    return log


def relevance_signals(
    log: EventLog, truth: SyntheticTruth, maxlen: int = 50, chunk_rows: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Oracle max- and mean-pooled cosine of each event's item against the user's history.

    The history of an event is the user's up-to-``maxlen`` most recent earlier clicks, as a
    sample builder with explicit click labels builds it. Both signals are 0 where it is empty.
    The max signal is what attention pooling can approach; the mean is what sum pooling sees.

    Args:
        log: [N] events with labels (e.g. from ``generate_log``).
        truth: the latent world that generated it.
        maxlen: history length T.
        chunk_rows: events per vectorised chunk, bounding memory to chunk_rows * T * D floats.

    Returns:
        (max_cos, mean_cos): two float32 arrays [N], in the log's row order.
    """
    if log.label is None:
        raise ValueError("relevance_signals needs a log with click labels")
    order = np.lexsort((log.timestamp, log.user))
    _, user_code = np.unique(log.user[order], return_inverse=True)
    item = truth.item_index(log.item[order])
    clicked = log.label[order].astype(np.int64)
    before = np.cumsum(clicked) - clicked  # [N] clicks before each event, all users
    first = np.searchsorted(user_code, user_code)  # [N] position of the user's first event
    user_floor = before[first]  # the user's clicks start at this index of click_pos
    click_item = item[np.flatnonzero(clicked)]  # items of all clicks, grouped by user in time
    out_max = np.zeros(len(order), dtype=np.float32)
    out_mean = np.zeros(len(order), dtype=np.float32)
    for a in range(0, len(order), chunk_rows):
        b = min(a + chunk_rows, len(order))
        g = before[a:b, None] - maxlen + np.arange(maxlen)[None, :]  # [n, T] click indices
        mask = g >= user_floor[a:b, None]
        hist = truth.item_vectors[click_item[np.maximum(g, 0)]]  # [n, T, D]
        sims = np.matmul(hist, truth.item_vectors[item[a:b], :, None])[:, :, 0]  # [n, T]
        n_hist = mask.sum(axis=1)
        best = np.where(mask, sims, -np.inf).max(axis=1)
        out_max[a:b] = np.where(n_hist > 0, best, 0.0)
        out_mean[a:b] = np.where(mask, sims, 0.0).sum(axis=1) / np.maximum(n_hist, 1)
    result_max = np.empty_like(out_max)
    result_mean = np.empty_like(out_mean)
    result_max[order] = out_max
    result_mean[order] = out_mean
    return result_max, result_mean
