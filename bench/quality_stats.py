"""How sure a GAUC difference between two models is, given one eval split: a paired bootstrap.

Seeds average out the training noise, but every seed is scored on the same eval rows, so a
small split (ml-100k next-item: 943 users, one positive and one negative each) leaves a
difference that moves with which users happen to be in it. Here users are resampled with
replacement, the same draw for both models (paired), and each draw's difference of
seed-averaged GAUC is taken: the 2.5 / 97.5 percentiles of the draws give a 95% interval.

GAUC is linear in the per-user AUCs with fixed weights (the users' impressions), so the
mean over seeds of GAUC equals the GAUC of the seed-mean per-user AUC, and a draw is one
weighted sum: counts [draws, G] x (impressions * (AUC_a - AUC_b)) [G].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dinrec.metrics import group_aucs


def seed_mean_user_aucs(y: np.ndarray, users: np.ndarray,
                        scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-user AUC averaged over seeds, and users' impressions: scores [S, n] -> [G], [G]."""
    per_seed = [group_aucs(y, row, users) for row in scores]  # [(auc [G], size [G])] * S
    # Every seed has the same users and labels, so the same sizes and the same nan
    # (one-class) users; the mean keeps those nan.
    return np.mean([a for a, _ in per_seed], axis=0), per_seed[0][1]


def paired_gauc_bootstrap(y: np.ndarray, users: np.ndarray, scores_a: np.ndarray,
                          scores_b: np.ndarray, draws: int = 2000,
                          seed: int = 0) -> dict[str, Any]:
    """GAUC(a) - GAUC(b), seed-averaged, with a 95% interval from resampling users.

    scores_a [Sa, n] and scores_b [Sb, n]: each seed's final scores of the same n eval rows.
    Returns {"diff", "lo", "hi", "p_better" (share of draws with a ahead), "users", "draws"}.
    """
    auc_a, size = seed_mean_user_aucs(y, users, scores_a)
    auc_b, _ = seed_mean_user_aucs(y, users, scores_b)
    valid = ~np.isnan(auc_a)
    weight = size[valid].astype(np.float64)  # [G] impressions of the users GAUC counts
    delta = auc_a[valid] - auc_b[valid]  # [G]
    rng = np.random.default_rng(seed)
    g = int(valid.sum())
    counts = rng.multinomial(g, np.full(g, 1.0 / g), size=draws)  # [draws, G]
    w = counts * weight  # [draws, G]
    sample = (w @ delta) / w.sum(axis=1)  # [draws]
    return {
        "diff": float(weight @ delta / weight.sum()),
        "lo": float(np.percentile(sample, 2.5)),
        "hi": float(np.percentile(sample, 97.5)),
        "p_better": float(np.mean(sample > 0)),
        "users": g,
        "draws": draws,
    }


def describe(name: str, other: str, r: dict[str, Any]) -> str:
    """One line for the report, e.g. 'din - DeepCTR-Torch: GAUC +0.0016 (95% ...)'."""
    return (f"{name} - {other}: GAUC {r['diff']:+.4f} (95% interval {r['lo']:+.4f} .. "
            f"{r['hi']:+.4f} over {r['users']} users resampled {r['draws']} times, paired; "
            f"ahead in {100 * r['p_better']:.0f}% of draws)")
