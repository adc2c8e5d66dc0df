"""Benchmark: `dinrec train CONFIG` in one process against `torchrun --nproc_per_node N`.

The runs alternate (1 process, then each torchrun variant, `--pairs` times), one after the
other on the same machine, each training `--epochs` epochs of the config (the global batch:
training.batch_size). Reported per run, from its metrics.jsonl: the median epoch seconds
(training and validation, as metrics.jsonl's `seconds`), training samples/s (the epoch's
train_rows / seconds), the speed-up over the 1-process run of the same pair, the CPU
seconds of the whole command (its process tree, wait4's rusage: dataset build, start-up and
test evaluation included) and the final val / test GAUC. The load average before each run
is printed: other jobs on shared cores slow the 2-rank runs more (each step waits for the
slower rank), so read the pairs side by side.

Run (not part of the tests), from the repository root:
    nice python bench/ddp_cli.py configs/ml100k-nextitem.toml [--epochs 2] [--pairs 2]
        [--nproc 2] [--variant "sync=distributed.sync_dice_stats=true"]
        [--variant "per-rank=distributed.sync_dice_stats=false"]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run(command: list[str], out: Path, procs: int = 1) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    results = json.loads((out / "results.json").read_text())
    seconds = statistics.median(r["seconds"] for r in records)
    rows = records[-1]["train_rows"] * procs  # rank 0 records its shard
    return {"epoch_s": seconds, "sps": rows / seconds, "cpu": cpu, "wall": wall, "load": load,
            "val_gauc": records[-1].get("val_gauc"), "test": results.get("test", {})}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=SECTION.KEY=VALUE[,SECTION.KEY=VALUE...] (NAME without "
                             "'=') for the torchrun "
                             "runs (default: one run with the config as it is)")
    parser.add_argument("--set", action="append", default=[], help="--set for every run")
    args = parser.parse_args(argv)
    variants = [("ddp", [])]
    if args.variant:
        variants = [(v.split("=", 1)[0], v.split("=", 1)[1].split(",")) for v in args.variant]
    common = ["--set", f"training.epochs={args.epochs}", "--set", "output.plots=false",
              "--quiet", *[x for s in args.set for x in ("--set", s)]]
    print(f"cores: {os.cpu_count()}, config {args.config}, {args.epochs} epochs, "
          f"{args.nproc} ranks", flush=True)
    print("| run | processes | load before | epoch s | train samples/s | speed-up | "
          "CPU s (whole command) | val GAUC | test GAUC |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            out = Path(tmp) / f"single{pair}"
            base = run([sys.executable, "-m", "dinrec", "train", args.config, "--out", str(out),
                        *common], out)
            rows = [("1 process", 1, base)]
            for name, sets in variants:
                out = Path(tmp) / f"{name}{pair}"
                extra = [x for s in sets if s for x in ("--set", s)]
                r = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                         str(args.nproc), "-m", "dinrec", "train", args.config, "--out",
                         str(out), *common, *extra], out, args.nproc)
                rows.append((name, args.nproc, r))
            for name, procs, r in rows:
                print(f"| {name} | {procs} | {r['load']:.1f} | {r['epoch_s']:.1f} | "
                      f"{r['sps']:,.0f} | {r['sps'] / base['sps']:.2f}x | {r['cpu']:.0f} | "
                      f"{r['val_gauc']:.4f} | {r['test'].get('gauc', float('nan')):.4f} |",
                      flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
