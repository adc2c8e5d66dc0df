"""Benchmark: one Dice layer's training forward + backward on 2 gloo ranks, synchronised
statistics (DiceSync: two all-reduces) against per-rank statistics (the fused kernel).

Shapes are a rank's rows of bench/scaling.py's DIN at a global batch of 256 (128 rows per
rank): the activation unit's first Dice over 128 x 50 behaviors x 80, and the MLP's first
over 128 x 200. Printed: median wall and CPU milliseconds of rank 0 over `--steps` calls,
the ranks in step (a barrier before each call).

Run (not part of the tests):
    nice python bench/dice_sync.py [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scaling import free_port

SHAPES = ((6400, 80), (128, 200))


def worker(rank: int, port: int, steps: int) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "RANK": str(rank), "WORLD_SIZE": "2"})
    import torch.distributed as dist

    from dinrec.layers.activation import Dice
    from dinrec.training.allocator import retain_freed_memory
    from dinrec.training.distributed.launch import exit_process, init_from_env
    from dinrec.training.distributed.sync import sync_dice

    init_from_env(device="cpu", num_threads=1)
    retain_freed_memory()  # as the Trainer does: no page faults for each step's buffers
    lines = []
    for shape in SHAPES:
        for synced in (True, False):
            dice = Dice(shape[1])
            if synced:
                sync_dice(dice)
            x = torch.randn(*shape, requires_grad=True)
            upstream = torch.randn(*shape)
            walls, cpus = [], []
            for i in range(steps + 5):
                dist.barrier()
                wall, cpu = time.perf_counter(), time.process_time()
                dice(x).mul(upstream).sum().backward()
                if i >= 5:  # warm-up calls left out
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu)
            walls.sort()
            cpus.sort()
            kind = "synchronised" if synced else "per rank"
            lines.append(f"| {shape[0]} x {shape[1]} | {kind} | "
                         f"{walls[len(walls) // 2] * 1e3:.2f} | {cpus[len(cpus) // 2] * 1e3:.2f} |")
    if rank == 0:
        print("| rows x channels | statistics | wall ms | CPU ms |\n|---|---|---:|---:|")
        print("\n".join(lines), flush=True)
    exit_process(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}, torch {torch.__version__}, load {os.getloadavg()[0]:.2f}")
    mp.spawn(worker, args=(free_port(), args.steps), nprocs=2)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
