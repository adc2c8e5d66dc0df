"""Evaluation metrics for click-through models: AUC, GAUC, log loss, accuracy, RelaImpr.

Every metric is computed once over a whole epoch's predictions, never averaged over batches,
so a metric that is undefined for the data (AUC with one class) returns ``nan`` quietly
instead of raising: a small validation split or a filtered slice must not crash training.

Inputs may be numpy arrays, lists or torch tensors of shape ``[N]`` or ``[N, 1]``.

Example:
    >>> from dinrec.metrics import auc, gauc, resolve_metrics, compute_metrics
    >>> auc([0, 1, 1], [0.2, 0.9, 0.2])
    0.75
    >>> gauc([0, 1, 0, 1], [0.1, 0.9, 0.8, 0.3], groups=["u1", "u1", "u2", "u2"])
    0.5
    >>> compute_metrics(resolve_metrics(["logloss", "auc"]), [0, 1], [0.5, 0.5])
    {'logloss': 0.6931471805599453, 'auc': 0.5}
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Metric",
    "accuracy",
    "accuracy_terms",
    "auc",
    "compute_metrics",
    "gauc",
    "group_aucs",
    "logloss",
    "logloss_terms",
    "rela_impr",
    "resolve_metrics",
]


def _as_1d(x: Any, what: str) -> np.ndarray:
    """Convert a list, numpy array or torch tensor of shape [N] or [N, 1] to a 1-D array."""
    # A tensor exists only if torch was imported, so metrics never pay torch's import time
    # (bench scripts, offline evaluation of saved scores).
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        # numpy has no bfloat16 (half is widened alike); widening keeps every value and tie.
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        arr = t.numpy()
    else:
        arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{what} must have shape [N] or [N, 1], got {tuple(arr.shape)}")
    return arr


def _check_lengths(**arrays: np.ndarray) -> int:
    """Return the common length of the named arrays; ValueError listing them if they differ."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"length mismatch: {listed}")
    return next(iter(lengths.values()))


def _binary_labels(y_true: Any) -> np.ndarray:
    """Labels as a float64 [N] array of 0.0/1.0; ValueError if any label is not 0 or 1."""
    y = _as_1d(y_true, "y_true")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"y_true must be numeric 0/1 labels, got dtype {y.dtype}")
    y = y.astype(np.float64, copy=False)
    bad = (y != 0.0) & (y != 1.0)
    if bad.any():
        examples = np.unique(y[bad])[:5].tolist()
        raise ValueError(
            f"y_true must contain only 0 and 1; found {int(bad.sum())} other value(s), "
            f"e.g. {examples}"
        )
    return y


def _scores(y_score: Any, what: str) -> np.ndarray:
    """Scores as a float64 [N] array; ValueError on NaN, which has no place in a ranking."""
    s = _as_1d(y_score, what)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    n_nan = int(np.isnan(s).sum())
    if n_nan:
        raise ValueError(f"{what} contains {n_nan} NaN value(s)")
    return s


def _group_keys(groups: Any) -> np.ndarray:
    """Groups as a sortable [N] key array: integers as they are, anything else as int codes."""
    g = _as_1d(groups, "groups")
    if g.dtype.kind in "biu":
        return g
    # Strings, objects and floats become dense int codes: one sort of the raw values, then
    # the (stable) group sort compares integers only, which measured faster than sorting
    # strings there. np.unique also merges NaNs that `!=` between neighbours would split.
    _, codes = np.unique(g, return_inverse=True)
    return codes.reshape(-1)


