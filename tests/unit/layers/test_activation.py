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


def dice_reference(x: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor | None = None):
    """The paper's formula, statistics gathered from the valid rows (the unfused version)."""
    flat = x.reshape(-1, x.shape[-1])
    rows = flat if mask is None else flat[mask.reshape(-1)]
    mean, var = rows.mean(dim=0), rows.var(dim=0, unbiased=False)
    p = torch.sigmoid((x - mean) / torch.sqrt(var + 1e-8))
    return p * x + (1 - p) * alpha * x, mean, var


@pytest.mark.parametrize("masked", [False, True])
def test_dice_fast_paths_match_the_formula_and_its_gradient(masked):
    torch.manual_seed(0)
    d = Dice(5)
    with torch.no_grad():
        d.alpha.copy_(torch.randn(5))
    x = (torch.randn(4, 6, 5) * 3 + 1).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    alpha_ref = d.alpha.detach().clone().requires_grad_()
    mask = torch.rand(4, 6) < 0.7 if masked else None
    out = d(x, mask)
    ref, mean, var = dice_reference(x_ref, alpha_ref, mask)
    assert torch.allclose(out, ref, atol=1e-5)
    weights = torch.randn(4, 6, 5)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    assert x.grad is not None and x_ref.grad is not None and d.alpha.grad is not None
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-4)
    assert torch.allclose(d.alpha.grad, alpha_ref.grad, atol=1e-4)
    assert torch.allclose(d.running_mean, 0.1 * mean, atol=1e-6)
    assert torch.allclose(d.running_var, 0.9 + 0.1 * var, atol=1e-5)


def test_dice_eval_without_autograd_equals_eval_with_autograd():
    d = Dice(4)
    d(torch.randn(32, 4) * 2)
    with torch.no_grad():
        d.alpha.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    d.eval()
    x = torch.randn(3, 7, 4)
    with torch.inference_mode():
        fast = d(x)
    assert torch.allclose(fast, d(x.clone().requires_grad_()), atol=1e-6)


def test_dice_on_an_empty_batch_uses_moving_statistics():
    d = Dice(2)
    assert d(torch.zeros(0, 2)).shape == (0, 2)
    assert d(torch.ones(1, 3, 2), torch.zeros(1, 3, dtype=torch.bool)).shape == (1, 3, 2)
    assert d.running_var.tolist() == [1.0, 1.0]


def test_dice_hand_written_backward_passes_gradcheck_in_float64():
    from dinrec.layers.activation import _DiceTrain

    torch.manual_seed(1)
    x = (torch.randn(7, 3, dtype=torch.float64) * 2 + 0.5).requires_grad_()
    alpha = torch.randn(3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: _DiceTrain.apply(a, b, 1e-8)[0], (x, alpha))
