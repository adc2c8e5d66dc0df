"""The riders of the last gradient bucket, with the all-reduce done by hand (two "ranks")."""

from __future__ import annotations

import pytest
import torch

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.layers.activation import Dice
from dinrec.models import DIN
from dinrec.training.distributed.bucket_riders import MovingStatistics, TablePresence


def tiny_model() -> DIN:
    cols = [SparseFeat("user_id", 4, embedding_dim=2), SparseFeat("item_id", 6, embedding_dim=2),
            VarLenSparseFeat(SparseFeat("hist_item_id", 6, embedding_dim=2,
                                        embedding_name="item_id"), 3)]
    return DIN(cols, ["item_id"], dnn_hidden_units=(4,), att_hidden_size=(4,),
               dnn_activation="dice", att_activation="dice", seed=0)


def batch(users: list[int], items: list[int], hist: list[list[int]]) -> dict[str, torch.Tensor]:
    return {"user_id": torch.tensor(users), "item_id": torch.tensor(items),
            "hist_item_id": torch.tensor(hist)}


def test_presence_masks_summed_over_ranks_give_the_union_of_the_batch_ids() -> None:
    model = tiny_model()
    ranks = [TablePresence(model), TablePresence(model)]
    ranks[0].before_forward(model, (batch([1], [2], [[3, 0, 0]]),))
    ranks[1].before_forward(model, (batch([1, 3], [5, 2], [[2, 4, 0], [0, 0, 0]]),))
    locals_ = [r.local(torch.device("cpu"), torch.float32) for r in ranks]
    # user_id (4 rows), then item_id (6 rows); the padding id 0 is not a use
    assert locals_[0].tolist() == [0, 1, 0, 0, 0, 0, 1, 1, 0, 0]
    total = locals_[0] + locals_[1]
    for rank in ranks:
        rank.reduced(total)
    union = ranks[0]({"user_id": torch.tensor([1]), "item_id": torch.tensor([2, 3])})
    assert union["user_id"].tolist() == [1, 3]
    assert union["item_id"].tolist() == [2, 3, 4, 5]


def test_presence_refuses_ids_before_the_reduce() -> None:
    model = tiny_model()
    presence = TablePresence(model)
    presence.before_forward(model, (batch([1], [2], [[3, 0, 0]]),))
    with pytest.raises(RuntimeError, match="before the step's gradient all-reduce"):
        presence({"item_id": torch.tensor([2])})


def test_moving_statistics_become_the_mean_over_ranks() -> None:
    models = [tiny_model(), tiny_model()]
    dices = [[m for m in model.modules() if isinstance(m, Dice)] for model in models]
    assert len(dices[0]) == 2  # one in the activation unit, one in the MLP
    for rank, layers in enumerate(dices):
        for layer in layers:
            layer.running_mean.fill_(float(rank))       # 0 on rank 0, 1 on rank 1
            layer.running_var.fill_(2.0 + 2.0 * rank)   # 2 and 4
    riders = [MovingStatistics(m, world=2) for m in models]
    total = sum(r.local(torch.device("cpu"), torch.float32) for r in riders)
    for rider in riders:
        rider.reduced(total)
    for layers in dices:
        for layer in layers:
            assert layer.running_mean.tolist() == [0.5] * 4
            assert layer.running_var.tolist() == [3.0] * 4
