"""Activations: the paper's Dice, PReLU, and a by-name factory."""

from __future__ import annotations

import torch
from torch import nn

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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            flat = x.reshape(-1, x.shape[-1])  # [N, H]
            if mask is not None:
                flat = flat[mask.reshape(-1)]
            if flat.shape[0] > 0:
                mean = flat.mean(dim=0)
                var = flat.var(dim=0, unbiased=False)
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_var.lerp_(var.detach(), self.momentum)
            else:  # an all-padding batch: nothing to estimate from
                mean, var = self.running_mean, self.running_var
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((x - mean) * torch.rsqrt(var + self.eps))
        # p*s + (1-p)*alpha*s == s * (alpha + p * (1 - alpha)): one fewer full-size op.
        return x * (self.alpha + p * (1.0 - self.alpha))

    def extra_repr(self) -> str:
        return f"{self.alpha.shape[0]}, eps={self.eps}, momentum={self.momentum}"


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
