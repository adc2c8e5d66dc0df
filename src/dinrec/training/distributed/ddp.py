"""wrap_trainer: a Trainer made to train one model over the ranks of a torchrun job.

What changes (through the Trainer's hooks; the model itself stays a plain module, which is
what checkpoints, bundles and evaluation use):

- the training forward runs through DistributedDataParallel (forward_module), which
  averages gradients over ranks; DDP broadcasts rank 0's weights when it is built;
- Dice uses statistics of the global batch (DiceSync), as one process would;
- MBA penalises the union of every rank's batch ids (regularizer_ids);
- sparse embedding gradients are gathered where DDP cannot all-reduce them (NCCL);
- evaluate()/scores() gather every rank's scores and drop padded duplicates (gather_scores).

Example:
    >>> env = init_from_env()                                   # doctest: +SKIP
    >>> model.compile("adam", metrics=["auc"])                  # doctest: +SKIP
    >>> trainer = wrap_trainer(model.trainer)                   # doctest: +SKIP
    >>> trainer.fit(DistributedBatches(x, y, 256 // env.world_size, shuffle=True))
    ... # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dinrec.layers.embedding import sparse_parameters
from dinrec.training.distributed.launch import current
from dinrec.training.distributed.sync import (
    GlobalTableIds,
    gather_scores,
    gather_sparse_gradients,
    sync_dice,
)

if TYPE_CHECKING:
    from dinrec.training.trainer import Trainer

SPARSE_SYNC = ("auto", "ddp", "gather")


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (the module itself otherwise)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def wrap_trainer(
    trainer: Trainer,
    *,
    sync_dice_stats: bool = True,
    sparse_sync: str = "auto",
    find_unused_parameters: bool = False,
) -> Trainer:
    """Make `trainer` train its model data-parallel over the process group (no-op alone).

    Call on every rank after init_from_env() and before fit; the optimizer keeps working on
    the model's own parameters, which DDP shares.

    Args:
        trainer: the Trainer (e.g. model.trainer after compile).
        sync_dice_stats: Dice batch statistics over all ranks (exact equivalence with one
            process). False keeps them per rank, like BatchNorm without SyncBatchNorm; DDP
            then broadcasts rank 0's running statistics at each training step.
        sparse_sync: how sparse embedding gradients are averaged: "ddp" (DDP's sparse
            all-reduce: gloo only), "gather" (all-gather of indices and values: any backend),
            "auto" (ddp on gloo, gather otherwise).
        find_unused_parameters: passed to DDP (only for models that skip parameters).

    Returns:
        The same trainer, with forward_module, regularizer_ids and gather_scores set.
    """
    env = current()
    if not env.is_distributed:
        return trainer
    if sparse_sync not in SPARSE_SYNC:
        raise ValueError(f"sparse_sync must be one of {SPARSE_SYNC}, got {sparse_sync!r}")
    if isinstance(trainer.forward_module, DistributedDataParallel):
        return trainer  # already wrapped
    model = trainer.model
    devices = {p.device.type for p in model.parameters()}
    if env.backend == "nccl" and devices != {"cuda"}:
        raise ValueError("the nccl backend needs the model on cuda:LOCAL_RANK; move it there "
                         "or call init_from_env(device='cpu') for gloo")
    # Collectives issued inside forward/backward (Dice, MBA ids, sparse gradients) get their
    # own group, so they never interleave with DDP's asynchronous gradient buckets.
    side = dist.new_group(backend=env.backend)
    synced = sync_dice(model, side) if sync_dice_stats else 0
    # Without SyncBatchNorm (CPU has none), BatchNorm and unsynced Dice keep per-rank
    # running statistics: DDP then broadcasts rank 0's at each step so ranks agree.
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    broadcast_buffers = has_bn or (not sync_dice_stats) or synced == 0
    if has_bn and "cuda" in devices:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    sparse = sparse_parameters(model)
    if sparse and (sparse_sync == "gather" or (sparse_sync == "auto" and env.backend != "gloo")):
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, list(sparse))
        gather_sparse_gradients(list(sparse.values()), side)
    device_ids = [env.local_rank] if devices == {"cuda"} else None
    trainer.forward_module = DistributedDataParallel(
        model,
        device_ids=device_ids,
        forward_sync_buffers=broadcast_buffers,
        find_unused_parameters=find_unused_parameters,
    )
    ids_hook = GlobalTableIds(side)
    trainer.regularizer_ids = ids_hook
    if trainer.regularizer is not None:
        trainer.regularizer.ids_hook = ids_hook
    trainer.gather_scores = gather_scores
    return trainer


def is_wrapped(trainer: Any) -> bool:
    """Whether wrap_trainer made this trainer data-parallel."""
    return isinstance(getattr(trainer, "forward_module", None), DistributedDataParallel)


def assert_same_parameters(model: nn.Module) -> None:
    """Raise unless every rank holds bitwise the same parameters and buffers (a check)."""
    env = current()
    if not env.is_distributed:
        return
    for name, value in unwrap(model).state_dict().items():
        mine = value.detach().to(env.device).contiguous()
        if mine.is_sparse:
            mine = mine.to_dense()
        ref = mine.clone()
        dist.broadcast(ref, src=0)
        if not torch.equal(mine, ref):
            raise AssertionError(f"rank {env.rank}: {name} differs from rank 0's")
