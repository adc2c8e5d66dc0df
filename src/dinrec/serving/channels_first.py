"""The activation unit over (candidate, behavior) pairs in channels-first layout, for export.

The exported graph (serving/onnx_export.py) runs the unit with ONNX Runtime, one node at a
time, each writing its whole [P, H] array (P = C * T pairs, 5,000 for 100 candidates x 50
behaviors). Laid out [P, H] as in eager torch, every per-channel constant (Dice's moving
statistics and alpha, PReLU's slope) broadcasts along the last axis, and ORT's binary ops
then step through P spans of H = 80 floats. A one-node graph adding [80] to [5000, 80] ran
in 114 us; adding [80, 1] to [80, 5000], one span of 5,000 per channel, in 49 us (~45 us of
each is the run's own overhead). The unit's two Dice layers make 12 such passes.

So here every layer's activations are [H, P], and each Linear is a Gemm with its weight on
the left, W [H', H] @ x [H, P]. The first layer is split as in BroadcastForward
(W [k, q, k - q, k * q] + b = Wk' k + Wp (k * q) + (Wq' q + b)), pairs in (behavior,
candidate) order:

    x [H, T, C] = Wp [H, E] @ (k * q) [E, T, C]  +  (Wk' k) [H, T, 1]  +  (Wq' q + b) [H, 1, C]
                  per pair                           user                  per candidate

The user share is computed once per user row, nothing of width 4E is formed, and the two
shares broadcast against each other along spans of C. A rank call has one user row; rows
of many users (stateless scoring) gather each candidate's instead, in the other branch of
an If node. Dice's two per-channel affine steps are each one BatchNormalization node (one
pass instead of a Mul and an Add). The forward pass of a rank call (100 x 50,
bench/serve_phases.py --backend onnx) took 1.7-1.9 ms of CPU against 2.3-3.2 ms with the
[P, H] graph, side by side on the 2-core box.

Shapes: keys [U, T, E], query [C, E], row_user [C], side [U, T, S] or None -> scores [C, T].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dinrec.layers.activation import Dice, MaskedActivation, PReLU
from dinrec.layers.attention import ActivationUnit


def channels_first_scores(
    unit: ActivationUnit, keys: torch.Tensor, query: torch.Tensor, row_user: torch.Tensor,
    side: torch.Tensor | None = None,
) -> torch.Tensor:
    """Raw unit scores [C, T] of each candidate against its user's behaviors (eval mode)."""
    n, t, e = query.shape[0], keys.shape[1], unit.dim
    w_key, w_query = unit.split_first()  # [H, 2E + S] on [k, k*q, s]; [H, E]
    user = torch.matmul(keys, w_key[:, :e].t())  # Wk' k [U, T, H]
    if side is not None:
        user = user + torch.matmul(side, w_key[:, 2 * e :].t())  # + Ws s
    per_candidate = torch.addmm(unit.first.bias.unsqueeze(1), w_query, query.t())  # [H, C]
    operands = (keys.permute(2, 1, 0).contiguous(), user.permute(2, 1, 0).contiguous(),
                query.t().contiguous(), per_candidate, row_user)
    # [E, T, U], [H, T, U], [E, C], [H, C], [C]. A rank call (U = 1) broadcasts its user over
    # the candidates; rows of many users gather theirs (an If node in the graph: the gather
    # would copy [H, T, C] for nothing).
    pairs, base = torch.cond(keys.shape[0] == 1, _one_user, _gathered, operands)
    x = torch.addmm(base.reshape(-1, t * n), w_key[:, e : 2 * e], pairs.reshape(e, t * n))
    if unit.first_act is not None:
        x = _activation(unit.first_act, x)
        for linear, act in zip(unit.rest.linears, unit.rest.acts, strict=True):
            assert isinstance(linear, nn.Linear)
            x = _activation(act, torch.addmm(linear.bias.unsqueeze(1), linear.weight, x))
        assert unit.out is not None
        x = torch.addmm(unit.out.bias.unsqueeze(1), unit.out.weight, x)  # [1, P]
    return x.reshape(t, n).t()


def _one_user(
    keys: torch.Tensor, user: torch.Tensor, query: torch.Tensor, per_candidate: torch.Tensor,
    row_user: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(k * q [E, T, C], user + candidate shares [H, T, C]) of one user's rank call."""
    # contiguous: the two branches of a cond must lay their outputs out alike
    return ((keys[:, :, :1] * query.unsqueeze(1)).contiguous(),
            (user[:, :, :1] + per_candidate.unsqueeze(1)).contiguous())


def _gathered(
    keys: torch.Tensor, user: torch.Tensor, query: torch.Tensor, per_candidate: torch.Tensor,
    row_user: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same with each candidate's own user row: row_user [C] indexes the last axis (U)."""
    return ((keys.index_select(2, row_user) * query.unsqueeze(1)).contiguous(),
            (user.index_select(2, row_user) + per_candidate.unsqueeze(1)).contiguous())


def _activation(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One of the unit's activations on [H, P], its per-channel parameters as columns [H, 1]."""
    if isinstance(act, Dice):
        # Eval Dice with the moving statistics: x * (alpha + (1 - alpha) * sigmoid(u)),
        # u = (x - mean) * rstd (Dice._with_stats, channel first)
        rstd = torch.rsqrt(act.running_var + act.eps)
        u = _affine(x, rstd, -act.running_mean * rstd)
        return x * _affine(torch.sigmoid(u), 1.0 - act.alpha, act.alpha)
    if isinstance(act, PReLU):
        return torch.where(x > 0, x, act.alpha.unsqueeze(1) * x)
    if isinstance(act, MaskedActivation):
        return act.fn(x)  # element-wise (ReLU, sigmoid, ...): the layout does not matter
    raise TypeError(f"att_activation: no channels-first form of {type(act).__name__}")


def _affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x * scale + shift per channel, x [H, P]: one BatchNormalization node in the graph (one
    pass over x; Mul then Add would be two)."""
    ones = torch.ones_like(scale)
    return F.batch_norm(x.unsqueeze(0), torch.zeros_like(scale), ones, scale, shift,
                        False, 0.0, 0.0).squeeze(0)
