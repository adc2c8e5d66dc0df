from __future__ import annotations

import copy

import pytest
import torch

from dinrec.layers.attention import AttentionPooling, mask_scores
from dinrec.layers.packing import pack


def test_pack_lists_valid_positions_row_major_with_their_rows():
    mask = torch.tensor([[True, False, True], [False, False, False], [True, True, False]])
    packed = pack(mask)
    assert packed.positions.tolist() == [0, 2, 6, 7]
    assert packed.rows.tolist() == [0, 0, 2, 2]
    padded = torch.arange(9.0).reshape(3, 3, 1)
    assert packed.gather(padded).squeeze(-1).tolist() == [0.0, 2.0, 6.0, 7.0]


def test_unpack_puts_zeros_at_padding_and_sum_rows_adds_per_row():
    packed = pack(torch.tensor([[True, True], [False, False], [False, True]]))
    assert packed.unpack(torch.tensor([1.0, 2.0, 3.0])).tolist() == [[1, 2], [0, 0], [0, 3]]
    summed = packed.sum_rows(torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]))
    assert summed.tolist() == [[3.0, 30.0], [0.0, 0.0], [3.0, 30.0]]


def padded_reference(
    pool: AttentionPooling, q: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The unpacked formulation: unit over every slot (masked Dice statistics), then bmm."""
    scores = pool.unit(q, keys, mask)  # [B, T]
    weights = mask_scores(scores, mask, pool.weight_normalization)
    return torch.bmm(weights.unsqueeze(1), keys).squeeze(1), weights


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("activation", ["dice", "prelu"])
def test_packed_attention_equals_padded_attention_in_training(normalize, activation):
    torch.manual_seed(3)
    pool = AttentionPooling(6, (8, 4), activation, weight_normalization=normalize).train()
    ref = copy.deepcopy(pool)
    q = torch.randn(5, 6, requires_grad=True)
    keys = torch.randn(5, 7, 6, requires_grad=True)
    mask = torch.rand(5, 7) < 0.6
    mask[1] = False  # a row with no valid behavior
    q2, keys2 = q.detach().clone().requires_grad_(), keys.detach().clone().requires_grad_()

    interest, weights = pool(q, keys, mask)
    ref_interest, ref_weights = padded_reference(ref, q2, keys2, mask)
    assert torch.allclose(interest, ref_interest, atol=1e-6)
    assert torch.allclose(weights, ref_weights, atol=1e-6)
    (interest * torch.arange(6.0)).sum().backward()
    (ref_interest * torch.arange(6.0)).sum().backward()
    assert keys.grad is not None and keys2.grad is not None
    assert torch.allclose(keys.grad, keys2.grad, atol=1e-5)
    assert q.grad is not None and q2.grad is not None
    assert torch.allclose(q.grad, q2.grad, atol=1e-5)
    for (name, a), (_, b) in zip(pool.named_parameters(), ref.named_parameters(), strict=True):
        assert a.grad is not None and b.grad is not None, name
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    for (name, a), (_, b) in zip(pool.named_buffers(), ref.named_buffers(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_packed_attention_with_no_valid_behavior_gives_zero_interest():
    pool = AttentionPooling(3, (4,), "dice").train()
    interest, weights = pool(torch.randn(2, 3), torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=bool))
    assert interest.tolist() == [[0.0] * 3] * 2 and weights.tolist() == [[0.0] * 4] * 2
    assert pool.unit.first_act is not None
    assert pool.unit.first_act.running_var.tolist() == [1.0] * 4  # nothing was estimated


def test_bf16_packed_gemms_track_fp32_in_training():
    torch.manual_seed(4)
    pool = AttentionPooling(8, (16, 4), "dice").train()
    low = copy.deepcopy(pool)
    low.unit.packed_bf16()
    q, keys = torch.randn(6, 8), torch.randn(6, 5, 8)
    mask = torch.rand(6, 5) < 0.8
    grads = []
    for p in (pool, low):
        k = keys.clone().requires_grad_()
        interest, _ = p(q, k, mask)
        interest.sum().backward()
        grads.append((interest.detach(), k.grad))
    (a, ga), (b, gb) = grads
    assert torch.allclose(a, b, rtol=0.05, atol=0.02)
    assert ga is not None and gb is not None
    assert torch.allclose(ga, gb, rtol=0.05, atol=0.05)
    assert list(low.state_dict()) == list(pool.state_dict())  # fp32 weights, same keys
