"""The serving forward pass of history groups and per-behavior values equals model(inputs)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.support.broadcast_parity import broadcast_max_diff
from tests.support.demo_bundle import spread_weights

from dinrec.feature_column import SparseFeat, VarLenDenseFeat, VarLenSparseFeat
from dinrec.models import DIN, EmbeddingMLP
from dinrec.serving.broadcast import BroadcastForward, candidate_inputs, user_inputs

TOL = 1e-5


def _columns(side: bool) -> list[Any]:
    cols: list[Any] = [
        SparseFeat("user_id", 10, embedding_dim=4),
        SparseFeat("item_id", 30, embedding_dim=8),
        SparseFeat("cate_id", 5, embedding_dim=4),
        VarLenSparseFeat(SparseFeat("hist_item_id", 30, embedding_dim=8,
                                    embedding_name="item_id"), 6, length_name="hist_len"),
        VarLenSparseFeat(SparseFeat("hist_cate_id", 5, embedding_dim=4,
                                    embedding_name="cate_id"), 6, length_name="hist_len"),
        # The buy group attends by item only, over a shorter history with an id-0 mask.
        VarLenSparseFeat(SparseFeat("buy_hist_item_id", 30, embedding_dim=8,
                                    embedding_name="item_id"), 3),
    ]
    if side:
        cols += [VarLenDenseFeat("hist_time_gap", 6), VarLenDenseFeat("buy_hist_dwell", 3, 2)]
    return cols


def _model(side: bool = False, cls: Any = DIN, **kwargs: Any) -> Any:
    model = cls(_columns(side), ["item_id", "cate_id"], history_groups={"buy": ["item_id"]},
                **kwargs)
    spread_weights(model, seed=4)
    return model.eval()


def _user(clicks: int, buys: int, side: bool = False) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(10 * clicks + buys)
    user = {"user_id": torch.tensor([3]), "hist_len": torch.tensor([clicks])}
    for name, size, width, n in (("hist_item_id", 30, 6, clicks), ("hist_cate_id", 5, 6, clicks),
                                 ("buy_hist_item_id", 30, 3, buys)):
        ids = torch.zeros(1, width, dtype=torch.long)
        ids[0, :n] = torch.randint(1, size, (n,), generator=gen)
        user[name] = ids
    if side:
        user["hist_time_gap"] = torch.rand(1, 6, generator=gen) * 3.0
        user["buy_hist_dwell"] = torch.rand(1, 3, 2, generator=gen) * 2.0 - 1.0
    return user


def _candidates(n: int = 7) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(99)
    return {"item_id": torch.randint(0, 30, (n,), generator=gen),
            "cate_id": torch.randint(0, 5, (n,), generator=gen)}


@pytest.mark.parametrize(("clicks", "buys"), [(0, 0), (4, 0), (0, 2), (6, 3)])
@pytest.mark.parametrize("side", [False, True])
def test_each_group_is_served_as_the_model_scores_it(clicks: int, buys: int, side: bool) -> None:
    model = _model(side)
    user = _user(clicks, buys, side)
    assert broadcast_max_diff(model, user, _candidates()) <= TOL
    assert broadcast_max_diff(model, user, _candidates(), torch.zeros(7, dtype=torch.long)) <= TOL


@pytest.mark.parametrize("kwargs", [
    {"att_weight_normalization": True, "att_activation": "prelu"},
    {"history_search": "topk", "history_search_k": 2},
])
def test_grouped_options_serve_as_the_model_scores(kwargs: dict[str, Any]) -> None:
    assert broadcast_max_diff(_model(True, **kwargs), _user(5, 3, True), _candidates()) <= TOL


def test_base_model_pools_each_group_as_the_model() -> None:
    assert broadcast_max_diff(_model(True, EmbeddingMLP), _user(5, 2, True), _candidates()) <= TOL


def test_a_buy_changes_scores_only_through_the_buy_group() -> None:
    model = _model()
    user, cands = _user(4, 1), _candidates()
    other = {**user, "buy_hist_item_id": torch.tensor([[7, 9, 0]])}
    with torch.inference_mode():
        a, b = BroadcastForward(model)(user, cands), BroadcastForward(model)(other, cands)
    assert float((a - b).abs().max()) > 1e-4
    assert broadcast_max_diff(model, other, cands) <= TOL


def test_group_inputs_are_user_side_and_group_queries_are_per_candidate() -> None:
    model = _model(True)
    assert candidate_inputs(model.schema) == ("item_id", "cate_id")
    assert user_inputs(model.schema) == ("user_id", "hist_item_id", "hist_len", "hist_cate_id",
                                         "buy_hist_item_id", "hist_time_gap", "buy_hist_dwell")


def test_a_group_may_query_a_feature_history_feature_list_does_not() -> None:
    # cate_id is a query of the cart group only: still a per-candidate input.
    cols = [c for c in _columns(False) if c.name != "hist_cate_id"] + [
        VarLenSparseFeat(SparseFeat("cart_hist_cate_id", 5, embedding_dim=4,
                                    embedding_name="cate_id"), 4)]
    model = DIN(cols, ["item_id"], history_groups={"buy": ["item_id"], "cart": ["cate_id"]})
    spread_weights(model, seed=5)
    model.eval()
    assert candidate_inputs(model.schema) == ("item_id", "cate_id")
    user = _user(3, 2)
    del user["hist_cate_id"]
    user["cart_hist_cate_id"] = torch.tensor([[2, 4, 1, 0]])
    assert broadcast_max_diff(model, user, _candidates()) <= TOL
