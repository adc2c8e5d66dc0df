"""Comparison tables: exact numbers, RelaImpr against the Base Model, the baseline choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinrec.experiment.report import find_baseline, markdown_table
from dinrec.experiment.runner import RunResult


def result(name: str, model: str, auc: float, gauc: float) -> RunResult:
    return RunResult(Path(f"runs/{name}"), name, model,
                     {"auc": auc, "gauc": gauc, "logloss": 0.5}, 1, 2, 1.0)


def test_rela_impr_is_against_the_base_model_wherever_it_is_listed() -> None:
    rows = [result("din", "DIN (att dice)", 0.80, 0.70), result("base", "EmbeddingMLP", 0.75, 0.65)]
    lines = markdown_table(rows).splitlines()
    # (0.80 - 0.5) / (0.75 - 0.5) - 1 = 20%; (0.70 - 0.5) / (0.65 - 0.5) - 1 = 33.33%
    assert lines[2] == "| din | DIN (att dice) | 0.8000 | 0.7000 | 0.5000 | +20.00% | +33.33% |"
    assert lines[3].endswith("| baseline | baseline |")


def test_baseline_by_name_or_first_run() -> None:
    rows = [result("a", "DIN", 0.8, 0.7), result("b", "DIN", 0.7, 0.6)]
    assert find_baseline(rows) == 0
    assert find_baseline(rows, "b") == 1
    with pytest.raises(ValueError, match="'c' matches no run"):
        find_baseline(rows, "c")


def test_a_baseline_no_better_than_random_gives_na() -> None:
    rows = [result("base", "EmbeddingMLP", 0.5, 0.45), result("din", "DIN", 0.8, 0.7)]
    assert markdown_table(rows).splitlines()[3].endswith("| n/a | n/a |")
