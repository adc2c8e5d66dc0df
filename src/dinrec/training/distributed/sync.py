"""What must cross ranks inside one training step, and the evaluation gather.

- Dice statistics over the global batch (as SyncBatchNorm does for BatchNorm), so a layer
  normalises with the same mean and variance as one process with the whole batch would.
- MBA's ids: the union of every rank's batch ids per table, so each rank adds the penalty of
  the global batch (gradients are averaged over ranks, so the average is that penalty).
- Sparse embedding gradients where DDP cannot all-reduce them (NCCL has no sparse
  all-reduce): gathered (indices, values) from every rank, summed, divided by world size.
- Evaluation scores: gathered from every rank, padded duplicates dropped by global row id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from dinrec.layers.activation import Dice
from dinrec.training.distributed.launch import all_gather_rows, get_world_size, is_distributed


# ----- Dice --------------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the backward sums each rank's gradient the same way."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _AllReduceSum.apply(grad, ctx.group), None


def all_reduce_sum(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """tensor summed over ranks, differentiable (torch.distributed.nn's is deprecated)."""
    out: torch.Tensor = _AllReduceSum.apply(tensor, group)
    return out


class DiceSync:
    """Dice's training forward with batch statistics over all ranks (set as Dice.sync).

    One differentiable all-reduce per call, of the float64 sums (x, x^2, count): in float64,
    var = E[x^2] - E[x]^2 has no float32 cancellation, and one collective instead of two
    (mean, then centred squares) halves the waits, which dominate on busy CPUs. Its backward
    sums each rank's gradient of the statistics, which with DDP's gradient average gives the
    gradient of the global batch's mean loss, as in one process.

    Args:
        group: the process group (a side group keeps these out of DDP's gradient buckets).
    """

    def __init__(self, group: Any = None) -> None:
        self.group = group

    def __call__(self, dice: Dice, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = x.shape[-1]
        flat = x.reshape(-1, h)  # [N, H]
        wide = flat.double()
        if mask is None:
            local = torch.cat([wide.sum(dim=0), wide.square().sum(dim=0),
                               wide.new_full((1,), float(flat.shape[0]))])
        else:
            w = mask.reshape(1, -1).double()  # [1, N], 1 = valid position
            local = torch.cat([(w @ wide).squeeze(0), (w @ wide.square()).squeeze(0),
                               w.sum().reshape(1)])
        total = all_reduce_sum(local, self.group)  # [2H + 1]: sums, sums of squares, count
        count = total[2 * h]
        if not bool(count > 0):  # no valid position on any rank: fixed statistics
            rstd = torch.rsqrt(dice.running_var + dice.eps)
            return _dice(x, (x - dice.running_mean) * rstd, dice.alpha)
        mean64 = total[:h] / count
        var64 = (total[h : 2 * h] / count - mean64.square()).clamp_min(0.0)  # biased
        mean, var = mean64.to(x.dtype), var64.to(x.dtype)  # [H]
        with torch.no_grad():
            dice.running_mean.lerp_(mean.detach(), dice.momentum)
            dice.running_var.lerp_(var.detach(), dice.momentum)
        u = (flat - mean) * torch.rsqrt(var + dice.eps)
        return _dice(flat, u, dice.alpha).reshape(x.shape)


def _dice(x: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """f = p*x + (1-p)*alpha*x with p = sigmoid(u), written as x * (alpha + p*(1-alpha))."""
    return x * (alpha + torch.sigmoid(u) * (1.0 - alpha))


def sync_dice(model: torch.nn.Module, group: Any = None) -> int:
    """Make every Dice of `model` use global batch statistics; returns how many."""
    hook = DiceSync(group)
    found = 0
    for module in model.modules():
        if isinstance(module, Dice):
            module.sync = hook
            found += 1
    return found


# ----- MBA ids ------------------------------------------------------------------------------
class GlobalTableIds:
    """Regularizer ids hook: each table's unique ids over every rank's batch.

    One variable-length all-gather per step: each rank sends [len per table..., ids...].
    """

    def __init__(self, group: Any = None) -> None:
        self.group = group

    def __call__(self, ids_by_table: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not is_distributed():
            return ids_by_table
        tables = list(ids_by_table)
        local = [torch.unique(ids_by_table[t]) for t in tables]
        lengths = torch.tensor([u.numel() for u in local], dtype=torch.int64)
        payload = torch.cat([lengths, *local])  # [T + sum of lengths]
        per_table: dict[str, list[torch.Tensor]] = {t: [] for t in tables}
        for part in all_gather_rows(payload, self.group):
            sizes = part[: len(tables)].tolist()
            for t, ids in zip(tables, part[len(tables):].split(sizes), strict=True):
                per_table[t].append(ids)
        return {t: torch.unique(torch.cat(parts)) for t, parts in per_table.items()}


# ----- sparse gradients --------------------------------------------------------------------
class GradientGather:
    """Averages one parameter's gradient over ranks right after backward accumulates it.

    For parameters kept out of DDP (sparse embedding tables under NCCL): a sparse gradient
    is gathered as (indices, values) from every rank and summed (coalesce adds rows that
    several ranks touched); a dense one (e.g. with an L2 term on the table) is all-reduced.
    The result is divided by world size, as DDP does.
    """

    def __init__(self, group: Any = None) -> None:
        self.group = group

    def __call__(self, param: torch.Tensor) -> None:
        grad = param.grad
        if grad is None:
            return
        world = get_world_size()
        if not grad.is_sparse:
            dist.all_reduce(grad, group=self.group)
            grad.div_(world)
            return
        grad = grad.coalesce()
        indices = torch.cat(all_gather_rows(grad.indices().t().contiguous(), self.group))
        values = torch.cat(all_gather_rows(grad.values(), self.group))
        summed = torch.sparse_coo_tensor(indices.t(), values, grad.shape).coalesce()
        param.grad = summed / world


def gather_sparse_gradients(params: list[torch.nn.Parameter], group: Any = None) -> None:
    """Register GradientGather on each parameter (post-accumulate-grad hooks)."""
    hook = GradientGather(group)
    for p in params:
        p.register_post_accumulate_grad_hook(hook)


# ----- evaluation --------------------------------------------------------------------------
def gather_scores(
    source: object, prob: np.ndarray, labels: np.ndarray, groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every rank's (probabilities, labels, groups), each row once (Trainer.gather_scores).

    When the source knows the global row id of each row it yields (row_ids(), as the sharded
    sources do), rows are put back in global order and padding duplicates are dropped, so
    AUC, GAUC and logloss equal a single process's over the same rows. Every rank gets the
    result (so every rank's early-stopping decision is the same).
    """
    if not is_distributed():
        return prob, labels, groups
    row_ids = getattr(source, "row_ids", None)
    ids = np.asarray(row_ids(), dtype=np.int64) if callable(row_ids) else None
    if ids is not None and len(ids) != len(prob):
        raise ValueError(f"source.row_ids() has {len(ids)} ids for {len(prob)} scores")
    floats = torch.from_numpy(np.stack([prob, labels], axis=1).astype(np.float64))  # [n, 2]
    ints = torch.from_numpy(np.stack([
        ids if ids is not None else np.zeros(len(prob), np.int64),
        groups.astype(np.int64) if groups is not None else np.zeros(len(prob), np.int64),
    ], axis=1))  # [n, 2]: row id, group
    f = torch.cat(all_gather_rows(floats)).numpy()
    i = torch.cat(all_gather_rows(ints)).numpy()
    if ids is not None:
        _, first = np.unique(i[:, 0], return_index=True)  # sorted by row id, first copy kept
        f, i = f[first], i[first]
    out_prob = f[:, 0].astype(prob.dtype)
    out_labels = f[:, 1].astype(labels.dtype)
    out_groups = i[:, 1].astype(groups.dtype) if groups is not None else None
    return out_prob, out_labels, out_groups
