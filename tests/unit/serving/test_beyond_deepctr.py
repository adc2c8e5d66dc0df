"""Bundles with history groups or per-behavior values are refused by serving and export."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinrec.feature_column import SparseFeat, VarLenDenseFeat, VarLenSparseFeat
from dinrec.models import DIN
from dinrec.serving.onnx_export import export_onnx
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


@pytest.mark.parametrize(("groups", "named"), [(True, "history group 'buy'"),
                                               (False, "VarLenDenseFeat 'hist_gap'")])
def test_the_scorer_refuses_naming_what_it_cannot_serve(tmp_path, groups, named):
    with pytest.raises(ValueError, match=rf"serving \(dinrec serve, the Scorer\) does not "
                                         rf"support {named} yet"):
        Scorer.load(_bundle(tmp_path, groups))


def test_onnx_export_refuses_a_grouped_bundle(tmp_path):
    with pytest.raises(ValueError, match=r"ONNX export does not support history group 'buy'"):
        export_onnx(_bundle(tmp_path, True))
