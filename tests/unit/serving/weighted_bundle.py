"""A tiny DIN bundle whose histories are weighted (weight_name), for the serving tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.demo_bundle import spread_weights

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.models import DIN

MAXLEN, BUY_LEN = 4, 2  # maxlen of the clicks (history_feature_list's) and of "buy"


def category(item: int) -> int:
    """Every item's category (1..4: 0 is padding)."""
    return item % 4 + 1


def weighted_model(groups: bool = False) -> DIN:
    """DIN over clicks weighted by hist_w (and, with `groups`, buys weighted by buy_hist_w)."""
    cols: list[Any] = [SparseFeat("user_id", 10, embedding_dim=4),
                       SparseFeat("item_id", 30, embedding_dim=8),
                       SparseFeat("cate_id", 5, embedding_dim=4)]
    for prefix, maxlen in (("hist_", MAXLEN), ("buy_hist_", BUY_LEN))[: 2 if groups else 1]:
        cols += [VarLenSparseFeat(SparseFeat(prefix + "item_id", 30, embedding_dim=8,
                                             embedding_name="item_id"), maxlen,
                                  weight_name=prefix + "w"),
                 VarLenSparseFeat(SparseFeat(prefix + "cate_id", 5, embedding_dim=4,
                                             embedding_name="cate_id"), maxlen)]
    model = DIN(cols, ["item_id", "cate_id"], att_hidden_size=(8,), dnn_hidden_units=(8,),
                history_groups={"buy": ["item_id", "cate_id"]} if groups else None)
    spread_weights(model, seed=3)
    return model.eval()


def save_weighted(path: Path, groups: bool = False) -> Path:
    """weighted_model(groups) saved at `path`; with groups, pv events feed the clicks and buy
    events the buys."""
    weighted_model(groups).save(path, history_behaviors={"": ["pv"], "buy": ["buy"]}
                                if groups else None)
    return path
