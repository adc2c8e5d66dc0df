"""Bundles beyond DeepCTR: history groups served by the Scorer, a per-behavior value it
cannot compute refused by name (ONNX: test_onnx_groups.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinrec.feature_column import SparseFeat, VarLenDenseFeat, VarLenSparseFeat
from dinrec.models import DIN
from dinrec.serving.scorer import Scorer


def _bundle(tmp_path: Path, groups: bool) -> Path:
    cols = [SparseFeat("item_id", 6, 3),
            VarLenSparseFeat(SparseFeat("hist_item_id", 6, 3, embedding_name="item_id"), 4)]
    if groups:
        cols.append(VarLenSparseFeat(
            SparseFeat("buy_hist_item_id", 6, 3, embedding_name="item_id"), 4))
    else:
        cols.append(VarLenDenseFeat("hist_gap", 4))
    model = DIN(cols, ["item_id"], history_groups={"buy": ["item_id"]} if groups else None,
                att_hidden_size=(4,), dnn_hidden_units=(4,))
    model.save(tmp_path / "bundle")
    return tmp_path / "bundle"


def test_the_scorer_refuses_a_per_behavior_value_it_cannot_compute_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"VarLenDenseFeat 'hist_gap' \(width 1\) cannot be "
                                         r"served"):
        Scorer.load(_bundle(tmp_path, False))


def test_a_grouped_bundle_loads_and_ranks_with_each_history_from_its_own_events(tmp_path):
    scorer = Scorer.load(_bundle(tmp_path, True))
    assert scorer.feeds.describe() == {"": [None], "buy": ["buy"]}
    base = scorer.rank("u", [1, 2, 3], [None] * 3, history=[(4, None)]).probabilities
    bought = scorer.rank("u", [1, 2, 3], [None] * 3, history=[(4, None)],
                         groups={"buy": [(5, None)]}).probabilities
    assert float(abs(base - bought).max()) > 0.0
