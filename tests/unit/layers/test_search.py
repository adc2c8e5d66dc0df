"""SIM-style first stage (dinrec.layers.search) and DIN's long-history options."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.layers.search import latest_matches, topk_by_similarity
from dinrec.models import DIN


def test_topk_keeps_the_highest_scores_and_never_padding() -> None:
    mask = torch.tensor([[True, True, True, True, False], [True, True, False, False, False]])
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.5, 99.0], [5.0, 4.0, 9.0, 9.0, 9.0]])
    got = topk_by_similarity(mask, scores, k=2)
    assert got.tolist() == [[False, False, True, True, False], [True, True, False, False, False]]


def test_topk_with_k_at_least_the_width_keeps_the_mask() -> None:
    mask = torch.tensor([[True, False, True]])
    assert topk_by_similarity(mask, torch.zeros(1, 3), k=3).tolist() == [[True, False, True]]


def test_category_search_keeps_the_latest_matches_and_nothing_without_one() -> None:
    mask = torch.tensor([[True, True, True, True, True], [True, True, True, False, False]])
    cates = torch.tensor([[4, 2, 4, 4, 1], [1, 1, 1, 4, 4]])
    got = latest_matches(mask, cates, torch.tensor([4, 4]), k=2)
    # Row 0: matches at 0, 2, 3 -> the latest two; row 1: the only 4s are padding.
    assert got.tolist() == [[False, False, True, True, False], [False] * 5]


def _columns() -> list[Any]:
    return [
        SparseFeat("item_id", 6, embedding_dim=2),
        SparseFeat("cate_id", 3, embedding_dim=2),
        VarLenSparseFeat(SparseFeat("hist_item_id", 6, embedding_dim=2,
                                    embedding_name="item_id"), maxlen=4),
        VarLenSparseFeat(SparseFeat("hist_cate_id", 3, embedding_dim=2,
                                    embedding_name="cate_id"), maxlen=4),
    ]


def _din(**kwargs: Any) -> DIN:
    model = DIN(_columns(), ["item_id", "cate_id"], att_activation="prelu", seed=7, **kwargs)
    with torch.no_grad():
        # Items 1..5 on a line through e1 (cosine to item 1: 1, -1, 0.5, 0.9, 0.1); every
        # category embedding equal, so the similarity ranking is the items' alone.
        items = model.embeddings.table("item_id").weight
        items.copy_(torch.tensor([[0, 0], [1, 0], [-1, 0], [0.5, 0], [0.9, 0], [0.1, 0]]))
        model.embeddings.table("cate_id").weight.fill_(0.3)
    return model.eval()


def _inputs(hist: list[list[int]], cates: list[list[int]]) -> dict[str, torch.Tensor]:
    return {"item_id": torch.tensor([1] * len(hist)), "cate_id": torch.tensor([1] * len(hist)),
            "hist_item_id": torch.tensor(hist), "hist_cate_id": torch.tensor(cates)}


def test_topk_search_scores_as_full_attention_over_the_selected_behaviors() -> None:
    searched = _din(history_search="topk", history_search_k=2)
    full = _din()
    with torch.inference_mode():
        got = searched(_inputs([[2, 3, 4, 5]], [[1, 1, 1, 1]]))
        # The two most similar to item 1 are 4 (0.9) and 3 (0.5); the rest are dropped.
        want = full(_inputs([[3, 4, 0, 0]], [[1, 1, 0, 0]]))
        weights = searched.interest(_inputs([[2, 3, 4, 5]], [[1, 1, 1, 1]]))[1]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert (weights[0, [0, 3]] == 0).all() and (weights[0, [1, 2]] != 0).all()


def test_category_search_scores_as_full_attention_over_the_latest_matches() -> None:
    searched = _din(history_search="category", history_search_k=2)  # cate_id: the last
    full = _din()
    with torch.inference_mode():
        got = searched(_inputs([[2, 3, 4, 5]], [[1, 2, 1, 1]]))
        want = full(_inputs([[4, 5, 0, 0]], [[1, 1, 0, 0]]))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"history_search": "sim"}, "history_search"),
    ({"history_search": "topk", "history_search_k": 0}, "history_search_k"),
    ({"history_search": "category", "history_search_feature": "brand"},
     "history_search_feature"),
])
def test_bad_long_history_settings_raise_naming_the_setting(
    kwargs: dict[str, Any], names: str
) -> None:
    with pytest.raises(ValueError, match=names):
        DIN(_columns(), ["item_id", "cate_id"], **kwargs)
