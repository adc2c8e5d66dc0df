"""wrap_trainer: a Trainer made to train one model over the ranks of a torchrun job.

What changes (through the Trainer's hooks; the model itself stays a plain module, which is
what checkpoints, bundles and evaluation use):

- the training forward runs through DistributedDataParallel (forward_module), which
  averages gradients over ranks; DDP broadcasts rank 0's weights when it is built;
- Dice uses statistics of the global batch (DiceSync), as one process would, or per-rank
  statistics whose moving averages are averaged over ranks (sync_dice_stats=False);
- MBA penalises the union of every rank's batch ids (regularizer_ids), learnt from presence
  masks carried in the last gradient bucket (bucket_riders), or all-gathered;
- one gradient bucket on gloo, so a step waits for the other ranks once (plus twice per Dice
  layer with synchronised statistics);
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

from dinrec.layers.activation import Dice
from dinrec.layers.embedding import sparse_parameters
from dinrec.training.distributed.bucket_riders import (
    MovingStatistics,
    Rider,
    RidingHook,
    TablePresence,
    riding_hook,
)
from dinrec.training.distributed.launch import current
from dinrec.training.distributed.local_reduce import LocalReducer, same_machine
from dinrec.training.distributed.sync import (
    GlobalTableIds,
    gather_scores,
    gather_sparse_gradients,
    sync_dice,
)

if TYPE_CHECKING:
    from dinrec.training.trainer import Trainer

SPARSE_SYNC = ("auto", "ddp", "gather")
MBA_IDS = ("auto", "bucket", "gather")


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (the module itself otherwise)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def wrap_trainer(
    trainer: Trainer,
    *,
    sync_dice_stats: bool = True,
    sparse_sync: str = "auto",
    find_unused_parameters: bool = False,
    mba_ids: str = "auto",
    bucket_cap_mb: float | None = None,
    local_reduce: bool | None = None,
) -> Trainer:
    """Make `trainer` train its model data-parallel over the process group (no-op alone).

    Call on every rank after init_from_env() and before fit; the optimizer keeps working on
    the model's own parameters, which DDP shares.

    Args:
        trainer: the Trainer (e.g. model.trainer after compile).
        sync_dice_stats: Dice batch statistics over all ranks (exact equivalence with one
            process; two collectives per Dice layer and step, forward and backward). False
            keeps them per rank, like BatchNorm without SyncBatchNorm (no collective; the
            moving statistics are averaged over ranks in the gradient bucket each step).
        sparse_sync: how sparse embedding gradients are averaged: "ddp" (DDP's sparse
            all-reduce: gloo only), "gather" (all-gather of indices and values: any backend),
            "auto" (ddp on gloo, gather otherwise).
        find_unused_parameters: passed to DDP (only for models that skip parameters).
        mba_ids: how ranks learn the union of every rank's batch ids (MBA penalises it;
            lazily averaged tables catch its rows up): "bucket" (presence masks in the last
            gradient bucket: no collective of its own), "gather" (two all-gathers a step),
            "auto" (bucket unless the model has sparse tables, whose gradients a DDP
            communication hook cannot carry).
        bucket_cap_mb: DDP's gradient bucket size; None: one bucket for every dense gradient
            on gloo (CPU: one wait per step instead of one per bucket; overlap buys nothing
            when each rank has one core), DDP's default (25 MB) on nccl.
        local_reduce: synchronised Dice statistics cross through shared memory
            (local_reduce.py) instead of gloo; None: when every rank runs on this machine
            (torchrun's LOCAL_WORLD_SIZE == WORLD_SIZE) on gloo. Same sums, bit for bit.

    Returns:
        The same trainer, with forward_module, regularizer_ids and gather_scores set.
    """
    env = current()
    if not env.is_distributed:
        return trainer
    if sparse_sync not in SPARSE_SYNC:
        raise ValueError(f"sparse_sync must be one of {SPARSE_SYNC}, got {sparse_sync!r}")
    if mba_ids not in MBA_IDS:
        raise ValueError(f"mba_ids must be one of {MBA_IDS}, got {mba_ids!r}")
    if isinstance(trainer.forward_module, DistributedDataParallel):
        return trainer  # already wrapped
    model = trainer.model
    devices = {p.device.type for p in model.parameters()}
    if env.backend == "nccl" and devices != {"cuda"}:
        raise ValueError("the nccl backend needs the model on cuda:LOCAL_RANK; move it there "
                         "or call init_from_env(device='cpu') for gloo")
    sparse = sparse_parameters(model)
    riding = not sparse  # a communication hook takes dense buckets only
    if mba_ids == "bucket" and not riding:
        raise ValueError("mba_ids='bucket' needs dense embedding gradients (a DDP "
                         "communication hook cannot carry sparse ones); use 'gather'")
    # The union of every rank's batch ids: MBA penalises it, and lazily averaged tables
    # catch its rows up (a row moves when any rank's batch uses it).
    mba = getattr(getattr(model, "config", None), "embedding_regularization", None) == "mba"
    lazy = trainer.averaging is not None and bool(trainer.averaging.tables)
    needs_ids = mba or lazy
    use_bucket = needs_ids and riding and mba_ids != "gather"
    gather_ids = needs_ids and not use_bucket
    dice = sum(isinstance(m, Dice) for m in model.modules())
    gather_sparse = bool(sparse) and (
        sparse_sync == "gather" or (sparse_sync == "auto" and env.backend != "gloo"))
    # Collectives issued inside forward/backward (Dice, MBA ids, sparse gradients) get their
    # own group, so they never interleave with DDP's asynchronous gradient buckets.
    needs_side = (sync_dice_stats and dice > 0) or gather_ids or gather_sparse
    side = dist.new_group(backend=env.backend) if needs_side else None
    if sync_dice_stats and dice > 0:
        sync_dice(model, dice_reducer(env, side, local_reduce))
    # BatchNorm (without SyncBatchNorm: CPU has none) keeps per-rank running statistics:
    # DDP then broadcasts rank 0's at each step so ranks agree. Per-rank Dice statistics
    # are averaged in the bucket instead, or broadcast where no hook can carry them.
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    average_dice = dice > 0 and not sync_dice_stats
    broadcast_buffers = has_bn or (average_dice and not riding)
    if has_bn and "cuda" in devices:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if gather_sparse:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, list(sparse))
        gather_sparse_gradients(list(sparse.values()), side)
    if bucket_cap_mb is None and env.backend == "gloo":
        dense_bytes = sum(p.numel() * p.element_size() for p in model.parameters()
                          if p.requires_grad)
        bucket_cap_mb = dense_bytes / 2**20 + 1.0
    device_ids = [env.local_rank] if devices == {"cuda"} else None
    ddp = DistributedDataParallel(
        model,
        device_ids=device_ids,
        forward_sync_buffers=broadcast_buffers,
        find_unused_parameters=find_unused_parameters,
        bucket_cap_mb=bucket_cap_mb,
    )
    riders: list[Rider] = []
    ids_hook: Any
    if use_bucket:
        presence = TablePresence(model)
        ddp.register_forward_pre_hook(presence.before_forward)
        riders.append(presence)
        ids_hook = presence
    else:
        ids_hook = GlobalTableIds(side)
    if average_dice and riding:
        riders.append(MovingStatistics(model, env.world_size))
    if riders:
        ddp.register_comm_hook(RidingHook(riders), riding_hook)
    trainer.forward_module = ddp
    trainer.regularizer_ids = ids_hook
    if trainer.regularizer is not None:
        trainer.regularizer.ids_hook = ids_hook
    trainer.gather_scores = gather_scores
    return trainer


def dice_reducer(env: Any, group: Any, local_reduce: bool | None) -> Any:
    """What sums the synchronised Dice statistics: a LocalReducer over shared memory when
    asked (None: when gloo's ranks all run on this machine), else `group`."""
    if local_reduce is None:
        local_reduce = env.backend == "gloo" and same_machine()
    if not local_reduce:
        return group
    if env.device != "cpu":
        raise ValueError("local_reduce sums CPU tensors; the model is on " + env.device)
    return LocalReducer(env.rank, env.world_size, group)


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
