"""Benchmark: one small sum over 2 ranks, gloo against shared memory (local_reduce.py).

Synchronised Dice sums 2H + 1 float64 per layer and step; this times such a sum (161
numbers) 1,000 times in a row, then 300 times each after ~1 ms of matmuls (the case in a
training step, where the ranks arrive at slightly different times). Rank 0's wall and CPU
microseconds per sum are printed. Run (not part of the tests), from the repository root:

    torchrun --nproc_per_node 2 bench/local_reduce.py
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from dinrec.training.distributed.local_reduce import LocalReducer


def timed(step: Callable[[], object], n: int) -> tuple[float, float]:
    """(wall us, CPU us) per call of step, over n calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return 1e6 * (time.perf_counter() - wall) / n, 1e6 * (time.process_time() - cpu) / n


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank, world = dist.get_rank(), dist.get_world_size()
    reducer = LocalReducer(rank, world)
    x = torch.full((161,), 1e-3, dtype=torch.float64)
    a = torch.randn(256, 256)

    def work() -> None:
        for _ in range(3):
            a @ a

    def gloo() -> None:
        dist.all_reduce(x.fill_(1e-3))  # refilled: repeated sums would overflow

    def shared() -> None:
        reducer.all_reduce_(x.fill_(1e-3))

    results = {
        "gloo": timed(gloo, 1000),
        "shared memory": timed(shared, 1000),
        "compute alone": timed(work, 300),
        "compute + gloo": timed(lambda: (work(), gloo()), 300),
        "compute + shared memory": timed(lambda: (work(), shared()), 300),
    }
    if rank == 0:
        print(f"{world} ranks, load average {os.getloadavg()[0]:.1f}; rank 0, per sum:")
        for name, (wall, cpu) in results.items():
            print(f"  {name:24s} {wall:8.0f} us wall {cpu:8.0f} us CPU")
    reducer.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
