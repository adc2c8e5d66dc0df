from __future__ import annotations

import functools
import math
import operator

import pytest
import torch

from dinrec.layers.activation import Dice, make_activation


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def dice_ref(s: float, mean: float, var: float, alpha: float, eps: float = 1e-8) -> float:
    p = sig((s - mean) / math.sqrt(var + eps))
    return p * s + (1 - p) * alpha * s


def test_dice_uses_batch_statistics_in_training():
    d = Dice(2)
    with torch.no_grad():
        d.alpha.copy_(torch.tensor([0.5, -1.0]))
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    out = d(x)
    # column means (2, 4), biased variances (1, 4)
    expected = [
        [dice_ref(1, 2, 1, 0.5), dice_ref(2, 4, 4, -1.0)],
        [dice_ref(3, 2, 1, 0.5), dice_ref(6, 4, 4, -1.0)],
    ]
    assert out.flatten().tolist() == pytest.approx(
        functools.reduce(operator.iadd, expected, []), abs=1e-6
    )
    assert out[0, 0].item() == pytest.approx(sig(-1) + (1 - sig(-1)) * 0.5, abs=1e-7)


def test_dice_uses_moving_statistics_in_eval():
    d = Dice(2, momentum=0.1)
    d(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    assert d.running_mean.tolist() == pytest.approx([0.2, 0.4])
    assert d.running_var.tolist() == pytest.approx([1.0, 1.3])
    d.eval()
    out = d(torch.tensor([[1.0, 2.0]]))
    assert out[0].tolist() == pytest.approx([dice_ref(1, 0.2, 1.0, 0), dice_ref(2, 0.4, 1.3, 0)])


def test_dice_in_eval_does_not_depend_on_batch_mates():
    d = Dice(3)
    d(torch.randn(16, 3))
    d.eval()
    a = torch.randn(5, 3)
    alone = torch.cat([d(a[i : i + 1]) for i in range(5)])
    assert torch.equal(alone, d(a))


def test_dice_statistics_ignore_masked_positions():
    d = Dice(1)
    x = torch.tensor([[[1.0], [3.0], [100.0]]])  # [B=1, T=3, H=1]
    mask = torch.tensor([[True, True, False]])
    d(x, mask)
    assert d.running_mean.item() == pytest.approx(0.1 * 2.0)
    assert d.running_var.item() == pytest.approx(0.9 + 0.1 * 1.0)


def test_unknown_activation_names_the_setting():
    with pytest.raises(ValueError, match="att_activation: unknown activation 'gelu'"):
        make_activation("gelu", 3, setting="att_activation")


def test_prelu_acts_on_the_last_dim_of_sequences():
    act = make_activation("prelu", 2)
    x = torch.tensor([[[-1.0, 2.0], [-4.0, -2.0], [3.0, 0.0]]])  # [B=1, T=3, H=2]
    assert act(x).tolist() == [[[-0.25, 2.0], [-1.0, -0.5], [3.0, 0.0]]]
