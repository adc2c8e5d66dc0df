"""The logs bench/quality.py measures on, as arrays files every framework reads the same way.

Four logs, each through dinrec's pipeline (protocol -> vocabularies -> Parquet -> numpy):

- ``rating``: ml-100k, one sample per rating, label = rating >= 4, every rated movie in the
  history (ml100k_data's protocol).
- ``next-item``: ml-100k, the DIN reference protocol (a positive next item and a sampled
  negative per position).
- ``synthetic``: dinrec's embedded synthetic impression log (the demo's data), click-log
  protocol: clicks depend on the most similar earlier click.
- ``local``: a second, independent local-activation log generated here (``local_log``): a
  click depends only on the single past behavior most similar to the candidate; every
  behavior (clicked or not) is in the history, so most of a history is noise for any one
  candidate. Its oracle AUC (scoring with the true click probabilities) is in the spec.

Besides ``train`` and ``test``, every arrays file holds ``fit`` and ``val``: the training rows
split again by time (each user's last 20% of training rows -> val), so settings are chosen on
val with the test rows never seen (the vocabulary is the training split's, which includes the
val rows' ids: a val id is known but, like a rare id, barely trained).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ml100k_data import DATA_DIR, HIST_LEN, LABEL, USER_KEY

LOGS = ("rating", "next-item", "synthetic", "local")
# Not in the default set: the rating protocol with only positively rated earlier movies in
# the history (the shipped configs/ml100k-rating.toml's data), to choose that on val.
EXTRA_LOGS = ("rating-positive",)
VAL_FRACTION = 0.2


def local_log(seed: int = 7) -> tuple[Any, float]:
    """(EventLog of impressions with clicks and timestamps, oracle test AUC).

    World: 24 categories x 4 sub-clusters of items with unit latent vectors in 16-D; each
    user has 2-4 interest sub-clusters. A user's events are impressions in time order; a
    candidate comes from an interest (60%) or from anywhere (40%). P(click) =
    sigmoid(6 * max_j cos(candidate, behavior_j) - 4.5) over the user's 30 most recent EARLIER
    impressions, clicked or not: the one behavior nearest the candidate decides.
    """
    from dinrec.data.events import EventLog
    from dinrec.metrics import auc

    rng = np.random.default_rng(seed)
    n_cat, n_sub, per_sub, dim = 24, 4, 30, 16
    n_users, window = 1500, 30
    centers = rng.normal(size=(n_cat * n_sub, dim))
    cat_of_sub = np.repeat(np.arange(n_cat), n_sub)
    # Sub-cluster centers near their category's center: related but distinct interests.
    cat_centers = rng.normal(size=(n_cat, dim))
    centers = cat_centers[cat_of_sub] + 0.8 * centers
    sub_of_item = np.repeat(np.arange(n_cat * n_sub), per_sub)
    vecs = centers[sub_of_item] + 0.5 * rng.normal(size=(sub_of_item.size, dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    n_items = vecs.shape[0]
    users, items, stamps, labels, probs = [], [], [], [], []
    for u in range(n_users):
        interests = rng.choice(n_cat * n_sub, size=rng.integers(2, 5), replace=False)
        n = int(rng.integers(30, 120))
        from_interest = rng.random(n) < 0.6
        pick_sub = interests[rng.integers(0, interests.size, size=n)]
        cand = np.where(from_interest, pick_sub * per_sub + rng.integers(0, per_sub, size=n),
                        rng.integers(0, n_items, size=n))
        cos = vecs[cand] @ vecs[cand].T  # [n, n]
        p = np.empty(n)
        for t in range(n):
            lo = max(0, t - window)
            best = cos[t, lo:t].max() if t > lo else float(vecs[cand[t]] @ _unit(
                centers[interests].mean(axis=0)))
            p[t] = 1.0 / (1.0 + np.exp(-(6.0 * best - 4.5)))
        users.append(np.full(n, u))
        items.append(cand)
        stamps.append(1_600_000_000 + np.arange(n) * 60)
        labels.append((rng.random(n) < p).astype(np.int8))
        probs.append(p)
    user = np.concatenate(users)
    item = np.concatenate(items)
    label = np.concatenate(labels)
    p_all = np.concatenate(probs)
    # Oracle AUC on the rows the click-log protocol puts in test (each user's last 20%).
    from dinrec.data.splits import last_fraction_mask

    test = last_fraction_mask(user, 0.2)
    log = EventLog(
        user=np.array([f"u{x}" for x in user]), item=np.array([f"i{x}" for x in item]),
        category=np.array([f"c{x}" for x in cat_of_sub[sub_of_item[item]]]),
        timestamp=np.concatenate(stamps).astype(np.int64), label=label, source="local",
    )
    return log, float(auc(label[test], p_all[test]))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def _samples(name: str) -> tuple[Any, dict[str, Any]]:
    """(Samples, extra spec fields) of one log."""
    from dinrec.data.protocols import build_samples
    from dinrec.data.readers import read_log
    from dinrec.data.synthetic import generate_log

    if name in ("rating", "next-item"):
        return build_samples(name, read_log("recbole", DATA_DIR)), {}
    if name == "rating-positive":
        return build_samples("rating", read_log("recbole", DATA_DIR), history="positive"), {}
    if name == "synthetic":
        # The demo's log; histories are the earlier clicks (the protocol's default).
        return build_samples("click-log", generate_log(seed=0)), {}
    if name == "local":
        log, oracle = local_log()
        # Every impression is a behavior: the history holds clicked and unclicked items.
        return build_samples("click-log", log, behaviors=log), {"oracle_test_auc": oracle}
    raise ValueError(f"unknown log {name!r}; valid: {LOGS}")


def build_log_arrays(name: str, out: Path, embedding_dim: int = 16) -> dict[str, Any]:
    """Write `out` (.npz) with train_/test_/fit_/val_ columns of one log; return its spec."""
    from dinrec.data.dataset import feature_columns, load_dataset, to_numpy, write_dataset
    from dinrec.data.splits import last_fraction_mask
    from dinrec.data.vocabulary import Vocabularies
    from dinrec.feature_column import SparseFeat, VarLenSparseFeat

    samples, extra = _samples(name)
    vocabs = Vocabularies.fit(samples.fit_values)
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, samples, vocabs)
        ds = load_dataset(tmp)
        columns, _ = feature_columns(ds, embedding_dim=embedding_dim)
        arrays: dict[str, np.ndarray] = {}
        for split in ("train", "test"):
            x, y = to_numpy(ds.read(split), [*(c.name for c in columns), USER_KEY, HIST_LEN])
            arrays.update({f"{split}_{k}": v for k, v in x.items()})
            arrays[f"{split}_{LABEL}"] = y
    users = arrays[f"train_{USER_KEY}"]
    runs = np.count_nonzero(np.r_[True, users[1:] != users[:-1]])
    if runs != np.unique(users).size:  # last_fraction_mask needs one run per user
        raise RuntimeError(f"{name}: training rows are not grouped by user")
    val = last_fraction_mask(users, VAL_FRACTION)
    for key in [k for k in arrays if k.startswith("train_")]:
        col = key[len("train_"):]
        arrays[f"fit_{col}"] = arrays[key][~val]
        arrays[f"val_{col}"] = arrays[key][val]
    np.savez(out, **arrays)
    return {
        "log": name,
        "sparse": {c.name: c.vocabulary_size for c in columns if isinstance(c, SparseFeat)},
        "history": {c.name: (c.embedding_name, c.vocabulary_size)
                    for c in columns if isinstance(c, VarLenSparseFeat)},
        "maxlen": ds.meta.maxlen,
        "rows": {s: int(arrays[f"{s}_{LABEL}"].shape[0]) for s in ("train", "test", "fit", "val")},
        **extra,
    }
