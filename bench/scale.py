"""Benchmark: a synthetic click log of any size built and trained for one epoch, streaming.

Three measurements, each step in its own process (peak RSS from wait4, the whole process):

1. build: `dinrec data build --source synthetic` of about --samples samples, generated
   --users-per-chunk users at a time (data/synthetic_chunked.py);
2. stream: one epoch of `dinrec train` on it with data.streaming = true (peak RSS, samples/s);
3. subset: a dataset small enough for memory (--subset samples, the same world) trained one
   epoch in memory and streaming: samples/s of each and the test GAUC difference; and in
   memory again with another training.seed, whose GAUC difference is the noise floor of a
   different shuffle order (streaming's order is another valid one, not the same).

The paper's DIN (embedding 16, attention (80, 40) Dice, MLP (200, 80) Dice, MBA, Adam,
batch 256, maxlen 50), validation_fraction = 0 so an epoch's seconds are training alone.
samples/s = train samples / the epoch's seconds (metrics.jsonl). The training epoch's own
AUC / GAUC are over at most training.train_metric_rows rows (a sample beyond; the stream line
says how many); the GAUC compared is the test split's, over every row. Not part of the tests.

Run: python bench/scale.py --samples 20000000 [--subset 200000] [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
IMPRESSIONS_PER_USER = 74  # the generator's mean (mean_impressions = 75, clipped at 10)
LIMIT_GIB = 2.0
CONFIG = """
[data]
dataset = "{dataset}"
shuffle_window = 262144

[model]
model = "DIN"
embedding_dim = 16
att_hidden_size = [80, 40]
att_activation = "dice"
dnn_hidden_units = [200, 80]
dnn_activation = "dice"
embedding_regularization = "mba"

[training]
epochs = 1
batch_size = 256
eval_batch_size = 4096
validation_fraction = 0.0
num_threads = 1

[output]
name = "scale"
checkpoint_every = 0
plots = false
"""


def measured(command: list[str]) -> tuple[float, float]:
    """Run a command to completion; (wall seconds, peak RSS GiB of its process)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}")
    return time.perf_counter() - start, usage.ru_maxrss / (1 << 20)  # KiB -> GiB


def build(out: Path, samples: int, users_per_chunk: int) -> tuple[float, float]:
    users = max(1, samples // IMPRESSIONS_PER_USER)
    return measured([sys.executable, "-m", "dinrec", "data", "build", "--source", "synthetic",
                     "--protocol", "click-log", "--maxlen", "50", "--out", str(out),
                     "--option", f"n_users={users}",
                     "--option", f"users_per_chunk={min(users, users_per_chunk)}"])


def train(
    work: Path, dataset: Path, name: str, streaming: bool, seed: int = 1024
) -> dict[str, float]:
    config = work / f"{name}.toml"
    config.write_text(CONFIG.format(dataset=dataset))
    run = work / f"run-{name}"
    seconds, rss = measured([sys.executable, "-m", "dinrec", "train", str(config), "--out",
                             str(run), "--quiet", "--set",
                             f"data.streaming={str(streaming).lower()}",
                             "--set", f"training.seed={seed}"])
    epoch = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    rows = json.loads((dataset / "dataset.json").read_text())["counts"]["train"]["samples"]
    test = json.loads((run / "results.json").read_text())["test"]
    return {"rows": rows, "samples_s": rows / epoch["seconds"], "rss": rss,
            "wall": seconds, "gauc": test["gauc"], "auc": test["auc"],
            "metric_rows": epoch.get("train_metric_rows", rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000_000,
                        help="about this many samples in the big dataset")
    parser.add_argument("--subset", type=int, default=200_000,
                        help="samples of the dataset trained both in memory and streaming")
    parser.add_argument("--users-per-chunk", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None, help="work directory (default tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the datasets and runs")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="dinrec-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        seconds, rss = build(work / "big", args.samples, args.users_per_chunk)
        meta = json.loads((work / "big" / "dataset.json").read_text())
        total = sum(c["samples"] for c in meta["counts"].values())
        print(f"build   {total:>11,} samples  {seconds:8.1f} s  peak RSS {rss:.2f} GiB "
              f"(limit {LIMIT_GIB})")
        big = train(work, work / "big", "big", streaming=True)
        print(f"stream  {big['rows']:>11,} train    {big['wall']:8.1f} s  peak RSS "
              f"{big['rss']:.2f} GiB  {big['samples_s']:,.0f} samples/s  GAUC {big['gauc']:.4f}  "
              f"(training AUC/GAUC over {big['metric_rows']:,} rows)")
        build(work / "subset", args.subset, args.users_per_chunk)
        gauc = {}
        for name, streaming, seed in (("memory", False, 1024), ("stream", True, 1024),
                                      ("memory-seed2", False, 1025)):
            r = train(work, work / "subset", f"subset-{name}", streaming, seed)
            gauc[name] = r["gauc"]
            print(f"{name:14s} {r['rows']:>9,} train  peak RSS {r['rss']:.2f} GiB  "
                  f"{r['samples_s']:,.0f} samples/s  AUC {r['auc']:.4f}  GAUC {r['gauc']:.4f}")
        print(f"subset GAUC: streaming - memory {gauc['stream'] - gauc['memory']:+.4f}; "
              f"memory seed 1025 - seed 1024 {gauc['memory-seed2'] - gauc['memory']:+.4f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
