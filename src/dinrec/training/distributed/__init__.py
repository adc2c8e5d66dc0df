"""torch.distributed for dinrec: every distributed concern is in this package, so the rest of
the library stays single-process code with a few hooks.

- launch: read torchrun's environment, start the process group (gloo on CPU, nccl on CUDA),
  small collectives, and callbacks that keep ranks in step (exported here).
- ddp: wrap_trainer, DDP around a Trainer's model with the cross-rank Dice statistics, MBA
  ids, sparse-gradient sync and evaluation gather.
- bucket_riders: what rides in DDP's last gradient bucket (MBA's ids, per-rank Dice moving
  statistics), so a step needs no collective of its own for them.
- sharding: sharded batch sources (DistributedSampler-like index shards, local row-range
  shards, streaming loaders cut to an agreed number of batches).
- sync: what crosses ranks inside a step, and the evaluation gather.
- torchrec_tables: optional TorchRec-sharded embedding tables.
- sharded_checkpoint: their checkpoints, with torch.distributed.checkpoint.

`dinrec train` under torchrun is dinrec.experiment.runner's run_experiment, the same run
as in one process (rank 0 writes; restarts resume), above training.

Example:
    >>> env = init_from_env()           # under `torchrun --nproc_per_node 2 script.py`
    >>> env.rank, env.world_size        # doctest: +SKIP
    (0, 2)
"""

from dinrec.training.distributed.launch import (
    TORCHRUN_VARS,
    DistEnv,
    StopSync,
    all_gather_rows,
    all_reduce_int,
    all_reduce_sum_,
    barrier,
    broadcast_object,
    current,
    destroy,
    exit_process,
    get_rank,
    get_world_size,
    init_from_env,
    is_distributed,
    is_main_process,
    launched_by_torchrun,
    read_env,
    run_main_first,
)

__all__ = [
    "TORCHRUN_VARS",
    "DistEnv",
    "StopSync",
    "all_gather_rows",
    "all_reduce_int",
    "all_reduce_sum_",
    "barrier",
    "broadcast_object",
    "current",
    "destroy",
    "exit_process",
    "get_rank",
    "get_world_size",
    "init_from_env",
    "is_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "read_env",
    "run_main_first",
]
