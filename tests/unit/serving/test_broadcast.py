"""The serving forward pass equals model(inputs) on the expanded inputs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.support.broadcast_parity import broadcast_max_diff
from tests.support.demo_bundle import spread_weights

from dinrec.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from dinrec.models import DIN, EmbeddingMLP
from dinrec.serving.broadcast import BroadcastForward, candidate_inputs, user_inputs

TOL = 1e-5


def _columns(maxlen: int = 6) -> list[Any]:
    return [
        SparseFeat("user_id", 10, embedding_dim=4),
        SparseFeat("item_id", 30, embedding_dim=8),
        SparseFeat("cate_id", 5, embedding_dim=4),
        VarLenSparseFeat(SparseFeat("genres", 7, embedding_dim=3), maxlen=3, combiner="mean"),
        VarLenSparseFeat(SparseFeat("hist_item_id", 30, embedding_dim=8,
                                    embedding_name="item_id"), maxlen),
        VarLenSparseFeat(SparseFeat("hist_cate_id", 5, embedding_dim=4,
                                    embedding_name="cate_id"), maxlen),
    ]


def _user(length: int, maxlen: int = 6) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(length)
    hist = torch.zeros(1, maxlen, dtype=torch.long)
    hist[0, :length] = torch.randint(1, 30, (length,), generator=gen)
    cate = torch.zeros(1, maxlen, dtype=torch.long)
    cate[0, :length] = torch.randint(1, 5, (length,), generator=gen)
    return {"user_id": torch.tensor([3]), "genres": torch.tensor([[2, 5, 0]]),
            "hist_item_id": hist, "hist_cate_id": cate}


def _candidates(n: int = 7) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(99)
    return {"item_id": torch.randint(0, 30, (n,), generator=gen),
            "cate_id": torch.randint(0, 5, (n,), generator=gen)}


def _expanded(user: dict[str, torch.Tensor], cands: dict[str, torch.Tensor]) -> dict[str, Any]:
    n = len(next(iter(cands.values())))
    out = {k: v.expand(n, *v.shape[1:]).contiguous() for k, v in user.items()}
    out.update(cands)
    return out


def _model(cls: Any = DIN, **kwargs: Any) -> Any:
    model = cls(_columns(), ["item_id", "cate_id"], **kwargs)
    spread_weights(model, seed=1)
    return model.eval()


@pytest.mark.parametrize("length", [0, 1, 4, 6])
def test_one_user_broadcast_matches_model_on_expanded_inputs(length: int) -> None:
    model = _model()
    assert broadcast_max_diff(model, _user(length), _candidates()) <= TOL


def test_gathered_rows_match_model_on_expanded_inputs() -> None:
    model = _model()
    cands = _candidates()
    row_user = torch.zeros(7, dtype=torch.long)
    assert broadcast_max_diff(model, _user(4), cands, row_user) <= TOL


def test_one_user_per_row_matches_model() -> None:
    model = _model()
    users = [_user(n) for n in (0, 2, 3, 5, 6, 6, 1)]
    batch = {k: torch.cat([u[k] for u in users]) for k in users[0]}
    cands = _candidates()
    with torch.inference_mode():
        want = model({**batch, **cands}).squeeze(-1)
        eager = BroadcastForward(model)(batch, cands)
        gathered = BroadcastForward(model)(batch, cands, torch.arange(7))
    assert float((eager - want).abs().max()) <= TOL
    assert float((gathered - want).abs().max()) <= TOL


def test_history_cut_to_its_valid_length_gives_the_same_scores() -> None:
    model = _model()
    user, cands = _user(3), _candidates()
    cut = {**user, "hist_item_id": user["hist_item_id"][:, :3],
           "hist_cate_id": user["hist_cate_id"][:, :3]}
    with torch.inference_mode():
        full = BroadcastForward(model)(user, cands)
        short = BroadcastForward(model)(cut, cands)
    assert float((full - short).abs().max()) <= TOL


def test_softmax_attention_length_input_and_dense_feature_match_model(
    plain_cols: list[Any],
) -> None:
    model = DIN(plain_cols, ["item_id", "cate_id"], att_weight_normalization=True,
                att_activation="prelu")
    spread_weights(model, seed=2)
    model.eval()
    user = {"user": torch.tensor([1]), "gender": torch.tensor([0]),
            "pay_score": torch.tensor([0.7]), "hist_item_id": torch.tensor([[1, 3, 2, 0]]),
            "hist_cate_id": torch.tensor([[1, 2, 2, 0]]), "seq_length": torch.tensor([3])}
    cands = {"item_id": torch.tensor([0, 1, 2, 3]), "cate_id": torch.tensor([0, 1, 2, 1])}
    assert broadcast_max_diff(model, user, cands) <= TOL


def test_base_model_sum_pooling_matches_model() -> None:
    model = _model(EmbeddingMLP)
    assert broadcast_max_diff(model, _user(5), _candidates()) <= TOL


def test_inputs_split_into_user_side_and_candidate_side(plain_cols: list[Any]) -> None:
    model = _model()
    assert candidate_inputs(model.schema) == ("item_id", "cate_id")
    assert user_inputs(model.schema) == ("user_id", "genres", "hist_item_id", "hist_cate_id")
    plain = DIN(plain_cols, ["item_id", "cate_id"])
    assert "seq_length" in user_inputs(plain.schema)


@pytest.mark.parametrize("kwargs", [
    {"history_search": "topk", "history_search_k": 2},
    {"history_search": "category", "history_search_k": 2, "history_search_feature": "cate_id"},
    {"history_search": "topk", "history_search_k": 3, "att_weight_normalization": True},
])
def test_long_history_options_serve_as_the_model_scores(kwargs: dict[str, Any]) -> None:
    # The first stage (search) runs per candidate in serving as
    # in model(inputs): each candidate keeps its own behaviors.
    model = _model(**kwargs)
    assert broadcast_max_diff(model, _user(6), _candidates()) <= TOL
    row_user = torch.zeros(7, dtype=torch.long)
    assert broadcast_max_diff(model, _user(5), _candidates(), row_user) <= TOL


def test_weighted_sequence_and_transformed_dense_match_model_on_hand_built_inputs() -> None:
    # Every kind of part the shared assembly (InterestNetwork.embed_features) builds: a
    # candidate-side SparseFeat, a weighted sum-pooled VarLenSparseFeat, a 2-wide DenseFeat
    # with a transform, and the attention interest over a 3-behavior history.
    cols = [
        SparseFeat("user_id", 4, embedding_dim=2),
        SparseFeat("item_id", 6, embedding_dim=4),
        VarLenSparseFeat(SparseFeat("tags", 5, embedding_dim=3), maxlen=3, combiner="sum",
                         weight_name="tag_weight"),
        DenseFeat("spend", 2, transform_fn=lambda v: v * 2.0 - 1.0),
        VarLenSparseFeat(SparseFeat("hist_item_id", 6, embedding_dim=4,
                                    embedding_name="item_id"), maxlen=4),
    ]
    model = DIN(cols, ["item_id"])
    spread_weights(model, seed=3)
    model.eval()
    user = {"user_id": torch.tensor([2]), "tags": torch.tensor([[1, 4, 0]]),
            "tag_weight": torch.tensor([[0.5, 2.0, 0.0]]), "spend": torch.tensor([[0.3, 0.9]]),
            "hist_item_id": torch.tensor([[5, 2, 3, 0]])}
    cands = {"item_id": torch.tensor([1, 2, 3, 4, 5])}
    with torch.inference_mode():
        want = model(_expanded(user, cands)).squeeze(-1)
        got = BroadcastForward(model)(user, cands)
        embedded = model.embed_features(_expanded(user, cands))
    assert torch.allclose(got, want, atol=TOL)
    assert want.std() > 1e-3
    # The dense part is the transformed value, and the candidate's embedding is its row.
    assert embedded.dense[0][0].tolist() == pytest.approx([-0.4, 0.8])
    assert torch.equal(embedded.query(), model.embeddings.lookup("item_id", cands["item_id"]))
