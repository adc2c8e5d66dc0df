"""The exported graph's channels-first activation unit scores as the unit does."""

from __future__ import annotations

import pytest
import torch

from dinrec.layers.activation import Dice
from dinrec.layers.attention import ActivationUnit
from dinrec.serving.channels_first import channels_first_scores

E, T, C = 6, 5, 4


def _unit(activation: str, hidden: tuple[int, ...] = (8, 4), side_dim: int = 0) -> ActivationUnit:
    torch.manual_seed(0)
    unit = ActivationUnit(E, hidden, activation, side_dim=side_dim)
    with torch.no_grad():
        for p in unit.parameters():
            p.uniform_(-0.8, 0.8)
        for m in unit.modules():
            if isinstance(m, Dice):  # moving statistics away from 0 / 1
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 2.0)
    return unit.eval()


def _want(unit: ActivationUnit, keys: torch.Tensor, query: torch.Tensor, row_user: torch.Tensor,
          side: torch.Tensor | None = None) -> torch.Tensor:
    """The unit on each candidate's own copy of its user's behaviors: [C, T]."""
    rows = keys.index_select(0, row_user)
    return unit(query, rows, side=None if side is None else side.index_select(0, row_user))


@pytest.mark.parametrize("activation", ["dice", "prelu", "relu", "sigmoid", "tanh", "linear"])
@pytest.mark.parametrize("row_user", [[0, 0, 0, 0], [0, 1, 2, 3], [1, 0, 1, 1]])
def test_every_activation_scores_as_the_unit_for_one_user_and_for_many(
    activation: str, row_user: list[int]
) -> None:
    unit = _unit(activation)
    gen = torch.Generator().manual_seed(1)
    users = max(row_user) + 1  # U = 1 takes the broadcast branch, U > 1 the gathered one
    keys, query = torch.randn(users, T, E, generator=gen), torch.randn(C, E, generator=gen)
    rows = torch.tensor(row_user)
    with torch.no_grad():
        got = channels_first_scores(unit, keys, query, rows)
        want = _want(unit, keys, query, rows)
    assert got.shape == (C, T)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_unit_without_hidden_layers_and_one_with_per_behavior_values() -> None:
    gen = torch.Generator().manual_seed(2)
    keys, query = torch.randn(2, T, E, generator=gen), torch.randn(C, E, generator=gen)
    side = torch.randn(2, T, 3, generator=gen)
    rows = torch.tensor([1, 1, 0, 1])
    with torch.no_grad():
        bare = _unit("dice", hidden=())
        torch.testing.assert_close(channels_first_scores(bare, keys, query, rows),
                                   _want(bare, keys, query, rows), atol=1e-5, rtol=1e-5)
        timed = _unit("dice", side_dim=3)
        torch.testing.assert_close(channels_first_scores(timed, keys, query, rows, side),
                                   _want(timed, keys, query, rows, side), atol=1e-5, rtol=1e-5)


def test_dice_uses_its_moving_statistics_exactly() -> None:
    # One channel, one behavior, hand-computed: x = w * (k * q) + (wk' k + wq' q + b).
    unit = ActivationUnit(1, (1,), "dice").eval()
    with torch.no_grad():
        unit.first.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 2.0]]))  # x = k + 2 k q
        unit.first.bias.fill_(0.5)
        dice = unit.first_act
        assert isinstance(dice, Dice)
        dice.alpha.fill_(0.25)
        dice.running_mean.fill_(1.0)
        dice.running_var.fill_(4.0 - dice.eps)  # rstd = 0.5
        assert unit.out is not None
        unit.out.weight.fill_(1.0)
        unit.out.bias.fill_(0.0)
        got = channels_first_scores(unit, torch.tensor([[[1.0]]]), torch.tensor([[0.5]]),
                                    torch.tensor([0]))
    x = 1.0 + 2.0 * 0.5 + 0.5  # 2.5
    p = torch.sigmoid(torch.tensor((x - 1.0) * 0.5))
    assert float(got) == pytest.approx(float(x * (0.25 + 0.75 * p)), abs=1e-6)
