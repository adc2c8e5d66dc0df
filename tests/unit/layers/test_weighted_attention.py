"""Attention pooling with each behavior's own weight (weight_name): interest = sum a_t w_t k_t."""

from __future__ import annotations

import math

import pytest
import torch

from dinrec.layers import compiled
from dinrec.layers.attention import AttentionPooling
from dinrec.layers.packing import pack

# One user, T=3 behaviors of width E=2, the last one padding.
KEYS = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [7.0, 7.0]]])  # [1, 3, 2]
MASK = torch.tensor([[True, True, False]])
QUERY = torch.tensor([[0.5, 1.0]])  # [1, 2]


def _pooling(normalize: bool = False) -> AttentionPooling:
    """A unit without hidden layers whose score is the key's first coordinate: a = [1, 3]."""
    pooling = AttentionPooling(2, hidden_units=(), weight_normalization=normalize)
    with torch.no_grad():
        pooling.unit.first.weight.zero_()
        pooling.unit.first.weight[0, 0] = 1.0  # the k part of [k, q, k - q, k * q]
        pooling.unit.first.bias.zero_()
    return pooling.eval()


def _interest(weights: list[float], normalize: bool = False) -> list[float]:
    with torch.no_grad():
        interest, _ = _pooling(normalize)(QUERY, KEYS, MASK, behavior=torch.tensor([weights]))
    return interest[0].tolist()


def test_unit_weights_times_behavior_weights_pool_the_keys():
    # a = [1, 3]; w = [1, 1]: 1 * [1, 2] + 3 * [3, 4].
    assert _interest([1.0, 1.0, 1.0]) == pytest.approx([10.0, 14.0])
    with torch.no_grad():
        _, weights = _pooling()(QUERY, KEYS, MASK, behavior=torch.tensor([[0.5, 2.0, 1.0]]))
    assert weights[0].tolist() == pytest.approx([0.5, 6.0, 0.0])  # a_t * w_t, 0 at padding


def test_weight_zero_removes_the_behavior():
    without_first = [[[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]]]
    with torch.no_grad():
        removed, _ = _pooling()(QUERY, torch.tensor(without_first),
                                torch.tensor([[True, False, False]]))
    assert _interest([0.0, 1.0, 1.0]) == pytest.approx(removed[0].tolist()) == [9.0, 12.0]


def test_weight_two_doubles_the_behaviors_contribution():
    # The first behavior contributes 1 * [1, 2]; doubled: [2, 4] + [9, 12].
    assert _interest([2.0, 1.0, 1.0]) == pytest.approx([11.0, 16.0])


def test_padding_contributes_nothing_whatever_its_weight():
    assert _interest([1.0, 1.0, 5.0]) == pytest.approx([10.0, 14.0])


def test_behavior_weights_multiply_the_softmax_weights():
    # softmax([1, 3]) = [1, e^2] / (1 + e^2); then the behavior weights [2, 1].
    s = 1.0 + math.exp(2.0)
    a0, a1 = 1.0 / s, math.exp(2.0) / s
    want = [2 * a0 * 1 + a1 * 3, 2 * a0 * 2 + a1 * 4]
    assert _interest([2.0, 1.0, 9.0], normalize=True) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_packed_pooling_equals_the_padded_forward(normalize):
    torch.manual_seed(0)
    pooling = AttentionPooling(2, hidden_units=(4,), activation="prelu",
                               weight_normalization=normalize).eval()
    keys = torch.randn(2, 3, 2)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    behavior = torch.tensor([[0.5, 2.0, 5.0], [3.0, 5.0, 5.0]])
    query = torch.randn(2, 2)
    packed = pack(mask)
    with torch.no_grad():
        padded, padded_weights = pooling(query, keys, mask, behavior=behavior)
        rows = packed.gather(behavior.unsqueeze(-1)).squeeze(-1)  # [N]
        interest, weights = pooling.pool_packed(query, packed.gather(keys), packed, None, rows)
        _, plain_weights = pooling(query, keys, mask)
    assert torch.allclose(interest, padded, atol=1e-6)
    assert torch.allclose(packed.unpack(weights), padded_weights, atol=1e-6)
    assert torch.allclose(padded_weights, plain_weights * behavior * mask, atol=1e-6)


def test_compiled_weighted_pooling_matches_eager_with_gradients():
    torch.manual_seed(1)
    eager = AttentionPooling(3, hidden_units=(4,), activation="dice")
    fast = AttentionPooling(3, hidden_units=(4,), activation="dice")
    fast.load_state_dict(eager.state_dict())
    fast.unit.compile_packed(True)
    q, keys = torch.randn(4, 3), torch.randn(4, 5, 3)
    mask = torch.rand(4, 5) < 0.7
    behavior = torch.rand(4, 5) * 3
    grads = []
    for pooling in (eager, fast):
        k = keys.clone().requires_grad_()
        interest, weights = pooling(q, k, mask, behavior=behavior)
        interest.pow(2).sum().backward()
        grads.append((interest, weights, k.grad))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(eager.unit.first.weight.grad, fast.unit.first.weight.grad, atol=1e-5)
    assert compiled.compile_failed() is None
