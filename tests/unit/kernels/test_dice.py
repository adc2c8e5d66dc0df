from __future__ import annotations

import math

import pytest
import torch

from dinrec.kernels import dice as native
from dinrec.layers.activation import Dice, _DiceTrain

pytestmark = pytest.mark.skipif(
    not native.supports(torch.zeros(1, 1)), reason="no C compiler: native kernels unavailable"
)


def reference(v: torch.Tensor, alpha: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Dice with batch statistics by its formula, in float64."""
    mean, var = v.mean(0), v.var(0, unbiased=False)
    p = torch.sigmoid((v - mean) / torch.sqrt(var + eps))
    return v * (alpha + (1 - alpha) * p)


def sig(u: float) -> float:
    return 1.0 / (1.0 + math.exp(-u))


def test_row_bias_matches_hand_computed_values_and_gradients():
    # v = x + bias[rows] = [[1, 2], [3, 6]]: column means (2, 4), biased variances (1, 4).
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0]], requires_grad=True)
    bias = torch.tensor([[1.0, 2.0], [9.0, 9.0], [1.0, 2.0]], requires_grad=True)
    rows = torch.tensor([0, 2])
    alpha = torch.tensor([0.5, -1.0], requires_grad=True)
    out, mean, invstd = native.dice_train(x, alpha, 1e-8, bias, rows)
    assert mean.tolist() == [2.0, 4.0]
    assert invstd.tolist() == pytest.approx([1.0, 0.5], rel=1e-6)
    p_low = sig(-1.0)  # both columns' first row is one std below the mean
    expected = [[1 * (0.5 + 0.5 * p_low), 2 * (-1 + 2 * p_low)],
                [3 * (0.5 + 0.5 * (1 - p_low)), 6 * (-1 + 2 * (1 - p_low))]]
    assert out.tolist() == [pytest.approx(r, rel=1e-6) for r in expected]
    out.sum().backward()
    v = torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64, requires_grad=True)
    a = alpha.detach().double().requires_grad_()
    reference(v, a).sum().backward()
    assert torch.allclose(x.grad.double(), v.grad, atol=1e-6)
    # each bias row gets the sum of its rows' gradients; row 1 is used by no behavior
    assert torch.allclose(bias.grad.double(), torch.stack([v.grad[0], v.grad[0] * 0, v.grad[1]]),
                          atol=1e-6)
    assert torch.allclose(alpha.grad.double(), a.grad, atol=1e-6)


@pytest.mark.parametrize(("n", "h", "with_bias"), [(37, 21, False), (130, 64, True), (2, 16, True)])
def test_matches_the_float64_formula_with_and_without_row_bias(n, h, with_bias):
    torch.manual_seed(n)
    x = (torch.randn(n, h) * 3 + 1).requires_grad_()
    alpha = torch.randn(h).requires_grad_()
    bias = (torch.randn(5, h) * 2).requires_grad_() if with_bias else None
    rows = torch.randint(0, 5, (n,)) if with_bias else None
    out, _, _ = native.dice_train(x, alpha, 1e-8, bias, rows)
    weights = torch.randn(n, h)
    (out * weights).sum().backward()

    x64, a64 = x.detach().double().requires_grad_(), alpha.detach().double().requires_grad_()
    b64 = bias.detach().double().requires_grad_() if bias is not None else None
    v = x64 + b64[rows] if b64 is not None else x64
    ref = reference(v, a64)
    (ref * weights.double()).sum().backward()
    assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5)
    scale = x64.grad.abs().max()
    assert torch.allclose(x.grad.double(), x64.grad, atol=2e-5 * scale)
    assert torch.allclose(alpha.grad.double(), a64.grad, atol=2e-5 * a64.grad.abs().max())
    if b64 is not None:
        assert torch.allclose(bias.grad.double(), b64.grad, atol=2e-5 * b64.grad.abs().max())


def test_equals_the_torch_implementation_it_replaces():
    torch.manual_seed(3)
    x = torch.randn(300, 48) * 2
    alpha = torch.rand(48)
    out, mean, invstd = native.dice_train(x, alpha, 1e-8)
    ref, ref_mean, ref_invstd = _DiceTrain.apply(x, alpha, 1e-8)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(mean, ref_mean, atol=1e-6)
    assert torch.allclose(invstd, ref_invstd, rtol=1e-5)


def test_statistics_stay_accurate_when_the_mean_dwarfs_the_spread():
    # E[v^2] - E[v]^2 in float32 would lose every digit here; the kernel sums (v - v[0]).
    x = 1000.0 + torch.tensor([[0.0], [0.01], [0.02], [0.03]]).repeat(25, 3)
    _, mean, invstd = native.dice_train(x, torch.zeros(3), 1e-8)
    std = x.double().std(0, unbiased=False)
    assert torch.allclose(mean.double(), x.double().mean(0), atol=1e-4)
    assert torch.allclose(1 / invstd.double(), std, rtol=1e-3)


def test_saturated_sigmoids_give_finite_values_and_gradients():
    # One outlier each way among 20k zeros: u = +-141 std, so exp(-u) under/overflows.
    x = torch.zeros(20000, 2)
    x[0], x[1] = 1.0, -1.0
    x.requires_grad_()
    alpha = torch.tensor([0.25, 0.25], requires_grad=True)
    out, _, _ = native.dice_train(x, alpha, 1e-8)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert torch.isfinite(alpha.grad).all()
    assert out[0].tolist() == pytest.approx([1.0, 1.0])  # p = 1: x
    assert out[1].tolist() == pytest.approx([-0.25, -0.25])  # p = 0: alpha * x


def test_rejects_rows_outside_the_bias_and_mismatched_shapes():
    x, alpha = torch.randn(3, 4), torch.zeros(4)
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 2\), got \[0, 2\]"):
        native.dice_train(x, alpha, 1e-8, torch.zeros(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"alpha has shape \(3,\), expected \(4,\)"):
        native.dice_train(x, torch.zeros(3), 1e-8)
    with pytest.raises(ValueError, match="bias and rows together"):
        native.dice_train(x, alpha, 1e-8, torch.zeros(2, 4))


def test_supports_only_what_the_kernel_handles(monkeypatch):
    assert native.supports(torch.zeros(4, 3))
    assert not native.supports(torch.zeros(4, 3, dtype=torch.float64))
    assert not native.supports(torch.zeros(0, 3))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    assert not native.supports(torch.zeros(4, 3))  # torch's parallel ops win there


def test_dice_module_rows_path_equals_dice_of_the_gathered_sum():
    torch.manual_seed(5)
    fused, plain = Dice(6), Dice(6)
    with torch.no_grad():
        fused.alpha.copy_(torch.randn(6))
        plain.alpha.copy_(fused.alpha)
    x, bias, rows = torch.randn(20, 6), torch.randn(4, 6), torch.randint(0, 4, (20,))
    out = fused.forward_rows(x, bias, rows)
    ref = plain(x + bias[rows])
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(fused.running_mean, plain.running_mean, atol=1e-6)
    assert torch.allclose(fused.running_var, plain.running_var, atol=1e-5)
    fused.eval()  # eval: moving statistics, no kernel
    assert torch.allclose(fused.forward_rows(x, bias, rows), fused(x + bias[rows]))


def test_rejects_inputs_the_kernel_cannot_read():
    with pytest.raises(ValueError, match=r"\[N, H\] CPU tensor, got torch.float64 \(3, 4\)"):
        native.dice_train(torch.zeros(3, 4, dtype=torch.float64), torch.zeros(4), 1e-8)
    with pytest.raises(ValueError, match=r"got torch.float32 \(2, 3, 4\)"):
        native.dice_train(torch.zeros(2, 3, 4), torch.zeros(4), 1e-8)
    with pytest.raises(ValueError, match=r"got torch.float32 \(0, 4\)"):
        native.dice_train(torch.zeros(0, 4), torch.zeros(4), 1e-8)
    with pytest.raises(ValueError, match=r"alpha must be float32, got torch\.float64"):
        native.dice_train(torch.zeros(3, 4), torch.zeros(4, dtype=torch.float64), 1e-8)
