"""LazyAdam: Adam for dense parameters, row-wise (lazy) Adam for sparse embedding gradients.

With `sparse_embeddings=True` an embedding table's gradient is a sparse COO tensor holding
only the rows looked up in the batch. torch's Adam refuses sparse gradients and SparseAdam
refuses dense ones, so a DIN (embeddings + dense MLPs) would need two optimizers, two
state dicts and two steps. LazyAdam is one optimizer for both:

- dense gradient: exactly torch.optim.Adam (its functional kernel, fused where possible);
- sparse gradient: only the rows present in the gradient move: their first and second
  moments are updated and the weight takes the Adam step; absent rows, and their moments,
  stay as they are (the "lazy" Adam of TF's LazyAdamOptimizer / torch's SparseAdam). The
  bias correction uses the table's step count, and eps is added as in Adam
  (m_hat / (sqrt(v_hat) + eps)), so a row present in every step follows dense Adam exactly.

Per step a sparse table costs O(rows in the batch), not O(vocabulary): on a 1M-row table
that is the difference between touching 3 x 64 MiB and ~1 MiB (bench/sparse_embeddings.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.adam import adam as adam_functional


class LazyAdam(torch.optim.Optimizer):
    """Adam over dense and sparse gradients alike (see the module docstring).

    Args:
        params: parameters (or parameter groups).
        lr: learning rate.
        betas: (beta1, beta2) moment decay rates.
        eps: added to sqrt(v_hat).
        fused: use torch's fused Adam kernel for the dense parameters (CPU / CUDA floats).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        fused: bool = False,
    ) -> None:
        if lr < 0.0 or eps < 0.0 or not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"LazyAdam: invalid lr={lr}, betas={betas} or eps={eps}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "fused": fused})

    def _state(self, p: torch.Tensor, fused: bool) -> dict[str, torch.Tensor]:
        state = self.state[p]
        if not state:
            # The step count lives on the parameter's device as float32, as the fused
            # kernel expects (the same layout torch.optim.Adam uses, so states interchange).
            device = p.device if fused else torch.device("cpu")
            state["step"] = torch.zeros((), dtype=torch.float32, device=device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            dense: list[torch.Tensor] = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    self._sparse_step(p, group)
                else:
                    dense.append(p)
            if not dense:
                continue
            states = [self._state(p, group["fused"]) for p in dense]
            grads = [p.grad for p in dense if p.grad is not None]  # all of them (see above)
            adam_functional(
                dense,
                grads,
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [],
                [s["step"] for s in states],
                foreach=None if group["fused"] else False,
                fused=group["fused"] or None,
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=0.0,
                eps=group["eps"],
                maximize=False,
            )
        return loss

    def _sparse_step(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """Adam on the rows of a sparse [V, E] gradient; every other row stays put."""
        assert p.grad is not None
        beta1, beta2 = group["betas"]
        state = self._state(p, group["fused"])
        grad = p.grad.coalesce()  # duplicate ids summed: one entry per row
        rows = grad.indices()[0]  # [U]
        values = grad.values()  # [U, E]
        state["step"] += 1
        step = float(state["step"])
        m = state["exp_avg"].index_select(0, rows).lerp_(values, 1.0 - beta1)  # [U, E]
        v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2)
        v.addcmul_(values, values, value=1.0 - beta2)  # [U, E]
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        bias1 = 1.0 - beta1**step
        bias2_sqrt = (1.0 - beta2**step) ** 0.5
        denom = v.sqrt_().div_(bias2_sqrt).add_(group["eps"])  # sqrt(v_hat) + eps
        p.index_add_(0, rows, m.div_(denom), alpha=-group["lr"] / bias1)
