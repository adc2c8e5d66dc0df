"""Benchmark: where one streamed epoch's memory goes, by phase of the run (RSS sampling).

Runs `dinrec train` in this process on a dataset directory (e.g. one bench/scale.py built
with --keep) with bench/scale.py's config and data.streaming = true, samples this process's
RSS every 50 ms, tags each sample with the phase the Trainer is in (MBA counting, training
batches, the epoch's training metrics, test evaluation) and prints one JSON object: peak
RSS (ru_maxrss) and, per phase, the RSS on entering it, on leaving it and its peak. Run it on
datasets of two or three sizes to see what grows with the data (docs/distributed.md).

Run: python bench/scale_memory.py DATASET_DIR [--out DIR] [--set training.train_metric_rows=0]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # bench/scale.py: its CONFIG

from dinrec.cli.main import main
from dinrec.training import epoch_metrics, trainer


def rss_gib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / (1 << 20)
    return 0.0


class Phases:
    """The phase now, and per phase the RSS on entry, on exit and at its peak (GiB)."""

    def __init__(self) -> None:
        self.now = "setup"
        self.enter: dict[str, float] = {}
        self.leave: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.done = False

    def sample(self) -> None:
        while not self.done:
            self.peak[self.now] = max(self.peak.get(self.now, 0.0), rss_gib())
            time.sleep(0.05)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            before, self.now = self.now, name
            self.enter.setdefault(name, rss_gib())
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave[name] = rss_gib()
                self.peak[name] = max(self.peak.get(name, 0.0), self.leave[name])
                self.now = before
        return wrapped


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="run directory's parent")
    parser.add_argument("--set", action="append", default=[], help="a config override")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="dinrec-scale-memory-"))
    out.mkdir(parents=True, exist_ok=True)
    config = out / "scale.toml"
    config.write_text(scale.CONFIG.format(dataset=args.dataset.resolve()))
    phases = Phases()
    T, E = trainer.Trainer, epoch_metrics.EpochRows
    T.prepare_regularizer = phases.wrap("MBA counting", T.prepare_regularizer)  # type: ignore
    T._train_epoch = phases.wrap("training batches", T._train_epoch)  # type: ignore
    E.compute = phases.wrap("training-epoch metrics", E.compute)  # type: ignore
    T.evaluate = phases.wrap("evaluation", T.evaluate)  # type: ignore
    threading.Thread(target=phases.sample, daemon=True).start()
    overrides = [f for s in ["data.streaming=true", *args.set] for f in ("--set", s)]
    main(["train", str(config), "--out", str(out / "run"), "--quiet", *overrides])
    phases.done = True
    epoch = json.loads((out / "run" / "metrics.jsonl").read_text().splitlines()[0])
    print(json.dumps({
        "dataset": str(args.dataset),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20), 3),
        "enter_gib": {k: round(v, 3) for k, v in phases.enter.items()},
        "leave_gib": {k: round(v, 3) for k, v in phases.leave.items()},
        "phase_peak_gib": {k: round(v, 3) for k, v in phases.peak.items()},
        "epoch": epoch,
        "test": json.loads((out / "run" / "results.json").read_text())["test"],
    }, indent=1))


if __name__ == "__main__":
    main_()
