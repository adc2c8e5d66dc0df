"""The torchrun environment, the process group, small collectives, callbacks keeping ranks in step.

Read torchrun's environment, start the process group (gloo on CPU, nccl on CUDA). Without
torchrun (no WORLD_SIZE, or WORLD_SIZE=1) every function here is a cheap no-op: rank 0 of 1,
the main process.

Example:
    >>> env = init_from_env()           # under `torchrun --nproc_per_node 2 script.py`
    >>> env.rank, env.world_size        # doctest: +SKIP
    (0, 2)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist

from dinrec.training.callbacks import Callback

T = TypeVar("T")

# The variables torchrun (torch.distributed.run) sets for each worker.
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a torchrun job.

    Args:
        rank: global rank (0 .. world_size - 1).
        world_size: number of processes in the job.
        local_rank: rank on this node (picks the GPU).
        local_world_size: processes on this node.
        restart_count: how many times torchrun restarted the job (0 on the first attempt).
        backend: "gloo" or "nccl" once initialised, None before (or single-process).
        device: where collective tensors live ("cpu", or "cuda:<local_rank>" with nccl).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    restart_count: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_current = DistEnv()


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def read_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """The torchrun environment of this process (rank 0 of 1 when not under torchrun)."""
    env = os.environ if environ is None else environ
    world = _int(env, "WORLD_SIZE", 1)
    rank = _int(env, "RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} are not a valid rank and size")
    return DistEnv(
        rank=rank,
        world_size=world,
        local_rank=_int(env, "LOCAL_RANK", 0),
        local_world_size=_int(env, "LOCAL_WORLD_SIZE", 1),
        restart_count=_int(env, "TORCHELASTIC_RESTART_COUNT", 0),
    )


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is one of several workers (WORLD_SIZE > 1)."""
    return read_env(environ).is_distributed


def init_from_env(
    device: str | None = None,
    backend: str | None = None,
    num_threads: int | None = 1,
    timeout: timedelta = timedelta(minutes=30),
) -> DistEnv:
    """Join the torchrun job this process belongs to; a no-op for a single process.

    Args:
        device: "cpu" or "cuda"; default cuda when available. Picks the backend and, for
            cuda, the GPU (cuda:LOCAL_RANK).
        backend: override the choice (gloo for cpu, nccl for cuda).
        num_threads: torch intra-op threads per process (None: leave torch's setting). One
            by default: on a 2-core machine two ranks with 2 threads each ran 3x slower than
            with 1 (each rank's threads spin while the other rank holds the cores).
        timeout: how long a collective may wait for the other ranks before failing.

    Returns:
        The DistEnv, also kept as current() for is_main_process() and the other helpers.
    """
    global _current
    env = read_env()
    if num_threads is not None and num_threads > 0:
        torch.set_num_threads(num_threads)
    if not env.is_distributed:
        _current = env
        return env
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    chosen = backend or ("nccl" if kind == "cuda" else "gloo")
    dev = "cpu"
    if kind == "cuda":
        torch.cuda.set_device(env.local_rank)
        dev = f"cuda:{env.local_rank}"
    if dist.is_initialized():
        if dist.get_world_size() != env.world_size or dist.get_rank() != env.rank:
            raise RuntimeError("a process group with another rank/size is already initialised")
        chosen = str(dist.get_backend())
    else:
        dist.init_process_group(chosen, store=_attempt_store(env, timeout), rank=env.rank,
                                world_size=env.world_size, timeout=timeout)
    _current = replace(env, backend=chosen, device=dev)
    return _current


def _attempt_store(env: DistEnv, timeout: timedelta) -> dist.Store:
    """The rendezvous store of MASTER_ADDR:MASTER_PORT, with keys prefixed by the attempt.

    torchrun keeps its store across restarts (--max-restarts); with init_method="env://" the
    restarted workers found the killed attempt's gloo addresses under the same keys and
    failed to connect ("Connection refused"). A prefix per restart keeps attempts apart.
    """
    environ = os.environ
    addr = environ.get("MASTER_ADDR")
    port = environ.get("MASTER_PORT")
    if not addr or not port:
        raise ValueError("WORLD_SIZE > 1 but MASTER_ADDR/MASTER_PORT are not set: start the "
                         "workers with torchrun (or set them)")
    # Under torchrun the agent hosts the store; otherwise rank 0 does (as env:// would).
    agent_store = environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(addr, int(port), env.world_size, is_master=not agent_store
                          and env.rank == 0, timeout=timeout, multi_tenant=True)
    return dist.PrefixStore(f"dinrec/attempt_{env.restart_count}", store)


