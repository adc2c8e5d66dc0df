"""A tiny grouped bundle (clicks and buys, each with its time gap) and typed events for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.demo_bundle import spread_weights

from dinrec.feature_column import SparseFeat, VarLenDenseFeat, VarLenSparseFeat
from dinrec.models import DIN

CLICK_LEN, BUY_LEN = 5, 3  # maxlen of history_feature_list's history and of "buy"
N_ITEMS, N_CATEGORIES = 40, 6
# The manifest's mapping: untyped and pv events feed the clicks, buy and cart the buys.
FEEDS = {"": ["pv"], "buy": ["buy", "cart"]}


def grouped_model(seed: int = 5, buy_value: str = "time_gap") -> DIN:
    """DIN attending to clicks (maxlen 5) and buys (maxlen 3), with each one's time gap (the
    buys' per-behavior value named `buy_value`: one serving cannot compute if not time_gap)."""
    cols: list[Any] = [SparseFeat("user_id", 10, embedding_dim=4),
                       SparseFeat("item_id", N_ITEMS, embedding_dim=8),
                       SparseFeat("cate_id", N_CATEGORIES, embedding_dim=4)]
    for prefix, maxlen, value in (("hist_", CLICK_LEN, "time_gap"),
                                  ("buy_hist_", BUY_LEN, buy_value)):
        for feature, size, dim in (("item_id", N_ITEMS, 8), ("cate_id", N_CATEGORIES, 4)):
            cols.append(VarLenSparseFeat(
                SparseFeat(prefix + feature, size, embedding_dim=dim, embedding_name=feature),
                maxlen, length_name=prefix + "len"))
        cols.append(VarLenDenseFeat(prefix + value, maxlen))
    model = DIN(cols, ["item_id", "cate_id"],
                history_groups={"buy": ["item_id", "cate_id"]}, att_hidden_size=(8,),
                dnn_hidden_units=(8,))
    spread_weights(model, seed=seed)
    return model.eval()


def save_grouped(path: Path, feeds: dict[str, list[str]] | None = None, seed: int = 5,
                 buy_value: str = "time_gap") -> Path:
    """The grouped model saved at `path` with the mapping `feeds` (default FEEDS)."""
    grouped_model(seed, buy_value).save(path, history_behaviors=FEEDS if feeds is None
                                        else feeds)
    return path


def category(item: int) -> int:
    """Every item's category (1..5: 0 is padding)."""
    return 1 + item % (N_CATEGORIES - 1)


def typed_events(user: str, spec: str, start: int = 1000, step: int = 600) -> list[dict[str, Any]]:
    """Event JSON from 'item:type' words ('-': untyped), `step` seconds apart."""
    out = []
    for i, word in enumerate(spec.split()):
        item, kind = word.split(":")
        event = {"user_id": user, "item_id": int(item), "category": category(int(item)),
                 "timestamp": start + i * step}
        if kind != "-":
            event["behavior"] = kind
        out.append(event)
    return out
