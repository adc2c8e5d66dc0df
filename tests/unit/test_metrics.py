"""Tests for dinrec.metrics: exact values on hand-built inputs, brute-force cross-checks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from dinrec.metrics import (
    Metric,
    accuracy,
    auc,
    compute_metrics,
    gauc,
    group_aucs,
    logloss,
    rela_impr,
    resolve_metrics,
)


def brute_force_auc(y: np.ndarray, s: np.ndarray) -> float:
    """AUC as the fraction of (positive, negative) pairs ranked right, ties counting 1/2."""
    pos = s[y == 1]
    neg = s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def brute_force_gauc(y: np.ndarray, s: np.ndarray, g: np.ndarray) -> float:
    """GAUC by a plain loop over groups, the definition written out."""
    num = 0.0
    den = 0
    for key in np.unique(g):
        rows = g == key
        a = brute_force_auc(y[rows], s[rows])
        if not math.isnan(a):
            num += rows.sum() * a
            den += int(rows.sum())
    return num / den if den else float("nan")


# --- auc ---------------------------------------------------------------------------------


def test_auc_with_ties_matches_hand_count() -> None:
    # positives 0.8, 0.4, 0.4 against negatives 0.4, 0.2, 0.8:
    # 0.8 -> 1 + 1 + 1/2; each 0.4 -> 1/2 + 1 + 0; total 5.5 of 9 pairs.
    y = [1, 0, 1, 0, 1, 0]
    s = [0.8, 0.4, 0.4, 0.2, 0.4, 0.8]
    assert auc(y, s) == pytest.approx(11 / 18, abs=1e-15)


def test_auc_perfect_and_reversed() -> None:
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0


def test_auc_all_scores_tied_is_one_half() -> None:
    assert auc([0, 1, 1, 0, 1], [0.3] * 5) == 0.5


def test_auc_matches_brute_force_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 300))
        y = rng.integers(0, 2, n)
        s = rng.integers(0, 10, n) / 10.0  # few distinct values: many ties
        assert auc(y, s) == pytest.approx(brute_force_auc(y, s), abs=1e-12)


def test_auc_accepts_torch_tensors_lists_and_column_vectors() -> None:
    y = np.array([1, 0, 1, 0, 1, 0])
    s = np.array([0.8, 0.4, 0.4, 0.2, 0.4, 0.8], dtype=np.float32)
    expected = 11 / 18
    assert auc(torch.tensor(y).float(), torch.tensor(s)) == pytest.approx(expected)
    assert auc(y.tolist(), s.tolist()) == pytest.approx(expected)
    assert auc(y[:, None], s[:, None]) == pytest.approx(expected)
    assert auc(y.astype(bool), torch.tensor(s).to(torch.bfloat16)) == pytest.approx(expected)


def test_auc_single_class_is_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(auc([1, 1, 1], [0.1, 0.5, 0.9]))
        assert math.isnan(auc([0, 0], [0.1, 0.5]))
        assert math.isnan(auc([], []))


def test_auc_rejects_labels_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only 0 and 1"):
        auc([0.0, 0.5, 1.0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only 0 and 1"):
        auc([-1, 1], [0.1, 0.2])


def test_auc_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="length mismatch: y_true has 3, y_score has 2"):
        auc([0, 1, 1], [0.1, 0.2])


def test_auc_rejects_nan_scores_and_bad_shape() -> None:
    with pytest.raises(ValueError, match="NaN"):
        auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match=r"shape \[N\] or \[N, 1\]"):
        auc(np.zeros((2, 2)), np.zeros((2, 2)))


# --- gauc --------------------------------------------------------------------------------


def test_gauc_weights_groups_by_impressions() -> None:
    # group a: 2 rows, AUC 1. group b: 4 rows, positives 0.2, 0.6 vs negatives 0.5, 0.7 ->
    # 1 of 4 pairs right, AUC 1/4. group c: one class, skipped. (2*1 + 4*1/4) / 6 = 1/2,
    # where an unweighted mean would give 5/8.
    y = [1, 0, 1, 0, 0, 1, 1, 1, 1]
    s = [0.9, 0.1, 0.2, 0.5, 0.7, 0.6, 0.3, 0.3, 0.9]
    g = ["a", "a", "b", "b", "b", "b", "c", "c", "c"]
    assert gauc(y, s, g) == pytest.approx(1 / 2, abs=1e-15)


def test_group_aucs_are_the_terms_gauc_averages() -> None:
    # The groups of the test above: a -> AUC 1 (2 rows), b -> 1/4 (4 rows), c -> one class.
    y = [1, 0, 1, 0, 0, 1, 1, 1, 1]
    s = [0.9, 0.1, 0.2, 0.5, 0.7, 0.6, 0.3, 0.3, 0.9]
    g = ["a", "a", "b", "b", "b", "b", "c", "c", "c"]
    per_group, size = group_aucs(y, s, g)
    assert per_group[:2].tolist() == [1.0, 0.25] and math.isnan(per_group[2])
    assert size.tolist() == [2, 4, 3]
    empty, no_rows = group_aucs([], [], [])
    assert empty.size == 0 and no_rows.size == 0


def test_gauc_matches_brute_force_with_ties_and_single_class_groups() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        n = int(rng.integers(50, 500))
        g = rng.integers(0, 40, n)
        # Some groups all-positive or all-negative, the rest mixed.
        p_click = rng.choice([0.0, 0.3, 1.0], size=40, p=[0.15, 0.7, 0.15])[g]
        y = (rng.random(n) < p_click).astype(np.int64)
        s = rng.integers(0, 6, n) / 5.0
        assert gauc(y, s, g) == pytest.approx(brute_force_gauc(y, s, g), abs=1e-12)


def test_gauc_string_and_int_groups_agree() -> None:
    rng = np.random.default_rng(2)
    g = rng.integers(0, 30, 400)
    y = rng.integers(0, 2, 400)
    s = rng.random(400)
    as_str = np.array([f"user{k}" for k in g])
    as_obj = as_str.astype(object)
    expected = gauc(y, s, g)
    assert gauc(y, s, as_str) == pytest.approx(expected, abs=1e-15)
    assert gauc(y, s, as_obj) == pytest.approx(expected, abs=1e-15)
    assert gauc(torch.tensor(y), torch.tensor(s), torch.tensor(g)) == pytest.approx(expected)


def test_gauc_ties_do_not_cross_group_boundaries() -> None:
    # Same score in two groups: each group's AUC must only see its own ties.
    y = [0, 1, 0, 1]
    s = [0.5, 0.5, 0.5, 0.9]
    g = [1, 1, 2, 2]
    assert gauc(y, s, g) == pytest.approx((2 * 0.5 + 2 * 1.0) / 4, abs=1e-15)


def test_gauc_one_group_equals_auc() -> None:
    y = [1, 0, 1, 0, 1, 0]
    s = [0.8, 0.4, 0.4, 0.2, 0.4, 0.8]
    assert gauc(y, s, [7] * 6) == auc(y, s)


def test_gauc_no_mixed_group_is_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(gauc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], ["a", "a", "b", "b"]))
        assert math.isnan(gauc([], [], []))


def test_gauc_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="groups has 2"):
        gauc([0, 1, 1], [0.1, 0.2, 0.3], [1, 2])


# --- logloss, accuracy, rela_impr --------------------------------------------------------


def test_logloss_exact_value() -> None:
    # -(ln 0.8 + ln 0.5 + ln 0.9) / 3
    expected = -(math.log(0.8) + math.log(0.5) + math.log(0.9)) / 3
    assert logloss([1, 0, 0], [0.8, 0.5, 0.1]) == pytest.approx(expected, abs=1e-15)


def test_logloss_clips_certain_wrong_predictions() -> None:
    assert logloss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert math.isfinite(logloss([1], [0.0], eps=1e-15))


def test_accuracy_uses_strict_threshold() -> None:
    # 0.5 is not above 0.5, so it predicts 0: rows 1, 2 and 4 are right.
    assert accuracy([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.2]) == 0.75
    assert accuracy([1, 0], [0.3, 0.1], threshold=0.2) == 1.0


def test_rela_impr_exact_value() -> None:
    # (0.1 / 0.08 - 1) * 100 = 25
    assert rela_impr(0.6, 0.58) == pytest.approx(25.0, abs=1e-9)
    assert rela_impr(0.58, 0.58) == 0.0


def test_rela_impr_rejects_base_at_or_below_random() -> None:
    with pytest.raises(ValueError, match=r"auc_base > 0\.5"):
        rela_impr(0.7, 0.5)


# --- registry ----------------------------------------------------------------------------


def test_resolve_metrics_keeps_the_given_alias() -> None:
    metrics = resolve_metrics(["binary_crossentropy", "auc", "acc", "gauc"])
    assert [m.name for m in metrics] == ["binary_crossentropy", "auc", "acc", "gauc"]
    assert metrics[0].fn is logloss and not metrics[0].higher_is_better
    assert metrics[2].fn is accuracy
    assert [m.needs_groups for m in metrics] == [False, False, False, True]
    assert all(isinstance(m, Metric) for m in metrics)


def test_resolve_metrics_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        resolve_metrics(["auc", "mse"])
    message = str(info.value)
    assert "'mse'" in message
    for valid in ("acc", "accuracy", "auc", "binary_crossentropy", "gauc", "logloss"):
        assert valid in message


def test_resolve_metrics_rejects_duplicates_and_aliases_of_one_metric() -> None:
    with pytest.raises(ValueError, match="duplicate metric: 'auc' twice"):
        resolve_metrics(["auc", "auc"])
    with pytest.raises(ValueError, match="'logloss' and 'binary_crossentropy'"):
        resolve_metrics(["logloss", "binary_crossentropy"])


def test_resolve_metrics_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="list of names"):
        resolve_metrics("auc")


def test_compute_metrics_returns_values_under_given_names() -> None:
    y = [1, 0, 1, 0]
    p = torch.tensor([[0.9], [0.5], [0.5], [0.2]])
    out = compute_metrics(
        resolve_metrics(["binary_crossentropy", "auc", "gauc", "acc"]), y, p, groups=[1, 2, 2, 1]
    )
    assert list(out) == ["binary_crossentropy", "auc", "gauc", "acc"]
    assert out["binary_crossentropy"] == pytest.approx(
        -(math.log(0.9) + 2 * math.log(0.5) + math.log(0.8)) / 4, rel=1e-6
    )
    assert out["auc"] == pytest.approx(7 / 8)  # 0.5 vs 0.5 ties: 3.5 of 4 pairs
    assert out["gauc"] == pytest.approx(0.75)  # group 1 (0.9 vs 0.2): AUC 1; group 2 (tie): 1/2
    assert out["acc"] == 0.75


def test_compute_metrics_gauc_without_groups_says_it_needs_a_group_column() -> None:
    with pytest.raises(ValueError, match="'gauc' needs a group column"):
        compute_metrics(resolve_metrics(["auc", "gauc"]), [0, 1], [0.1, 0.9])


def test_compute_metrics_single_class_epoch_gives_nan_quietly() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_metrics(resolve_metrics(["logloss", "auc"]), [1, 1], [0.7, 0.8])
    assert math.isnan(out["auc"])
    assert math.isfinite(out["logloss"])