def current() -> DistEnv:
    """This process's DistEnv: init_from_env's, else torchrun's variables (no backend)."""
    if dist.is_initialized() and _current.backend is not None:
        return _current
    return read_env()


def is_distributed() -> bool:
    """Whether this process is one of several ranks of an initialised process group."""
    return dist.is_initialized() and _current.is_distributed


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes checkpoints, bundles, logs, plots.

    Read from torchrun's RANK when no process group is up (before init, after destroy).
    """
    return current().is_main


def get_rank() -> int:
    return current().rank


def get_world_size() -> int:
    return current().world_size


def destroy() -> None:
    """Leave the process group (idempotent)."""
    global _current
    if dist.is_initialized():
        dist.destroy_process_group()
    _current = DistEnv()


def exit_process(code: int = 0) -> NoReturn:
    """End this rank's process now: leave the process group, flush, then os._exit(code).

    Why not a normal exit: the gloo process groups outlive destroy_process_group() while
    Python objects still reference them (DDP's reducer, the side group held by the Dice /
    MBA hooks), and so do their C++ worker threads. At interpreter finalization those objects
    are freed late, from any thread; a gloo thread that then releases a tensor with a Python
    reference takes the GIL, Python 3 ends such a thread with pthread_exit during
    finalization, and the forced unwind through a noexcept C++ frame calls std::terminate:
    "terminate called without an active exception", SIGABRT, intermittently (it depends on
    which object finalization frees first; pytorch PR #179291). os._exit skips finalization
    and C++ static destructors, so no thread can meet a dying interpreter; everything a rank
    writes is closed (and atomically renamed) before this is called, and the standard
    streams are flushed here. The exit status is the rank's own.
    """
    destroy()
    for stream in (sys.stdout, sys.stderr):
        # A closed or broken stream has nothing left to flush into.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(code)


# ----- collectives (no-ops for a single process) ---------------------------------------
def barrier() -> None:
    """Wait until every rank gets here."""
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """src's `obj` on every rank (any picklable value)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_int(value: int, op: str = "sum") -> int:
    """An integer reduced over ranks: op is "sum", "min" or "max"."""
    if not is_distributed():
        return int(value)
    ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    t = torch.tensor([int(value)], dtype=torch.int64, device=current().device)
    dist.all_reduce(t, op=ops[op])
    return int(t.item())


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (moved to the collective device and back)."""
    if not is_distributed():
        return tensor
    dev = torch.device(current().device)
    buf = tensor if tensor.device == dev else tensor.to(dev)
    dist.all_reduce(buf)
    if buf is not tensor:
        tensor.copy_(buf)
    return tensor


def all_gather_rows(tensor: torch.Tensor, group: Any = None) -> list[torch.Tensor]:
    """Every rank's `tensor`, which may differ in length along dim 0 ([n_r, ...] each).

    Lengths are gathered first, then each tensor is padded to the longest and gathered in
    one collective; the padding is cut off again. Same dtype and trailing shape on all ranks.
    """
    if not is_distributed():
        return [tensor]
    dev = torch.device(current().device)
    world = dist.get_world_size(group)
    local = tensor.to(dev).contiguous()
    n = torch.tensor([local.shape[0]], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n, group=group)
    longest = max(int(s.item()) for s in sizes)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=group)
    return [p[: int(s.item())].to(tensor.device) for p, s in zip(parts, sizes, strict=True)]


def run_main_first(fn: Callable[[], T]) -> T:
    """fn() on rank 0, then on the other ranks (e.g. rank 0 builds a dataset, the rest read it).

    When fn raises on rank 0, the other ranks raise too instead of waiting forever.
    """
    if not is_distributed():
        return fn()
    failure: tuple[bool, str] | None = None
    result: Any = None
    if is_main_process():
        try:
            result = fn()
        except Exception as err:  # reported to the other ranks, then re-raised
            # (a usage error?, message): the other ranks fail the same way, e.g. the CLI
            # prints a bad config as one line on every rank instead of a traceback.
            broadcast_object((isinstance(err, ValueError | OSError), f"{err}"))
            raise
    failure = broadcast_object(failure)
    if failure is not None:
        usage, message = failure
        raise (ValueError if usage else RuntimeError)(f"rank 0 failed: {message}")
    return result if is_main_process() else fn()


# ----- callbacks keeping ranks in step ---------------------------------------------------
class StopSync(Callback):
    """Makes every rank stop when rank 0 decides to (its callbacks run on rank 0 alone).

    Put it last in the callback list: at each epoch end it broadcasts rank 0's
    trainer.stop_training, so early stopping never leaves a rank waiting in a collective.
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.trainer.stop_training = bool(broadcast_object(self.trainer.stop_training))
