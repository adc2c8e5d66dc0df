"""The serving forward against the model on expanded inputs, for the parity tests."""

from __future__ import annotations

from typing import Any

import torch

from dinrec.serving.broadcast import BroadcastForward


def broadcast_max_diff(model: Any, user: dict[str, torch.Tensor],
                       cands: dict[str, torch.Tensor],
                       row_user: torch.Tensor | None = None) -> float:
    """max |BroadcastForward(user, cands) - model(user copied to each candidate, cands)|.

    user tensors have 1 row (copied C times for the model) or C rows; the model's scores
    must vary (std > 1e-3), so the comparison is of something."""
    n = len(next(iter(cands.values())))
    expanded = {k: v.expand(n, *v.shape[1:]).contiguous() for k, v in user.items()}
    with torch.inference_mode():
        want = model({**expanded, **cands}).squeeze(-1)
        got = BroadcastForward(model)(user, cands, row_user)
    assert got.shape == want.shape
    assert want.std() > 1e-3  # the check compares something
    return float((got - want).abs().max())
