"""A sum of small tensors over the ranks of ONE machine, through shared memory.

Synchronised Dice issues two blocking all-reduces of a few hundred numbers per Dice layer
and step (sync.py): 8 a step for DIN's 4 Dice layers, each on the critical path. On gloo
one costs ~1 ms of wall time and ~0.5 ms of CPU on this 2-core machine even when both
ranks are ready (TCP over loopback, gloo's threads), which is what kept 2 ranks at ~0.4x of
one process. When every rank runs on this machine, the numbers cross through a shared
memory block instead, and a rank waits for the others in a blocking read of its own FIFO
(no spinning: a waiting rank leaves its core to the rank it waits for):

1. rank r copies its tensor into its slot of the block (slot parity = op number % 2);
2. it writes its rank as one byte into every other rank's FIFO;
3. it reads its FIFO until it holds a byte of every other rank for this op;
4. it sums the slots in rank order 0..N-1, so every rank gets bitwise the same sum.

Two parities suffice: a rank writes slot parity p again (op k + 2) only after every other
rank signalled op k + 1, which each does after reading op k. A rank is at most one op
ahead of another, so a byte that arrives early counts toward the next op (credits).
The block and the FIFOs are unlinked as soon as every rank has opened them: nothing is left
in /dev/shm or the temp directory even when a rank is killed. A FIFO never reports a dead
writer, so a waiting rank checks every PEER_CHECK_S that its peers still run and raises,
naming the rank, when one does not.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

SLOT_BYTES = 1 << 16  # per rank and parity: 8,192 float64 (DIN's Dice needs 2H + 1 <= 513)
PEER_CHECK_S = 1.0  # how often a waiting rank checks that the others still run


def same_machine() -> bool:
    """Whether torchrun put every rank on this machine (LOCAL_WORLD_SIZE == WORLD_SIZE)."""
    world, local = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE")
    return world is not None and world == local


def _alive(pid: int) -> bool:
    """Whether process pid runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: kill(0) said it exists
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _folder() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


class LocalReducer:
    """In-place sums of small float tensors over the ranks of one machine (see the module).

    Args:
        rank, world: this rank and the number of ranks, all on this machine.
        fallback: the process group that sets the reducer up (a broadcast of the names,
            two barriers: collective) and sums tensors over SLOT_BYTES; None: the default.

    Example:
        >>> reducer = LocalReducer(rank, world)             # doctest: +SKIP
        >>> reducer.all_reduce_(stats)                      # doctest: +SKIP
    """

    def __init__(self, rank: int, world: int, fallback: Any = None) -> None:
        import torch.distributed as dist

        self.rank, self.world, self.fallback = rank, world, fallback
        self.op = 0
        self.credits = [0] * world
        # A fresh name per reducer (a process may build several): rank 0's, broadcast.
        name = [f"dinrec-{uuid.uuid4().hex}" if rank == 0 else None]
        dist.broadcast_object_list(name, src=0, group=fallback)
        base = _folder() / str(name[0])
        self.paths = (base.with_suffix(".shm"), *(Path(f"{base}.{r}.fifo") for r in range(world)))
        block, fifo = self.paths[0], self.paths[1 + rank]
        size = 2 * world * SLOT_BYTES
        if rank == 0:
            with open(block, "wb") as fh:
                fh.truncate(size)
        os.mkfifo(fifo, 0o600)
        # O_RDWR: the open returns at once and the FIFO never reads end-of-file (this rank
        # holds a writer too).
        self._in = os.open(fifo, os.O_RDWR)
        dist.barrier(group=fallback)
        with open(block, "r+b") as fh:
            self._map = mmap.mmap(fh.fileno(), size)
        self._out = {peer: os.open(self.paths[1 + peer], os.O_WRONLY)
                     for peer in range(world) if peer != rank}
        dist.barrier(group=fallback)
        fifo.unlink()  # every rank holds its descriptors now
        if rank == 0:
            block.unlink()
        dist.barrier(group=fallback)  # once built, no rank's file is left on disk
        self._slots = np.frombuffer(self._map, dtype=np.uint8).reshape(2, world, SLOT_BYTES)
        pids: list[Any] = [None] * world
        dist.all_gather_object(pids, os.getpid(), group=fallback)
        self._pids = [int(p) for p in pids]

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` (CPU, contiguous) over the ranks, in place; returns it."""
        if not tensor.is_contiguous() or tensor.device.type != "cpu":
            raise ValueError("LocalReducer sums contiguous CPU tensors")
        data = tensor.detach().numpy()
        if data.nbytes > SLOT_BYTES:
            import torch.distributed as dist

            dist.all_reduce(tensor, group=self.fallback)
            return tensor
        parity = self.op % 2
        self.op += 1
        slots = self._slots[parity]
        slots[self.rank, : data.nbytes] = data.reshape(-1).view(np.uint8)
        me = bytes([self.rank])
        for fd in self._out.values():
            os.write(fd, me)
        self._wait_for_peers()
        parts = [slots[r, : data.nbytes].view(data.dtype) for r in range(self.world)]
        total = parts[0].copy()
        for part in parts[1:]:  # rank order: the same float sum on every rank
            total += part
        data.reshape(-1)[:] = total
        return tensor

    def _wait_for_peers(self) -> None:
        credits = self.credits
        while any(credits[p] == 0 for p in range(self.world) if p != self.rank):
            # The FIFO never reports a dead writer (this rank holds one), so a wait checks
            # every PEER_CHECK_S that the ranks it waits for still live, rather than hang.
            ready, _, _ = select.select([self._in], [], [], PEER_CHECK_S)
            if not ready:
                self._check_peers()
                continue
            for sender in os.read(self._in, 4 * self.world):
                credits[sender] += 1
        for p in range(self.world):
            if p != self.rank:
                credits[p] -= 1

    def _check_peers(self) -> None:
        for peer, pid in enumerate(self._pids):
            if peer != self.rank and self.credits[peer] == 0 and not _alive(pid):
                raise RuntimeError(
                    f"rank {peer} (pid {pid}) exited while rank {self.rank} waited for its "
                    "Dice statistics (shared-memory sum)")

    def close(self) -> None:
        """Release the block and the FIFOs (idempotent)."""
        for fd in [self._in, *self._out.values()]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._out = {}
        self._in = -1
        if not self._map.closed:
            del self._slots
            self._map.close()
