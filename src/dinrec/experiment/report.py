"""Comparison tables of finished runs: AUC, GAUC, logloss and the paper's RelaImpr.

RelaImpr = ((AUC_model - 0.5) / (AUC_base - 0.5) - 1) * 100%, against a baseline run (the
paper's Base Model), for AUC and for GAUC (the paper's "AUC" is the user-weighted one).

Example:
    >>> from pathlib import Path
    >>> base = RunResult(Path("a"), "Base", "EmbeddingMLP", {"auc": 0.70, "gauc": 0.65,
    ...                  "logloss": 0.6}, 1, 1, 1.0)
    >>> din = RunResult(Path("b"), "DIN", "DIN", {"auc": 0.72, "gauc": 0.66, "logloss": 0.59},
    ...                 1, 1, 1.0)
    >>> print(markdown_table([base, din]).splitlines()[-1])
    | DIN | DIN | 0.7200 | 0.6600 | 0.5900 | +10.00% | +6.67% |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dinrec.experiment.runner import RunResult
from dinrec.metrics import rela_impr


def _impr(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base) or base <= 0.5:
        return "n/a"
    return f"{rela_impr(value, base):+.2f}%"


def find_baseline(results: Sequence[RunResult], name: str | None = None) -> int:
    """Index of the baseline: the run named `name`, else the first Base Model, else 0."""
    if name is not None:
        for i, result in enumerate(results):
            if name in (result.name, result.run_dir.name):
                return i
        known = ", ".join(r.name for r in results)
        raise ValueError(f"baseline {name!r} matches no run; runs: {known}")
    for i, result in enumerate(results):
        if result.model.startswith("EmbeddingMLP"):
            return i
    return 0


def markdown_table(results: Sequence[RunResult], baseline: int | None = None) -> str:
    """A markdown table of test metrics with RelaImpr against results[baseline].

    Args:
        results: finished runs, in the order to show.
        baseline: index of the baseline run (default: find_baseline).
    """
    if not results:
        raise ValueError("no runs to compare")
    b = find_baseline(results) if baseline is None else baseline
    base = results[b].test
    lines = ["| run | model | AUC | GAUC | logloss | RelaImpr (AUC) | RelaImpr (GAUC) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for i, result in enumerate(results):
        t = result.test
        impr_auc = "baseline" if i == b else _impr(t["auc"], base["auc"])
        impr_gauc = "baseline" if i == b else _impr(t["gauc"], base["gauc"])
        lines.append(f"| {result.name} | {result.model} | {t['auc']:.4f} | {t['gauc']:.4f} | "
                     f"{t['logloss']:.4f} | {impr_auc} | {impr_gauc} |")
    return "\n".join(lines)
