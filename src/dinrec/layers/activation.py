"""Activations: the paper's Dice, PReLU, and a by-name factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from dinrec.kernels import dice as native_dice

ACTIVATIONS = ("relu", "dice", "prelu", "sigmoid", "tanh", "linear")


class Dice(nn.Module):
    """Data-adaptive PReLU (DIN paper, eq. 9).

    p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps)),  f(s) = p(s) * s + (1 - p(s)) * alpha * s.

    In training E and Var are the mini-batch's per-channel statistics (biased variance), and
    moving averages are updated: running = (1 - momentum) * running + momentum * batch. In eval
    the moving averages are used, so a sample's output never depends on its batch-mates.
    With a mask, statistics are taken over the valid positions only, so padded history slots
    neither shift nor dilute the batch statistics.

    Args:
        num_features: channels H (the last dim of the input).
        eps: added to the variance (the paper's epsilon, 1e-8).
        momentum: weight of the batch statistic in the moving average.

    Shapes: input [..., H]; optional mask [...] (bool, True = valid); output like input.

    Example:
        >>> d = Dice(3).eval()
        >>> d(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, eps: float = 1e-8, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.alpha = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        # Set by dinrec.training.distributed.sync.sync_dice under DDP: the training forward
        # with statistics over every rank's batch (as SyncBatchNorm); None: this batch's.
        self.sync: Callable[..., torch.Tensor] | None
        self.sync = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and self.sync is not None:
            return self.sync(self, x, mask)
        if not self.training:
            return self._moving(x)
        flat = x.reshape(-1, x.shape[-1])  # [N, H]
        if mask is None:
            if flat.shape[0] == 0:  # nothing to estimate from
                return self._moving(x)
            # One fused op normalises and returns the batch statistics; its backward is one
            # fused kernel too (the eager chain mean/var/sub/mul/rsqrt is ~10 passes over
            # [N, H], and var along dim 0 alone is ~100x slower than mean on CPU).
            if native_dice.supports(flat):  # two passes forward, two backward (dice.c)
                out, mean, invstd = native_dice.dice_train(flat, self.alpha, self.eps)
            elif torch.compiler.is_compiling():  # Inductor fuses the plain ops better
                u, mean, invstd = torch.native_batch_norm(
                    flat, None, None, None, None, True, 0.0, self.eps
                )
                out = self._finish(flat, u)
            else:
                out, mean, invstd = _DiceTrain.apply(flat, self.alpha, self.eps)
            self._update_moving(mean, invstd)
            return out.reshape(x.shape)
        # Masked statistics as weighted sums over all rows (no boolean gather): w [N] is 1
        # for valid rows, so mean = w @ x / n and var = w @ (x - mean)^2 / n.
        w = mask.reshape(1, -1).to(flat.dtype)  # [1, N]
        n = w.sum()
        if not bool(n > 0):  # an all-padding batch: nothing to estimate from
            return self._moving(x)
        mean = (w @ flat).squeeze(0) / n  # [H]
        centered = flat - mean  # [N, H]
        var = (w @ centered.square()).squeeze(0) / n  # [H], biased
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach(), self.momentum)
        u = centered * torch.rsqrt(var + self.eps)
        return self._finish(flat, u).reshape(x.shape)

    def forward_rows(self, x: torch.Tensor, bias: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Dice of x + bias[rows] without a mask: x [N, H], bias [B, H], rows [N] -> [N, H].

        The activation unit's first layer is a per-behavior GEMM plus the sample's query part
        (one row of bias per sample); in training the native kernel adds that row on the fly
        and returns its gradient as a per-sample sum, so the [N, H] sum is never gathered.
        """
        if self.training and self.sync is None and native_dice.supports(x):
            out, mean, invstd = native_dice.dice_train(x, self.alpha, self.eps, bias, rows)
            self._update_moving(mean, invstd)
            return out
        if self.training and self.sync is not None:  # statistics over every rank's rows
            return self.sync(self, x, None, bias, rows)
        return self.forward(x + bias.index_select(0, rows))

    def _update_moving(self, mean: torch.Tensor, invstd: torch.Tensor) -> None:
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(invstd.pow(-2) - self.eps, self.momentum)

    def _finish(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """f = x * (alpha + p * (1 - alpha)) with p = sigmoid(u): p*s + (1-p)*alpha*s."""
        p = torch.sigmoid(u)
        return x * torch.addcmul(self.alpha, p, 1.0 - self.alpha)

    def _moving(self, x: torch.Tensor) -> torch.Tensor:
        """Dice with the moving statistics."""
        return self._with_stats(x, self.running_mean, torch.rsqrt(self.running_var + self.eps))

    def _with_stats(self, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
        """Dice with fixed statistics (eval, or no valid row): u = x * rstd - mean * rstd."""
        u = torch.addcmul(-mean * rstd, x, rstd)
        if torch.is_grad_enabled():
            return self._finish(x, u)
        # No autograd graph (predict runs under inference_mode): reuse buffers in place.
        p = u.sigmoid_()
        return p.mul_(1.0 - self.alpha).add_(self.alpha).mul_(x)

    def extra_repr(self) -> str:
        return f"{self.alpha.shape[0]}, eps={self.eps}, momentum={self.momentum}"


class _DiceTrain(torch.autograd.Function):
    """Dice with batch statistics, forward and backward by hand: x [N, H] -> f(x) [N, H].

    Same values as native_batch_norm -> sigmoid -> x * (alpha + p (1 - alpha)) through
    autograd, with fewer passes over [N, H]: p is computed in u's buffer, only x and p are
    kept for backward (autograd keeps x, u, p and the factor), and the backward is one
    batch-norm backward plus four element-wise passes (~15% less CPU time for the
    activation unit's [9k, 64] Dice on ml100k).
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, alpha: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u, mean, invstd = torch.native_batch_norm(x, None, None, None, None, True, 0.0, eps)
        p = u.sigmoid_()  # [N, H]
        out = torch.addcmul(alpha, p, 1.0 - alpha).mul_(x)  # x * (alpha + p (1 - alpha))
        ctx.save_for_backward(x, p, alpha, mean, invstd)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, invstd)
        return out, mean, invstd

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad: torch.Tensor, *_: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        x, p, alpha, mean, invstd = ctx.saved_tensors
        gx = grad * x  # dL/d(factor), factor = alpha + p (1 - alpha)   [N, H]
        grad_alpha = gx.sum(0) - (gx * p).sum(0)  # d factor / d alpha = 1 - p   [H]
        # dL/du = gx * (1 - alpha) * p (1 - p), then through the normalisation.
        grad_u = torch.ops.aten.sigmoid_backward(gx, p).mul_(1.0 - alpha)
        grad_x, _, _ = torch.ops.aten.native_batch_norm_backward(
            grad_u, x, None, None, None, mean, invstd, True, ctx.eps, [True, False, False]
        )
        grad_x.addcmul_(grad, torch.addcmul(alpha, p, 1.0 - alpha))  # + dL/dx at fixed factor
        return grad_x, grad_alpha, None


class PReLU(nn.Module):
    """PReLU over the last dim: f(s) = s if s > 0 else alpha * s, one alpha per channel.

    torch's nn.PReLU puts channels on dim 1, which is T (not H) for [B, T, H] inputs.

    Shapes: [..., H] -> [..., H].
    """

    def __init__(self, num_features: int, init: float = 0.25) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((num_features,), init))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.where(x > 0, x, self.alpha * x)


class MaskedActivation(nn.Module):
    """Wraps an element-wise activation so every activation takes (x, mask)."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.fn(x)


def make_activation(name: str, num_features: int, *, setting: str = "activation") -> nn.Module:
    """An activation by name: relu, dice, prelu, sigmoid, tanh or linear.

    Every returned module is called as module(x, mask=None).
    """
    key = name.lower() if isinstance(name, str) else name
    if key == "dice":
        return Dice(num_features)
    if key == "prelu":
        return PReLU(num_features)
    table: dict[str, nn.Module] = {
        "relu": nn.ReLU(),
        "sigmoid": nn.Sigmoid(),
        "tanh": nn.Tanh(),
        "linear": nn.Identity(),
    }
    if key not in table:
        raise ValueError(f"{setting}: unknown activation {name!r}; valid: {list(ACTIVATIONS)}")
    return MaskedActivation(table[key])
