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
from torch.autograd.function import once_differentiable

from dinrec.kernels import dice as native_dice
from dinrec.layers.activation import Dice
from dinrec.training.distributed.launch import all_gather_rows, get_world_size, is_distributed
from dinrec.training.distributed.local_reduce import LocalReducer


def _sum_over_ranks(tensor: torch.Tensor, group: Any) -> None:
    """In place: through shared memory for a LocalReducer, else the process group."""
    if isinstance(group, LocalReducer):
        group.all_reduce_(tensor)
    else:
        dist.all_reduce(tensor, group=group)


# ----- Dice --------------------------------------------------------------------------------
class DiceSync:
    """Dice's training forward with batch statistics over all ranks (set as Dice.sync).

    Two all-reduces per call, as SyncBatchNorm: the statistics in forward, the gradient sums
    through them in backward (_SyncDice). Each rank computes its mean and centred sum of
    squares in float32 (no cancellation); the ranks' parts are
    combined in float64 (Chan's parallel formula), so var = E[x^2] - E[x]^2 never cancels in
    float32. The backward sums each rank's gradient of the statistics, which with DDP's
    gradient average gives the gradient of the global batch's mean loss, as in one process.

    Args:
        group: the process group (a side group keeps these out of DDP's gradient buckets),
            or a LocalReducer when every rank is on this machine (~40 us a sum instead of
            gloo's ~1 ms: local_reduce.py).
    """

    def __init__(self, group: Any = None) -> None:
        self.group = group

    def __call__(self, dice: Dice, x: torch.Tensor, mask: torch.Tensor | None,
                 bias: torch.Tensor | None = None, rows: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Dice of x [..., H] (plus bias [B, H] at rows [N], for x [N, H]: forward_rows)."""
        flat = x.reshape(-1, x.shape[-1])  # [N, H]
        if mask is None and native_dice.supports(flat):
            # dice.c's passes with the sums crossing ranks between them: the same
            # two collectives as below, so ranks may take different paths.
            if bias is not None and rows is not None:
                bias, rows = bias.contiguous(), rows.contiguous()
            out, mean, var = _SyncNativeDice.apply(flat.contiguous(), dice.alpha.contiguous(),
                                                   dice.eps, self.group, bias, rows)
            with torch.no_grad():
                dice.running_mean.lerp_(mean, dice.momentum)
                dice.running_var.lerp_(var, dice.momentum)
            return out.reshape(x.shape)
        if bias is not None and rows is not None:
            flat = x = x + bias.index_select(0, rows)
        weights = None if mask is None else mask.reshape(-1).to(flat.dtype)  # [N], 1 = valid
        out, mean, var = _SyncDice.apply(flat, dice.alpha, weights, dice.eps, self.group)
        if mean is None:  # no valid position on any rank: the moving statistics
            return dice._moving(x)
        with torch.no_grad():
            dice.running_mean.lerp_(mean, dice.momentum)
            dice.running_var.lerp_(var, dice.momentum)
        return out.reshape(x.shape)


def _local_moments(x: torch.Tensor, w: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """(count, mean [H], centred sum of squares [H]) of the valid rows, float32 math."""
    # Two passes (mean, then centred squares): torch.var_mean along dim 0 is ~7x slower
    # on CPU (2.9 ms against 0.43 ms for [6400, 80]).
    if w is None:
        mean = x.mean(dim=0)  # [H]
        return x.new_tensor(float(x.shape[0])), mean, (x - mean).square().sum(dim=0)
    n = w.sum()
    mean = (w @ x) / n.clamp_min(1.0)  # [H]
    return n, mean, w @ (x - mean).square()


class _SyncDice(torch.autograd.Function):
    """Dice of x [N, H] normalised by the global batch's statistics; backward by hand.

    Forward returns (out [N, H], mean [H], biased var [H]) with mean/var None when no rank
    has a valid row (the caller then uses the moving statistics).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: torch.Tensor, w: torch.Tensor | None,
                eps: float, group: Any) -> tuple[Any, Any, Any]:
        n, mean, m2 = _local_moments(x, w)
        # Chan: sum n_r m_r and sum (M2_r + n_r m_r^2) over ranks, in float64.
        mean64 = mean.double()
        local = torch.cat([mean64 * n.double(), m2.double() + n.double() * mean64.square(),
                           n.double().reshape(1)])  # [2H + 1]
        stats = _global_statistics(local, x.shape[1], group)
        ctx.group, ctx.eps = group, eps
        ctx.empty = stats is None
        if stats is None:
            return x.new_zeros(()), None, None
        count, gmean64, gvar64 = stats
        gmean, gvar = gmean64.to(x.dtype), gvar64.to(x.dtype)
        rstd = torch.rsqrt(gvar + eps)  # [H]
        u = (x - gmean).mul_(rstd)  # [N, H]
        p = torch.sigmoid(u)
        out = torch.addcmul(alpha, p, 1.0 - alpha).mul_(x)  # x * (alpha + p (1 - alpha))
        ctx.save_for_backward(x, u, p, alpha, rstd, w, count)
        ctx.mark_non_differentiable(gmean, gvar)
        return out, gmean, gvar

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor, *_: Any) -> tuple[Any, ...]:
        if ctx.empty:
            return None, None, None, None, None
        x, u, p, alpha, rstd, w, count = ctx.saved_tensors
        gx = grad * x  # dL/d(factor), factor = alpha + p (1 - alpha)   [N, H]
        grad_alpha = gx.sum(0) - (gx * p).sum(0)  # d factor / d alpha = 1 - p   [H]
        grad_u = torch.ops.aten.sigmoid_backward(gx, p).mul_(1.0 - alpha)  # [N, H]
        # The statistics see every row of every rank: sum grad_u and grad_u * u over all.
        sums = torch.cat([grad_u.sum(0), (grad_u * u).sum(0)]).double()  # [2H]
        _sum_over_ranks(sums, ctx.group)
        h = x.shape[1]
        s1 = (sums[:h] / count).to(x.dtype)
        s2 = (sums[h:] / count).to(x.dtype)
        # dL/dx = rstd * (grad_u - w * (S1 + u * S2) / count) + grad * factor
        correction = torch.addcmul(s1, u, s2)  # [N, H]
        if w is not None:
            correction.mul_(w.unsqueeze(1))
        grad_x = (grad_u - correction).mul_(rstd)
        grad_x.addcmul_(grad, torch.addcmul(alpha, p, 1.0 - alpha))
        return grad_x, grad_alpha, None, None, None


