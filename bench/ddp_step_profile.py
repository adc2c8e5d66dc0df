"""Benchmark: where one DDP training step's time goes (collectives per step, bytes, time).

Trains bench/scaling.py's paper DIN (Dice in attention and MLP, MBA, Adam) on 1 and on N
gloo ranks (strong scaling: the same global batch), then profiles rank 0 with torch.profiler
over `--steps` steps after a warm-up epoch. Printed per configuration: the step's wall time
(median), every collective kind with its count per step, bytes per step and milliseconds per
step (gloo's own events: the waits for the other rank included), and the top operators by
self CPU time.

Run (not part of the tests):
    nice python bench/ddp_step_profile.py [--worlds 1 2] [--batch 256] [--steps 40]
        [--sync-dice-stats true|false] [--mba-ids gather|presence]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scaling import make_data, make_model, measure

COLLECTIVES = ("all_reduce", "allreduce", "all_gather", "allgather", "broadcast", "barrier")


class StepClock:
    """Per-step wall times of epoch 1 (epoch 0 is the warm-up), profiler steps marked."""

    def __init__(self, prof: Any) -> None:
        self.prof = prof
        self.times: list[float] = []
        self.last = 0.0
        self.epoch = 0

    def set_trainer(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(self, logs: Any = None) -> None:
        return None

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch
        if epoch == 1 and self.prof is not None:
            self.prof.start()
        self.last = time.perf_counter()

    def on_batch_end(self, step: int, logs: Any = None) -> None:
        now = time.perf_counter()
        if self.epoch == 1:
            self.times.append(now - self.last)
            if self.prof is not None:
                self.prof.step()
        self.last = now

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        return None

    def on_train_end(self, logs: Any = None) -> None:
        if self.prof is not None and self.epoch >= 1:
            self.prof.stop()


def worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world)})
    from torch.profiler import ProfilerActivity, profile, schedule

    from dinrec.inputs import prepare_inputs, prepare_labels
    from dinrec.training.distributed.ddp import wrap_trainer
    from dinrec.training.distributed.launch import destroy, init_from_env
    from dinrec.training.distributed.sharding import DistributedBatches

    init_from_env(device="cpu", num_threads=1)
    try:
        model = make_model(args.activation, args.regularization)
        x, y = make_data(args.rows)
        per_rank = args.batch // world
        train = DistributedBatches(prepare_inputs(model.schema, x), prepare_labels(y, len(y)),
                                   per_rank, shuffle=True, seed=0)
        options: dict[str, Any] = {"sync_dice_stats": args.sync_dice_stats == "true"}
        if args.mba_ids is not None:
            options["mba_ids"] = args.mba_ids
        trainer = wrap_trainer(model.trainer, **options)
        prof = None
        if rank == 0:
            prof = profile(activities=[ProfilerActivity.CPU], record_shapes=False,
                           schedule=schedule(wait=5, warmup=2, active=args.steps, repeat=1))
        clock = StepClock(prof)
        train.batch_size = per_rank
        trainer.fit(train, 2, verbose=0, callbacks=[clock])
        if rank == 0:
            assert prof is not None
            report(prof, clock, args, world, out)
    finally:
        destroy()


def report(prof: Any, clock: StepClock, args: argparse.Namespace, world: int, out: str) -> None:
    steps = args.steps
    kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    ops = []
    for evt in prof.key_averages():
        name = evt.key
        low = name.lower()
        if "gloo" in low or (low.startswith("c10d::") and any(c in low for c in COLLECTIVES)):
            kinds[name][0] += evt.count
            kinds[name][1] += evt.cpu_time_total / 1e3
        ops.append((evt.self_cpu_time_total / 1e3, evt.count, name))
    times = sorted(clock.times)
    median = times[len(times) // 2] * 1e3
    lines = [f"world {world}: {len(times)} steps of {args.batch // world} rows per rank, "
             f"median step {median:.1f} ms (rank 0)"]
    lines.append("| collective | per step | ms per step |")
    lines.append("|---|---:|---:|")
    for name, (count, ms) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {name} | {count / steps:.1f} | {ms / steps:.2f} |")
    lines.append("top self-CPU operators (ms per step):")
    for self_ms, count, name in sorted(ops, reverse=True)[: args.top]:
        lines.append(f"  {self_ms / steps:7.2f}  x{count / steps:5.1f}  {name}")
    Path(out).write_text(json.dumps({"text": "\n".join(lines), "median_ms": median}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=256, help="global batch")
    parser.add_argument("--steps", type=int, default=40, help="profiled steps")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--activation", default="dice", choices=["dice", "prelu"])
    parser.add_argument("--regularization", default="mba", choices=["mba", "l2"])
    parser.add_argument("--sync-dice-stats", default="true", choices=["true", "false"])
    parser.add_argument("--mba-ids", default=None, help="wrap_trainer's mba_ids (if any)")
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}, torch {torch.__version__}, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    for world in args.worlds:
        print(measure(world, args, worker)["text"], flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
