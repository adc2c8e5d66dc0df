"""PNG plots of runs: training curves per epoch and the attention heatmap of one user.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting never
touches a global backend or opens a window, and works on a headless machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# (epoch-record key, panel title); the validation key is drawn when present, else train's.
_PANELS = (("loss", "logloss"), ("gauc", "GAUC"), ("auc", "AUC"))
# Tick-label colors of the heatmap's candidates (readable beside the magma colormap).
_TICK_COLORS = ("tab:blue", "tab:green", "tab:red", "tab:purple")


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(target, dpi=120, bbox_inches="tight")
    return target


def plot_training_curves(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike[str]
) -> Path:
    """Loss, GAUC and AUC per epoch for one or more runs (solid: validation, dashed: train;
    every epoch a marker, so a one-epoch run shows its point).

    Args:
        runs: {run label: epoch records as in metrics.jsonl}.
        path: the PNG to write.
    """
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, len(_PANELS))
    colors = [f"C{i}" for i in range(10)]
    for (key, title), ax in zip(_PANELS, axes, strict=True):
        for i, (label, records) in enumerate(runs.items()):
            epochs = [int(r["epoch"]) for r in records]
            color = colors[i % len(colors)]
            val_key = "val_logloss" if key == "loss" else f"val_{key}"
            if any(val_key in r for r in records):
                ax.plot(epochs, [r.get(val_key, np.nan) for r in records], "-o", color=color,
                        label=f"{label} (val)", markersize=3)
            train_key = "logloss" if key == "loss" and any("logloss" in r for r in records) \
                else key
            # Markers on both lines: a one-epoch run is a single point, which a line alone
            # does not draw (the panel would look empty).
            ax.plot(epochs, [r.get(train_key, np.nan) for r in records], "--s", color=color,
                    alpha=0.6, label=f"{label} (train)", markersize=3)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("training curves (solid: validation, dashed: training)", fontsize=10)
    return _save(fig, path)


def plot_attention(
    weights: np.ndarray,
    behaviors: Sequence[str],
    candidates: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "DIN attention",
    behavior_groups: Sequence[str] | None = None,
    candidate_groups: Sequence[str] | None = None,
) -> Path:
    """Heatmap of attention weights: one row per candidate, one column per past behavior.

    Args:
        weights: [C, T] weights of the valid behaviors, oldest first.
        behaviors: T labels (e.g. "item (category)").
        candidates: C labels.
        path: the PNG to write.
        title: figure title.
        behavior_groups, candidate_groups: optional categories (T and C); a behavior's label
            takes the color of the candidate of its category, so the local activation
            (behaviors of the candidate's category lighting up) is visible at a glance.
    """
    w = np.asarray(weights, dtype=np.float64)
    n_cand, n_beh = w.shape
    fig = Figure(figsize=(max(6.0, 0.32 * n_beh + 2.5), 1.0 + 0.55 * n_cand + 1.6))
    ax = fig.subplots()
    image = ax.imshow(w, aspect="auto", cmap="magma", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="weight")
    ax.set_yticks(range(n_cand), labels=list(candidates), fontsize=8)
    ax.set_xticks(range(n_beh), labels=list(behaviors), rotation=90, fontsize=7)
    if behavior_groups is not None and candidate_groups is not None:
        color_of: dict[str, str] = {}
        for c, group in enumerate(candidate_groups):
            color_of.setdefault(group, _TICK_COLORS[c % len(_TICK_COLORS)])
        for label, group in zip(ax.get_yticklabels(), candidate_groups, strict=True):
            label.set_color(color_of[group])
        for label, group in zip(ax.get_xticklabels(), behavior_groups, strict=True):
            if group in color_of:
                label.set_color(color_of[group])
    ax.set_xlabel("past behaviors (oldest to newest)")
    ax.set_ylabel("candidate")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