def _global_statistics(local: torch.Tensor, h: int, group: Any
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Sum [sum n_r m_r, sum (M2_r + n_r m_r^2), n] [2H + 1] float64 over ranks (Chan);
    (count, mean [H] float64, biased var [H] float64), None when no rank has a row."""
    _sum_over_ranks(local, group)
    count = local[2 * h]
    if not bool(count > 0):
        return None
    mean = local[:h] / count
    return count, mean, (local[h: 2 * h] / count - mean.square()).clamp_min(0.0)


class _SyncNativeDice(torch.autograd.Function):
    """_SyncDice through dice.c, unmasked, with the activation unit's optional row bias:
    x [N, H] float32 (+ bias [B, H] at rows [N]) -> (out [N, H], mean [H], biased var [H])."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: torch.Tensor, eps: float, group: Any,
                bias: torch.Tensor | None, rows: torch.Tensor | None) -> tuple[Any, Any, Any]:
        n, h = x.shape
        shift, sums, squares = native_dice.moments(x, bias, rows)
        # This rank's mean m and centred sum of squares M2, from the shifted sums.
        mean_r = shift.double() + sums / n
        m2 = squares - sums.square() / n
        local = torch.cat([mean_r * n, m2 + n * mean_r.square(),
                           torch.tensor([float(n)], dtype=torch.float64)])
        stats = _global_statistics(local, h, group)
        assert stats is not None  # this rank's n >= 1 rows count (native_dice.supports)
        ctx.group = group
        count, gmean64, gvar64 = stats
        mean = gmean64.float()
        invstd = torch.rsqrt(gvar64 + eps).float()
        out, p = native_dice.apply(x, bias, rows, alpha, mean, invstd)
        var = gvar64.float()
        ctx.save_for_backward(x, alpha, bias, rows, p, mean, invstd, count)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor, *_: Any) -> tuple[Any, ...]:
        x, alpha, bias, rows, p, mean, invstd, count = ctx.saved_tensors
        grad = grad.contiguous()
        acc = native_dice.grad_sums(grad, x, bias, rows, p, alpha, mean)  # [3, H]
        # sum gu and sum gu (v - mean) see every rank's rows; alpha's sum stays this rank's
        # share (DDP's average of the ranks' gradients makes it the whole batch's).
        sums = acc[:2].reshape(-1).contiguous()  # [2H]
        _sum_over_ranks(sums, ctx.group)
        h = x.shape[1]
        mean_gu = (sums[:h] / count).float()
        slope = (sums[h:] / count).float() * invstd * invstd
        grad_x, grad_bias = native_dice.grad_apply(
            grad, x, bias, rows, p, alpha, mean, invstd, mean_gu, slope,
            bias_grad=ctx.needs_input_grad[4])
        return grad_x, acc[2].float(), None, None, grad_bias, None


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