def _per_group_auc(
    y: np.ndarray, score: np.ndarray, keys: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """AUC of every group by the rank-sum (Mann–Whitney) formula, ties given average ranks.

    Rows are sorted by (group, score); tie runs and group boundaries are then found by
    comparing neighbours and summed with np.add.reduceat, so the cost is O(N log N) whatever
    the number of groups, with no Python loop over groups.

    Args:
        y: [N] float64 labels in {0, 1}, N > 0.
        score: [N] float64 scores without NaN.
        keys: [N] sortable group keys, or None for a single group.

    Returns:
        (auc, size): [G] AUC per group in key order (nan where the group has one class) and
        [G] number of rows per group.
    """
    n = y.size
    order = np.argsort(score)
    new_group = np.zeros(n, dtype=bool)
    if keys is not None:
        # A stable sort by group keeps the score order inside each group; two argsorts
        # measured ~30% faster than np.lexsort at 1M rows.
        order = order[np.argsort(keys[order], kind="stable")]
        k = keys[order]
        new_group[1:] = k[1:] != k[:-1]
    new_group[0] = True
    s = score[order]
    ys = y[order]

    # A tie run ends at a group boundary even when the score continues unchanged.
    new_run = new_group.copy()
    new_run[1:] |= s[1:] != s[:-1]
    run_start = np.flatnonzero(new_run)  # [R]
    run_len = np.diff(np.append(run_start, n))  # [R]
    run_pos = np.add.reduceat(ys, run_start)  # [R] positives per run

    group_start = np.flatnonzero(new_group)  # [G]
    group_size = np.diff(np.append(group_start, n))  # [G]
    # Runs nest inside groups, so a run's group is the count of group starts up to it.
    run_group = np.cumsum(new_group[run_start]) - 1  # [R]
    # Tied rows share the mean of their 1-based in-group positions start+1 .. start+len.
    # Ranks are made group-local before summing: values stay half-integers far below 2^52,
    # so the rank sums (and hence the U statistics) are exact in float64.
    run_rank = run_start - group_start[run_group] + (run_len + 1) / 2.0  # [R]

    n_pos = np.add.reduceat(run_pos, np.flatnonzero(new_group[run_start]))  # [G]
    pos_rank_sum = np.bincount(run_group, weights=run_pos * run_rank, minlength=group_size.size)
    n_neg = group_size - n_pos
    u = pos_rank_sum - n_pos * (n_pos + 1) / 2.0
    pairs = n_pos * n_neg
    per_group = np.full(group_start.size, np.nan)
    # `where` keeps one-class groups at nan without a divide-by-zero warning.
    np.divide(u, pairs, out=per_group, where=pairs > 0)
    return per_group, group_size


def auc(y_true: Any, y_score: Any) -> float:
    """ROC AUC by the rank-sum formula, ties given average ranks (equals sklearn's).

    Args:
        y_true: [N] or [N, 1] labels in {0, 1}.
        y_score: [N] or [N, 1] scores or probabilities; higher means more likely positive.

    Returns:
        The AUC, or nan when only one class (or no row) is present.

    Raises:
        ValueError: a label outside {0, 1}, NaN scores, a bad shape or a length mismatch.
    """
    y = _binary_labels(y_true)
    s = _scores(y_score, "y_score")
    if _check_lengths(y_true=y, y_score=s) == 0:
        return float("nan")
    per_group, _ = _per_group_auc(y, s, None)
    return float(per_group[0])


def gauc(y_true: Any, y_score: Any, groups: Any) -> float:
    """Group AUC from the DIN paper: per-group AUC averaged with impression weights.

    GAUC = sum_g n_g * AUC_g / sum_g n_g, where n_g is the number of rows (impressions) of
    group g (usually a user). Groups with a single class have no AUC and are left out of both
    sums.

    Args:
        y_true: [N] or [N, 1] labels in {0, 1}.
        y_score: [N] or [N, 1] scores or probabilities.
        groups: [N] or [N, 1] group ids (ints or strings), e.g. the user id of each row.

    Returns:
        The GAUC, or nan when no group has both classes.

    Raises:
        ValueError: a label outside {0, 1}, NaN scores, a bad shape or a length mismatch.
    """
    per_group, size = group_aucs(y_true, y_score, groups)
    valid = ~np.isnan(per_group)
    if not valid.any():
        return float("nan")
    weights = size[valid].astype(np.float64)
    return float(np.dot(weights, per_group[valid]) / weights.sum())


def group_aucs(y_true: Any, y_score: Any, groups: Any) -> tuple[np.ndarray, np.ndarray]:
    """The terms GAUC averages: every group's AUC and its number of rows.

    Args: as gauc.

    Returns:
        (auc, size): [G] float64 AUC per group in sorted key order (nan where the group has
        a single class) and [G] rows per group; both empty when there is no row.

    Example:
        >>> a, n = group_aucs([1, 0, 1, 1], [0.9, 0.1, 0.2, 0.3], ["u", "u", "v", "v"])
        >>> a.tolist(), n.tolist()
        ([1.0, nan], [2, 2])
    """
    y = _binary_labels(y_true)
    s = _scores(y_score, "y_score")
    keys = _group_keys(groups)
    if _check_lengths(y_true=y, y_score=s, groups=keys) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return _per_group_auc(y, s, keys)


def logloss(y_true: Any, y_prob: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities, clipped to [eps, 1 - eps].

    Args:
        y_true: [N] or [N, 1] labels in [0, 1] (soft labels are allowed here).
        y_prob: [N] or [N, 1] predicted probabilities of the positive class.
        eps: clipping bound that keeps log() finite for confident wrong predictions.

    Returns:
        The mean log loss in nats, or nan for empty input.

    Raises:
        ValueError: labels outside [0, 1], NaN probabilities, a bad shape or length mismatch.
    """
    y = _as_1d(y_true, "y_true")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"y_true must be numeric labels, got dtype {y.dtype}")
    y = y.astype(np.float64, copy=False)
    if not ((y >= 0.0) & (y <= 1.0)).all():
        raise ValueError("y_true must lie in [0, 1] for logloss")
    p = _scores(y_prob, "y_prob")
    if _check_lengths(y_true=y, y_prob=p) == 0:
        return float("nan")
    return float(np.mean(logloss_terms(y, p, eps)))


def logloss_terms(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """[N] float64 per-row binary cross-entropy of checked labels and probabilities; logloss
    is their mean (a training epoch past its metric cap sums them batch by batch)."""
    p = np.clip(p.astype(np.float64, copy=False), eps, 1.0 - eps)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def accuracy(y_true: Any, y_prob: Any, threshold: float = 0.5) -> float:
    """Fraction of rows whose thresholded prediction equals the label.

    A row is predicted positive when its probability is strictly above the threshold, as in
    Keras's binary_accuracy, so a probability of exactly 0.5 counts as negative.

    Args:
        y_true: [N] or [N, 1] labels in {0, 1}.
        y_prob: [N] or [N, 1] predicted probabilities of the positive class.
        threshold: decision threshold.

    Returns:
        The accuracy in [0, 1], or nan for empty input.

    Raises:
        ValueError: a label outside {0, 1}, NaN probabilities, a bad shape or length mismatch.
    """
    y = _binary_labels(y_true)
    p = _scores(y_prob, "y_prob")
    if _check_lengths(y_true=y, y_prob=p) == 0:
        return float("nan")
    return float(np.mean(accuracy_terms(y, p, threshold)))


def accuracy_terms(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """[N] float64: 1.0 where the thresholded probability equals the label; accuracy is the
    mean."""
    return ((p > threshold) == (y == 1.0)).astype(np.float64)


def rela_impr(auc_model: float, auc_base: float) -> float:
    """RelaImpr from the DIN paper, in percent: ((AUC_model - 0.5) / (AUC_base - 0.5) - 1) * 100.

    Measures the gain over a base model relative to the base's distance from random guessing.

    Args:
        auc_model: AUC (or GAUC) of the model being compared.
        auc_base: AUC (or GAUC) of the base model; must exceed 0.5. A nan propagates.

    Raises:
        ValueError: auc_base <= 0.5, where the ratio is undefined or flips sign.
    """
    if auc_base <= 0.5:
        raise ValueError(f"rela_impr needs auc_base > 0.5 (better than random), got {auc_base}")
    return ((auc_model - 0.5) / (auc_base - 0.5) - 1.0) * 100.0


@dataclass(frozen=True)
class Metric:
    """A named metric as the trainer sees it.

    Args:
        name: the key in results and history; the name the user asked for (an alias kept).
        fn: ``fn(y_true, y_prob)`` or, when needs_groups, ``fn(y_true, y_prob, groups)``.
        needs_groups: whether the metric needs a group column (GAUC needs user ids).
        higher_is_better: direction for early stopping and checkpoint selection.
    """

    name: str
    fn: Callable[..., float]
    needs_groups: bool
    higher_is_better: bool


# alias -> (canonical name, fn, needs_groups, higher_is_better); the canonical name only
# detects a metric asked for twice under two aliases.
_REGISTRY: dict[str, tuple[str, Callable[..., float], bool, bool]] = {
    "binary_crossentropy": ("logloss", logloss, False, False),
    "logloss": ("logloss", logloss, False, False),
    "auc": ("auc", auc, False, True),
    "gauc": ("gauc", gauc, True, True),
    "accuracy": ("accuracy", accuracy, False, True),
    "acc": ("accuracy", accuracy, False, True),
}


def resolve_metrics(names: Sequence[str]) -> list[Metric]:
    """Turn metric names (Keras/DeepCTR style) into Metric objects, rejecting unknown names.

    Args:
        names: e.g. ``["binary_crossentropy", "auc"]``. Aliases keep the given name, since
            Keras history keys use it: 'binary_crossentropy' and 'logloss' are one metric, as
            are 'accuracy' and 'acc'.

    Raises:
        TypeError: a single string instead of a sequence of names.
        ValueError: an unknown name (the message lists the valid ones) or a metric asked for
            twice, under the same name or two aliases.
    """
    if isinstance(names, str):
        raise TypeError(f"metrics must be a list of names, got the string {names!r}")
    metrics: list[Metric] = []
    seen: dict[str, str] = {}  # canonical name -> name as given
    for name in names:
        if name not in _REGISTRY:
            valid = ", ".join(sorted(_REGISTRY))
            raise ValueError(f"unknown metric {name!r}; valid metrics: {valid}")
        canonical, fn, needs_groups, higher = _REGISTRY[name]
        if canonical in seen:
            first = seen[canonical]
            same = f"{name!r} twice" if first == name else f"{first!r} and {name!r} (same metric)"
            raise ValueError(f"duplicate metric: {same}")
        seen[canonical] = name
        metrics.append(Metric(name, fn, needs_groups, higher))
    return metrics


def compute_metrics(
    metrics: Sequence[Metric], y_true: Any, y_prob: Any, groups: Any = None
) -> dict[str, float]:
    """Compute each metric once over all predictions of an evaluation.

    Args:
        metrics: from resolve_metrics.
        y_true: [N] or [N, 1] labels in {0, 1}.
        y_prob: [N] or [N, 1] predicted probabilities.
        groups: [N] group ids (e.g. user ids) for metrics that need them, else None.

    Returns:
        ``{metric.name: value}`` in the order given.

    Raises:
        ValueError: a metric needs groups and none were given, or any input error of a metric.
    """
    # Convert once so torch tensors are not copied off the device per metric.
    y = _as_1d(y_true, "y_true")
    p = _as_1d(y_prob, "y_prob")
    g = None if groups is None else _as_1d(groups, "groups")
    results: dict[str, float] = {}
    for metric in metrics:
        if metric.needs_groups:
            if g is None:
                raise ValueError(
                    f"metric {metric.name!r} needs a group column (e.g. the user id of each "
                    "row); pass groups=..."
                )
            results[metric.name] = metric.fn(y, p, g)
        else:
            results[metric.name] = metric.fn(y, p)
    return results
