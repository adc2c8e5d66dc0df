"""MLP: the fully connected tower used by the DIN head and the activation unit."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dinrec.layers.activation import make_activation


class MLP(nn.Module):
    """Stack of Linear -> (BatchNorm) -> activation -> (Dropout) blocks.

    Args:
        in_dim: input width.
        hidden_units: widths of the hidden layers.
        activation: name for make_activation (Dice/PReLU get one set of params per layer).
        use_bn: BatchNorm1d after each Linear (DeepCTR's dnn_use_bn).
        dropout: dropout rate after each activation.

    Shapes: [..., in_dim] -> [..., hidden_units[-1]] (in_dim when there are no layers); an
    optional mask [...] is passed to Dice so padded rows do not enter batch statistics.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_units: Sequence[int],
        activation: str = "relu",
        use_bn: bool = False,
        dropout: float = 0.0,
        *,
        setting: str = "dnn_activation",
    ) -> None:
        super().__init__()
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        width = in_dim
        for units in hidden_units:
            self.linears.append(nn.Linear(width, units))
            self.norms.append(nn.BatchNorm1d(units) if use_bn else nn.Identity())
            self.acts.append(make_activation(activation, units, setting=setting))
            width = units
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_dim = width

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for linear, norm, act in zip(self.linears, self.norms, self.acts, strict=True):
            x = linear(x)
            if not isinstance(norm, nn.Identity):
                x = norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)
            x = self.dropout(act(x, mask))
        return x
