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
from torch import Tensor, nn
from torch.nn import functional as F

from dinrec.layers.activation import Dice, MaskedActivation, PReLU
from dinrec.layers.attention import ActivationUnit


def channels_first_scores(
    unit: ActivationUnit, keys: torch.Tensor, query: torch.Tensor, row_user: torch.Tensor,
    side: torch.Tensor | None = None,
) -> torch.Tensor:
    """Raw unit scores [C, T] of each candidate against its user's behaviors (eval mode)."""
    e = unit.dim
    w_key, _ = unit.split_first()  # [H, 2E + S] acting on [k, k*q, s]
    w_pair = w_key[:, e : 2 * e]  # Wp [H, E]
    user = torch.matmul(keys, w_key[:, :e].t())  # Wk' k [U, T, H]
    if side is not None:
        user = user + torch.matmul(side, w_key[:, 2 * e :].t())  # + Ws s
    per_candidate = unit.query_part(query)  # Wq' q + b [C, H]
    operands = (keys.permute(2, 1, 0).contiguous(), user.permute(2, 1, 0).contiguous(),
                query, per_candidate, row_user)
    # [E, T, U], [H, T, U], [C, E], [C, H], [C]. A rank call (U = 1) broadcasts its user over
    # the candidates; rows of many users gather theirs. The whole unit runs in each branch of
    # the graph's If node, so what leaves the branch is [T, C], not [H, T, C] (ONNX Runtime
    # copies a branch's outputs: ~70 us for the first layer's inputs). C enters the branches
    # only as a size ([C, ...] inputs): traced from a stride, it exports as sym_stride, which
    # has no ONNX form.

    def one_user(keys: Tensor, user: Tensor, query: Tensor, per_candidate: Tensor,
                 row_user: Tensor) -> Tensor:
        pairs = keys[:, :, :1] * query.t().unsqueeze(1)  # k * q [E, T, C]
        return _layers(unit, w_pair, pairs, user[:, :, :1] + per_candidate.t().unsqueeze(1))

    def gathered(keys: Tensor, user: Tensor, query: Tensor, per_candidate: Tensor,
                 row_user: Tensor) -> Tensor:
        # each candidate's own user row: row_user [C] indexes the last axis (U)
        pairs = keys.index_select(2, row_user) * query.t().unsqueeze(1)
        base = user.index_select(2, row_user) + per_candidate.t().unsqueeze(1)
        return _layers(unit, w_pair, pairs, base)

    return torch.cond(keys.shape[0] == 1, one_user, gathered, operands).t()  # [C, T]


def _layers(unit: ActivationUnit, w_pair: Tensor, pairs: Tensor, base: Tensor) -> Tensor:
    """The unit from k * q [E, T, C], its first-layer weight Wp [H, E] and the user and
    candidate shares [H, T, C]: scores [T, C] (so both branches of the cond return one
    contiguous layout)."""
    x = torch.addmm(base.flatten(1), w_pair, pairs.flatten(1))  # [H, T * C]
    if unit.first_act is not None:
        x = _activation(unit.first_act, x)
        for linear, act in zip(unit.rest.linears, unit.rest.acts, strict=True):
            assert isinstance(linear, nn.Linear)
            x = _activation(act, torch.addmm(linear.bias.unsqueeze(1), linear.weight, x))
        assert unit.out is not None
        x = torch.addmm(unit.out.bias.unsqueeze(1), unit.out.weight, x)  # [1, P]
    return x.reshape(pairs.shape[1], -1)


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


def pooled(weights: torch.Tensor, values: torch.Tensor, row_user: torch.Tensor) -> torch.Tensor:
    """Interest vectors [C, V]: weights [C, T] over each candidate's user's values [U, T, V].

    One user: one [C, T] @ [T, V] product; rows of many users: a batched product over the
    values gathered per candidate (the If node's other branch)."""
    return torch.cond(values.shape[0] == 1, _pooled_one_user, _pooled_gathered,
                      (weights, values, row_user))


def _pooled_one_user(
    weights: torch.Tensor, values: torch.Tensor, row_user: torch.Tensor
) -> torch.Tensor:
    return torch.matmul(weights, values[0])


def _pooled_gathered(
    weights: torch.Tensor, values: torch.Tensor, row_user: torch.Tensor
) -> torch.Tensor:
    gathered = values.index_select(0, row_user)  # [C, T, V]
    return torch.bmm(weights.unsqueeze(1), gathered).squeeze(1)
