"""Benchmark: DDP scaling of DIN training on CPU, 1 process vs N gloo processes (samples/s).

Each configuration trains the paper's DIN (embedding 16, attention (80, 40) Dice, MLP
(200, 80) Dice, MBA) on the same synthetic click data with dinrec's distributed path
(init_from_env, wrap_trainer, DistributedBatches), each rank on `--threads` intra-op threads,
ranks rendezvousing on a free 127.0.0.1 port. Reported: training samples/s of the whole job
(global rows / wall time of the timed epochs, after one warm-up epoch), the speed-up over
one process, and samples per CPU-second of all ranks (less disturbed by other jobs on shared
cores). Two batch regimes:

- strong: the same global batch (B over N ranks: B/N rows per rank per step);
- weak: the same batch per rank (N * B rows per step).

Run (not part of the tests):
    nice python bench/scaling.py [--worlds 1 2] [--rows 20000] [--batch 256] [--epochs 2]
        [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp

N_ITEMS, N_CATES, N_USERS, MAXLEN = 20_000, 200, 5_000, 50


def make_data(rows: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    item_cate = rng.integers(1, N_CATES, size=N_ITEMS)
    lens = rng.integers(1, MAXLEN + 1, size=rows)
    hist = rng.integers(1, N_ITEMS, size=(rows, MAXLEN))
    hist[np.arange(MAXLEN)[None, :] >= lens[:, None]] = 0
    items = rng.integers(1, N_ITEMS, size=rows)
    x = {"user_id": rng.integers(1, N_USERS, size=rows), "item_id": items,
         "cate_id": item_cate[items], "hist_item_id": hist,
         "hist_cate_id": np.where(hist > 0, item_cate[hist], 0)}
    return x, (rng.random(rows) < 0.3).astype(np.float32)


def make_model(activation: str = "dice", regularization: str = "mba") -> Any:
    from dinrec.feature_column import SparseFeat, VarLenSparseFeat
    from dinrec.models import DIN

    cols = [SparseFeat("user_id", N_USERS, embedding_dim=16),
            SparseFeat("item_id", N_ITEMS, embedding_dim=16),
            SparseFeat("cate_id", N_CATES, embedding_dim=16),
            VarLenSparseFeat(SparseFeat("hist_item_id", N_ITEMS, embedding_dim=16,
                                        embedding_name="item_id"), MAXLEN),
            VarLenSparseFeat(SparseFeat("hist_cate_id", N_CATES, embedding_dim=16,
                                        embedding_name="cate_id"), MAXLEN)]
    model = DIN(cols, ["item_id", "cate_id"], dnn_hidden_units=(200, 80),
                att_hidden_size=(80, 40), dnn_activation=activation, att_activation=activation,
                embedding_regularization=regularization)
    model.compile("adam", lr=1e-3)
    return model


class Timer:
    """Wall and CPU time from the start of epoch 1 to the end of training, ranks in step."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def set_trainer(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(self, logs: Any = None) -> None:
        return None

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        if epoch == 1:
            from dinrec.training.distributed.launch import barrier

            barrier()
            self.wall, self.cpu = time.perf_counter(), time.process_time()

    def on_batch_end(self, step: int, logs: Any = None) -> None:
        return None

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        return None

    def on_train_end(self, logs: Any = None) -> None:
        from dinrec.training.distributed.launch import barrier

        barrier()
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world)})
    from dinrec.inputs import prepare_inputs, prepare_labels
    from dinrec.training.distributed.ddp import wrap_trainer
    from dinrec.training.distributed.launch import destroy, init_from_env
    from dinrec.training.distributed.sharding import DistributedBatches

    init_from_env(device="cpu", num_threads=args.threads)
    try:
        model = make_model(args.activation, args.regularization)
        x, y = make_data(args.rows)
        per_rank = args.batch // world if args.regime == "strong" else args.batch
        train = DistributedBatches(prepare_inputs(model.schema, x), prepare_labels(y, len(y)),
                                   per_rank, shuffle=True, seed=0)
        options = {} if args.sync_dice_stats is None else {
            "sync_dice_stats": args.sync_dice_stats == "true"}
        if args.mba_ids is not None:
            options["mba_ids"] = args.mba_ids
        trainer = wrap_trainer(model.trainer, **options)
        timer = Timer()
        trainer.fit(train, 1 + args.epochs, verbose=0, callbacks=[timer])  # epoch 0: warm-up
        wall, cpu = timer.wall, timer.cpu
        if rank == 0:
            rows = args.epochs * len(train) * per_rank * world  # padded rows included
            Path(out).write_text(json.dumps({"sps": rows / wall, "wall": wall, "cpu": cpu,
                                             "steps": args.epochs * len(train)}))
    finally:
        destroy()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(world: int, args: argparse.Namespace, run: Any = None) -> dict[str, Any]:
    """run(rank, world, port, args, out) on `world` ranks (worker by default); rank 0's
    result.json."""
    run = run or worker
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        if world == 1:
            os.environ.pop("WORLD_SIZE", None)
            run(0, 1, free_port(), args, out)
        else:
            mp.spawn(run, args=(world, free_port(), args, out), nprocs=world)
        return dict(json.loads(Path(out).read_text()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=256, help="global batch (strong) or "
                        "per-rank batch (weak)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    parser.add_argument("--regimes", nargs="+", default=["strong", "weak"],
                        choices=["strong", "weak"])
    parser.add_argument("--activation", default="dice", choices=["dice", "prelu"],
                        help="prelu: no Dice statistics to synchronise")
    parser.add_argument("--regularization", default="mba", choices=["mba", "l2"],
                        help="l2: no MBA id gather")
    parser.add_argument("--sync-dice-stats", choices=["true", "false"], default=None,
                        help="wrap_trainer's sync_dice_stats (default: its default)")
    parser.add_argument("--mba-ids", choices=["auto", "bucket", "gather"], default=None,
                        help="wrap_trainer's mba_ids (default: its default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}, torch {torch.__version__}, rows {args.rows}, "
          f"batch {args.batch}, {args.threads} thread(s) per rank, {args.activation}, "
          f"{args.regularization}, sync_dice_stats {args.sync_dice_stats or 'default'}, "
          f"mba_ids {args.mba_ids or 'default'}, load {os.getloadavg()[0]:.2f}", flush=True)
    print("| regime | processes | rows/step | samples/s | speed-up | CPU s / wall s (rank 0) "
          "| samples / CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    results = []
    for regime in args.regimes:
        args.regime = regime
        base = None
        for world in args.worlds:
            r = measure(world, args)
            base = base or r["sps"]
            step_rows = args.batch if regime == "strong" else args.batch * world
            # CPU seconds of all ranks (rank 0's times the world): throughput per core used,
            # which another job's load on the shared cores disturbs less than samples/s.
            per_cpu = r["sps"] * r["wall"] / (r["cpu"] * world)
            print(f"| {regime} | {world} | {step_rows} | {r['sps']:,.0f} | "
                  f"{r['sps'] / base:.2f}x | {r['cpu'] / r['wall']:.2f} | {per_cpu:,.0f} |",
                  flush=True)
            results.append({"regime": regime, "world": world, **r})
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
