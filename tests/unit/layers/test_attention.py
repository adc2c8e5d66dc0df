from __future__ import annotations

import pytest
import torch
from torch import nn

from dinrec.layers.attention import ActivationUnit, AttentionPooling, mask_scores


def test_decomposed_first_layer_equals_naive_concatenation():
    torch.manual_seed(0)
    unit = ActivationUnit(dim=5, hidden_units=(7, 3), activation="relu")
    q, k = torch.randn(4, 5), torch.randn(4, 6, 5)
    qq = q.unsqueeze(1).expand_as(k)
    naive_first = unit.first(torch.cat([k, qq, k - qq, k * qq], dim=-1))  # [B, T, 7]
    naive = unit.out(unit.rest(unit.first_act(naive_first))).squeeze(-1)
    assert torch.allclose(unit(q, k), naive, atol=1e-5)


def linear_unit(dim: int, block: int) -> ActivationUnit:
    """No hidden layer: score = sum of one input block of [k, q, k-q, k*q]."""
    unit = ActivationUnit(dim, hidden_units=())
    with torch.no_grad():
        unit.first.weight.zero_()
        unit.first.bias.zero_()
        unit.first.weight[0, block * dim : (block + 1) * dim] = 1.0
    return unit


@pytest.mark.parametrize(("block", "expected"), [(0, 6.0), (1, 3.0), (2, 3.0), (3, 11.0)])
def test_unit_input_blocks_are_key_query_difference_product(block, expected):
    q = torch.tensor([[1.0, 2.0]])
    k = torch.tensor([[[1.0, 5.0]]])
    # sums: key 6, query 3, key - query 0 + 3, key * query 1 + 10
    assert linear_unit(2, block)(q, k).item() == pytest.approx(expected)


def test_behavior_identical_to_candidate_outweighs_unrelated_one():
    unit = linear_unit(3, block=3)  # score = <k, q>
    pool = AttentionPooling(3, hidden_units=())
    pool.unit = unit
    q = torch.tensor([[1.0, 0.0, 2.0]])
    keys = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]])  # same as q, orthogonal to q
    interest, weights = pool(q, keys, torch.tensor([[True, True]]))
    assert weights.tolist() == [[5.0, 0.0]]
    assert interest.tolist() == [[5.0, 0.0, 10.0]]


def test_padded_positions_get_zero_weight_and_zero_gradient():
    torch.manual_seed(1)
    pool = AttentionPooling(4, hidden_units=(8,), activation="dice")
    q = torch.randn(2, 4)
    keys = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    interest, weights = pool(q, keys, mask)
    assert weights[0, 2].item() == 0.0 and weights[1, 1:].tolist() == [0.0, 0.0]
    interest.sum().backward()
    assert keys.grad is not None
    assert torch.count_nonzero(keys.grad[~mask]).item() == 0
    assert torch.count_nonzero(keys.grad[mask]).item() > 0


def test_no_softmax_by_default_and_masked_softmax_when_asked():
    scores = torch.tensor([[1.0, 2.0, 5.0]])
    mask = torch.tensor([[True, True, False]])
    assert mask_scores(scores, mask, False).tolist() == [[1.0, 2.0, 0.0]]
    soft = mask_scores(scores, mask, True)
    e1, e2 = torch.exp(torch.tensor(1.0)), torch.exp(torch.tensor(2.0))
    assert soft[0].tolist() == pytest.approx(
        [(e1 / (e1 + e2)).item(), (e2 / (e1 + e2)).item(), 0.0]
    )
    empty = mask_scores(scores, torch.zeros(1, 3, dtype=torch.bool), True)
    assert empty.tolist() == [[0.0, 0.0, 0.0]]


def test_unit_is_plain_modules_built_once():
    unit = ActivationUnit(4, (6, 2))
    assert isinstance(unit.first, nn.Linear) and unit.first.in_features == 16


def test_side_values_are_the_units_fifth_input_block():
    torch.manual_seed(0)
    unit = ActivationUnit(dim=5, hidden_units=(7, 3), activation="relu", side_dim=2)
    q, k, s = torch.randn(4, 5), torch.randn(4, 6, 5), torch.randn(4, 6, 2)
    qq = q.unsqueeze(1).expand_as(k)
    naive_first = unit.first(torch.cat([k, qq, k - qq, k * qq, s], dim=-1))  # [B, T, 7]
    naive = unit.out(unit.rest(unit.first_act(naive_first))).squeeze(-1)
    assert unit.first.in_features == 22
    assert torch.allclose(unit(q, k, side=s), naive, atol=1e-5)
    # The packed path (training and inference) scores the same rows.
    pooling = AttentionPooling(5, (7, 3), "relu", side_dim=2)
    pooling.unit.load_state_dict(unit.state_dict())
    mask = torch.ones(4, 6, dtype=torch.bool)
    _, weights = pooling(q, k, mask, s)
    assert torch.allclose(weights, naive, atol=1e-5)


def test_a_side_value_enters_the_score_by_its_weight():
    unit = ActivationUnit(2, hidden_units=(), side_dim=1)
    with torch.no_grad():
        unit.first.weight.zero_()
        unit.first.bias.zero_()
        unit.first.weight[0, 8] = 2.0  # the side block only
    q, k = torch.tensor([[1.0, 2.0]]), torch.tensor([[[1.0, 5.0], [0.0, 1.0]]])
    assert unit(q, k, side=torch.tensor([[[1.5], [-1.0]]])).tolist() == [[3.0, -2.0]]


def test_a_unit_built_for_side_values_refuses_to_run_without_them():
    unit = ActivationUnit(2, hidden_units=(3,), side_dim=1)
    with pytest.raises(ValueError, match=r"takes 1 per-behavior value\(s\) \(VarLenDenseFeat\)"):
        unit(torch.zeros(1, 2), torch.zeros(1, 3, 2))
