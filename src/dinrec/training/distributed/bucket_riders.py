"""One collective per step: what else must cross ranks rides in DDP's last gradient bucket.

Every collective is a point where a rank waits for the slowest one; on CPUs shared with other
work that wait, not the bytes, is what a collective costs (bench/ddp_step_profile.py: the
paper's DIN on 2 gloo ranks spent ~18 ms of a ~50 ms step in 12 collectives). DDP already
all-reduces the gradients once per bucket; RidingHook is a DDP communication hook that
appends the step's other cross-rank numbers to the last bucket, so they cost bytes, not a
wait:

- TablePresence: MBA's ids as a presence mask per table ([V] floats, 1 where this rank's
  batch uses the id): summed over ranks, the rows > 0 are the union of every rank's batch
  ids, exactly what GlobalTableIds' two all-gathers gave. MBA needs nothing else from the
  other ranks: w_j is the same on every rank, so each adds 2 * lambda * w_j / n_j on the
  union after the reduce. The mask is V / (V * E) of the table's gradient (1/16 at E = 16).
- MovingStatistics: per-rank Dice statistics (sync_dice_stats=False): the moving mean and
  variance averaged over ranks each step, so every rank evaluates and saves the same
  statistics without DDP's buffer broadcast (one more collective, at every forward).

Sparse gradients cannot go through a communication hook: wrap_trainer keeps the gather and
the broadcast for models with sparse tables.

Example:
    >>> presence = TablePresence(model)                          # doctest: +SKIP
    >>> ddp.register_comm_hook(RidingHook([presence]), riding_hook)  # doctest: +SKIP
"""

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from dinrec.layers.activation import Dice
from dinrec.training.batches import Batch
from dinrec.training.regularization import table_ids


class Rider(Protocol):
    """Numbers summed over ranks in the last gradient bucket of a step."""

    def local(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """This rank's numbers, [n] (n the same on every rank and every step)."""
        ...

    def reduced(self, total: torch.Tensor) -> None:
        """Receive the sum over ranks of local(), [n]."""
        ...


class RidingHook:
    """The state of riding_hook: the riders and the process group.

    Args:
        riders: what rides along.
        group: the process group (None: DDP's, the default group).
    """

    def __init__(self, riders: Sequence[Rider], group: Any = None) -> None:
        self.riders = list(riders)
        self.group = group


# The annotations are evaluated (no `from __future__ import annotations` in this module):
# DDP's register_comm_hook compares them with dist.GradBucket and Future[Tensor] themselves.
def riding_hook(state: RidingHook, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: DDP's gradient average, riders appended to the last bucket.

    Each bucket is divided by the world size and all-reduced (DDP's default allreduce_hook);
    the last bucket is all-reduced together with the riders' numbers (one concatenated
    tensor), which are handed back summed before DDP's backward returns.
    """
    grads = bucket.buffer()  # [n] flat gradients of this bucket's parameters
    grads.div_(dist.get_world_size(state.group))
    if not bucket.is_last() or not state.riders:
        plain = dist.all_reduce(grads, group=state.group, async_op=True)
        assert plain is not None
        return plain.get_future().then(lambda fut: fut.value()[0])
    riders = state.riders
    parts = [r.local(grads.device, grads.dtype) for r in riders]
    flat = torch.cat([grads, *parts])  # [n + riders' numbers]
    work = dist.all_reduce(flat, group=state.group, async_op=True)
    assert work is not None
    n = grads.numel()

    def unpack(fut: torch.futures.Future[Any]) -> torch.Tensor:
        total = fut.value()[0]
        offset = n
        for rider, part in zip(riders, parts, strict=True):
            rider.reduced(total[offset: offset + part.numel()])
            offset += part.numel()
        return total[:n]

    return work.get_future().then(unpack)


class TablePresence:
    """MBA's union of every rank's batch ids per table, carried as presence masks.

    Use as a forward pre-hook of the DDP module (it reads the step's batch) and as the
    regularizer's ids hook (it answers the union after backward).

    Args:
        model: the network (its schema says which columns read which table).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        tables = model.schema.tables
        self.sizes = {name: int(spec.num_embeddings) for name, spec in tables.items()}
        self._local: dict[str, torch.Tensor] | None = None
        self._union: dict[str, torch.Tensor] | None = None

    def before_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """Forward pre-hook: this batch's presence per table (args[0] is the batch)."""
        batch: Batch = args[0]
        self._union = None
        self._local = table_ids(self.model, batch)

    def local(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        if self._local is None:
            raise RuntimeError("TablePresence: the gradient bucket came before any forward")
        masks = []
        for name, size in self.sizes.items():
            mask = torch.zeros(size, dtype=dtype, device=device)
            ids = self._local.get(name)
            if ids is not None:
                mask[ids.to(device)] = 1.0
            masks.append(mask)
        return torch.cat(masks)  # [sum of table sizes]

    def reduced(self, total: torch.Tensor) -> None:
        parts = total.split(list(self.sizes.values()))
        self._union = {name: (part > 0).nonzero().squeeze(1)
                       for name, part in zip(self.sizes, parts, strict=True)}

    def __call__(self, ids_by_table: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The regularizer's ids hook: {table: ascending union ids} of this step's batches."""
        if self._union is None:
            raise RuntimeError("TablePresence: MBA's ids were asked for before the step's "
                               "gradient all-reduce")
        return {name: self._union[name] for name in ids_by_table}


class MovingStatistics:
    """Every Dice layer's moving mean and variance, averaged over ranks at each step.

    Args:
        model: the network; its Dice layers' running_mean and running_var ride along.
        world: the number of ranks.
    """

    def __init__(self, model: nn.Module, world: int) -> None:
        self.buffers = [buf for m in model.modules() if isinstance(m, Dice)
                        for buf in (m.running_mean, m.running_var)]
        self.world = world

    def local(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.cat([b.detach().reshape(-1).to(device, dtype) for b in self.buffers])

    def reduced(self, total: torch.Tensor) -> None:
        with torch.no_grad():
            for buf, part in zip(self.buffers, total.split([b.numel() for b in self.buffers]),
                                 strict=True):
                buf.copy_(part.reshape(buf.shape) / self.world)
